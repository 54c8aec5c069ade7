"""Request and response models of POST /v1/evaluate.

Tensors are typed ``Any`` at run time (the codecs decode them; pydantic never walks millions of
numbers) and described to OpenAPI by ``TENSOR_SCHEMA``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pydantic.functional_validators import BeforeValidator
from pydantic.json_schema import WithJsonSchema

from ..codecs.tensors import DTYPES

_DTYPE_ENUM = list(DTYPES)
TENSOR_SCHEMA = {
    "title": "Tensor",
    "description": "A nested array (dtype from the role), {data, shape, dtype}, or {npy: base64 .npy}.",
    "oneOf": [
        {"type": "array", "items": {}, "description": "nested, rectangular array of numbers"},
        {
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": {}, "description": "flat row-major, or nested"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "dtype": {"type": "string", "enum": _DTYPE_ENUM},
            },
            "required": ["data"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"npy": {"type": "string", "contentEncoding": "base64"}},
            "required": ["npy"],
            "additionalProperties": False,
        },
    ],
}
TensorIn = Annotated[Any, WithJsonSchema(TENSOR_SCHEMA)]
Reduction = Literal["mean", "sum", "none", "batchmean"]


def _name_to_spec(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ValueError("expected a loss name or an object {name, params, reduction}")
    return value


class LossSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="canonical name or alias, e.g. cross_entropy or CrossEntropyLoss")
    params: dict[str, Any] = Field(default_factory=dict, description="hyper-parameters; see the loss's params schema")
    reduction: Reduction = "mean"


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loss: Annotated[LossSpec, BeforeValidator(_name_to_spec)] = Field(
        description="a loss spec, or just the loss's name"
    )
    inputs: dict[str, TensorIn] = Field(default_factory=dict, description="one tensor per role")
    return_elementwise: StrictBool = False
    return_grad: Annotated[
        Any, WithJsonSchema({"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]})
    ] = Field(False, description="true (every differentiable role), false, or a list of role names")
    response_encoding: Literal["json", "npy"] = "json"

    @field_validator("return_grad")
    @classmethod
    def _grad_roles(cls, value: object) -> bool | list[str]:
        if isinstance(value, bool) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise ValueError("expected true, false or a list of role names")


class TensorOut(BaseModel):
    shape: list[int]
    dtype: str
    data: list[Any] | None = Field(
        None, description='flat row-major; non-finite values as "NaN", "Infinity", "-Infinity"'
    )
    npy: str | None = Field(None, description="base64 .npy, with response_encoding npy")


class Meta(BaseModel):
    device: str
    dtype: str
    batch_size: int
    queue_ms: float
    compute_ms: float


class EvaluateResponse(BaseModel):
    loss: str
    reduction: Reduction
    value: float | str | None = Field(description='null with reduction none; "NaN"/"Infinity" when not finite')
    elementwise: TensorOut | None
    grad: dict[str, TensorOut] | None
    meta: Meta
