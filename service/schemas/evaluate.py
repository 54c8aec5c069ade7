"""Request and response models of POST /v1/evaluate.

Tensors are typed ``Any`` at run time (the codecs decode them; pydantic never walks millions of
numbers) and described to OpenAPI by ``TENSOR_SCHEMA``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, StrictBool, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator
from pydantic.json_schema import WithJsonSchema

from ..dtypes import DTYPES
from ..errors import MAX_ERRORS, InvalidInput, Loc, clip, unknown_keys

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
MAX_LOSSES = 16  # losses in one request
MAX_TERMS = 16  # terms of a composite
MAX_ROLES = 64  # roles in inputs, names in return_grad: a loss has a few; more is refused before any work on them


def _few_fields(model: type[BaseModel], data: dict, loc: Loc) -> None:
    """An object with many unknown fields is refused naming the first few, before pydantic makes
    (and we word) an error for each of them. (Called for more than MAX_ERRORS fields: model_fields
    costs a microsecond.)"""
    if len(data) > len(model.model_fields) + MAX_ERRORS:
        raise unknown_keys(data, model.model_fields, loc, lambda k: f"unknown field {clip(k)}")


def _a_dict(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError("input should be a valid dictionary")  # pydantic's words
    return value


def _few_losses(value: object) -> object:
    if isinstance(value, dict) and len(value) > MAX_LOSSES:
        raise ValueError(f"expected at most {MAX_LOSSES} losses; got {len(value)}")
    return value


# The client's params object itself: pydantic would copy it key by key (half a second for a million
# keys), and the loss's own params model checks every one of them (prepare.parse_params).
ParamsIn = Annotated[dict[str, Any], SkipValidation, BeforeValidator(_a_dict)]


def _name_to_spec(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ValueError("expected a loss name or an object {name, params, reduction}")
    return value


class LossSpec(BaseModel):
    """A loss (``name``, ``params``, ``reduction``), or a composite (``terms`` alone)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["name"]}, {"required": ["terms"]}]}
    )

    name: str | None = Field(None, description="canonical name or alias, e.g. cross_entropy or CrossEntropyLoss")
    params: ParamsIn = Field(default_factory=dict, description="hyper-parameters; see the loss's params schema")
    reduction: Reduction = "mean"
    terms: Annotated[list[Term], Field(min_length=1, max_length=MAX_TERMS)] | None = Field(
        None,
        description="a composite, in place of name: the weighted sum of these losses' values, one gradient for it",
    )

    @model_validator(mode="after")
    def _name_or_terms(self) -> LossSpec:
        if self.terms is None:
            if self.name is None:
                raise ValueError("expected 'name' (a loss) or 'terms' (a composite)")
        elif self.name is not None or self.params or "reduction" in self.model_fields_set:
            raise ValueError("a composite takes only 'terms' (each term has its own name, params and reduction)")
        return self


class Term(BaseModel):
    """One term of a composite: a loss (by name or spec) and its weight."""

    model_config = ConfigDict(extra="forbid")

    loss: Annotated[LossSpec, BeforeValidator(_name_to_spec, json_schema_input_type=str | LossSpec)]
    weight: Annotated[float, Field(strict=True, allow_inf_nan=False)] = 1.0

    @field_validator("loss")
    @classmethod
    def _one_loss(cls, value: LossSpec) -> LossSpec:
        if value.terms is not None:
            raise ValueError("a term is one loss, not a composite")
        return value


# A loss as clients send it: a spec, or just its name (the name alone becomes a spec); OpenAPI
# describes both forms, so that clients generated from the document may send either.
LossIn = Annotated[LossSpec, BeforeValidator(_name_to_spec, json_schema_input_type=str | LossSpec)]


class EvaluateRequest(BaseModel):
    # one of loss and losses, as the schema says too (the model checks it after the fields)
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["loss"]}, {"required": ["losses"]}]}
    )

    loss: LossIn | None = Field(None, description="a loss spec, or just the loss's name (or, in its place, `losses`)")
    losses: Annotated[dict[str, LossIn], BeforeValidator(_few_losses)] | None = Field(
        None,
        description="several losses on the same tensors, by client-chosen labels (in place of `loss`)",
    )
    inputs: dict[str, TensorIn] = Field(default_factory=dict, description="one tensor per role")
    return_elementwise: StrictBool = False
    return_per_sample: StrictBool = Field(False, description="each sample's value under the reduction, shape (N,)")
    return_grad: Annotated[
        Any, WithJsonSchema({"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]})
    ] = Field(False, description="true (every differentiable role), false, or a list of role names")
    response_encoding: Literal["json", "npy"] = "json"

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: object) -> object:
        """What no loss needs is refused before pydantic walks it: many unknown fields (here or in
        the loss object), more roles than any loss has. (One validator: each costs a call.)"""
        if isinstance(data, dict):  # (each test inline: this runs for every request)
            if len(data) > MAX_ERRORS:
                _few_fields(cls, data, ())
            loss, inputs = data.get("loss"), data.get("inputs")
            if isinstance(loss, dict) and len(loss) > MAX_ERRORS:
                _few_fields(LossSpec, loss, ("loss",))
            if isinstance(inputs, dict) and len(inputs) > MAX_ROLES:
                raise InvalidInput.at(("inputs",), f"expected at most {MAX_ROLES} roles; got {len(inputs)}")
        return data

    @model_validator(mode="after")
    def _one_of(self) -> EvaluateRequest:
        if self.loss is None and self.losses is None:
            raise InvalidInput.at(("loss",), "field required (or 'losses' for several)")
        if self.loss is not None and self.losses is not None:
            raise InvalidInput.at(("losses",), "expected either 'loss' or 'losses', not both")
        if self.losses is not None and not self.losses:
            raise InvalidInput.at(("losses",), "expected at least one loss")
        return self

    @field_validator("return_grad")
    @classmethod
    def _grad_roles(cls, value: object) -> bool | list[str]:
        if isinstance(value, list) and len(value) > MAX_ROLES:
            raise ValueError(f"expected at most {MAX_ROLES} role names; got {len(value)}")
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


class Aggregate(BaseModel):
    sum: float | str = Field(description="S: this request's share of a data set's sum")
    weight: float | str = Field(
        description="W: its share of the mean's denominator; sum(S) / sum(W) is the data set's mean"
    )


class TermResult(BaseModel):
    loss: str
    reduction: Reduction
    weight: float
    value: float | str | None
    aggregate: Aggregate | None


class LossResult(BaseModel):
    """One loss's result."""

    loss: str = Field(description="the canonical name, or composite")
    reduction: Reduction | None = Field(description="null for a composite whose terms reduce differently")
    value: float | str | None = Field(description='null with reduction none; "NaN"/"Infinity" when not finite')
    elementwise: TensorOut | None
    grad: dict[str, TensorOut] | None
    aggregate: Aggregate | None = Field(
        None, description="null for reduction none and for losses that reduce the whole request"
    )
    per_sample: TensorOut | None = Field(None, description="with return_per_sample: each sample's value, shape (N,)")
    terms: list[TermResult] | None = Field(None, description="a composite's terms, each with its own value")


class EvaluateResponse(LossResult):
    """The answer to a request with one ``loss``."""

    meta: Meta


class EvaluateManyResponse(BaseModel):
    """The answer to a request with several ``losses``: each loss's result by its label."""

    results: dict[str, LossResult]
    meta: Meta
