"""The protocol's documents, for the OpenAPI description (the routes write them with orjson)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ...dtypes import BY_V2

Datatype = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"]
assert set(Datatype.__args__) == set(BY_V2)  # type: ignore[attr-defined]  # one vocabulary: service.dtypes
Parameters = dict[str, str | float | bool]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 for a variable dimension; '*' of the contract is one -1")
    parameters: dict[str, Any] | None = Field(
        None, description="inputs: the contract (shape with every form, kind, differentiable, optional)"
    )


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(description="loss, summary, reductions, decomposable, params (a JSON Schema)")


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: Literal["READY"]


class RequestInput(BaseModel):
    name: str = Field(description="a role of the loss")
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, int] | None = Field(None, description="binary_data_size: bytes of binary data")
    data: list | None = Field(None, description="flat or nested, row-major; absent with binary data")


class RequestOutput(BaseModel):
    name: str = Field(description="value, elementwise, grad_<role>, per_sample, aggregate_sum, aggregate_weight")
    parameters: dict[str, bool] | None = Field(None, description="binary_data: the output as binary data")


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = Field(
        None,
        description="reduction; binary_data_output; timeout (microseconds); the loss's params (a list param "
        'as a JSON string, "[0.25, 0.75]")',
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="default: value, and elementwise for reduction none")


class ResponseOutput(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: dict[str, int] | None = Field(None, description="binary_data_size: bytes of binary data")
    data: list | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters = Field(description="loss, reduction, device, dtype, batch_size, queue_ms, compute_ms")
    outputs: list[ResponseOutput]


class InferenceError(BaseModel):
    error: str = Field(description="v1's problem detail, then each of its 'loc: msg' lines not already said")
