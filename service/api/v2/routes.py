"""The protocol's routes: server and model metadata, health, model readiness, the repository index,
and infer (declared here for the OpenAPI document; the Gateway serves it through ``InferFastPath``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...errors import NotReady
from ...losses.registry import Registry
from ..deps import RegistryDep
from . import models
from .infer import answer
from .schemas import (
    InferenceError,
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    RepositoryModel,
    ServerMetadata,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])
MODEL = "/models/{model_name}"
VERSIONED = MODEL + "/versions/{model_version}"

_DESCRIPTIONS = {
    400: "Malformed JSON, binary data or header",
    401: "API key missing or wrong",
    404: "Unknown model (loss) or version",
    413: "Body or tensor over the limits",
    415: "A compressed body (Content-Encoding)",
    422: "Invalid input: fields, params, shapes, datatypes, values",
    429: "Overloaded; see Retry-After",
    503: "Not ready; see Retry-After",
    504: "Deadline exceeded",
}


def errors(*statuses: int) -> dict:
    """The protocol's error answers, for the OpenAPI document."""
    return {s: {"model": InferenceError, "description": _DESCRIPTIONS[s]} for s in statuses}


def _check_ready(request: Request) -> None:
    if getattr(request.app.state, "draining", False):
        raise NotReady("the service is shutting down")
    engine = getattr(request.app.state, "engine", None)
    if engine is None or not engine.ready:
        raise NotReady("the compute worker is not running")


@router.get("", response_model=ServerMetadata, summary="Server metadata", responses=errors(401))
async def server_metadata() -> dict:
    return models.server_metadata()


@router.get("/health/live", response_model=Live, summary="Liveness, as /healthz")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", response_model=Ready, summary="Readiness, as /readyz", responses=errors(503))
async def ready(request: Request) -> dict:
    _check_ready(request)
    return {"ready": True}


@router.get(MODEL, response_model=ModelMetadata, response_model_exclude_none=True,
            summary="Model metadata: a loss's roles and outputs",
            responses=errors(401, 404))  # fmt: skip
async def model_metadata(registry: RegistryDep, model_name: str) -> dict:
    return _metadata(registry, model_name, None)


@router.get(VERSIONED, response_model=ModelMetadata, response_model_exclude_none=True,
            summary="Model metadata of a version",
            responses=errors(401, 404))  # fmt: skip
async def version_metadata(registry: RegistryDep, model_name: str, model_version: str) -> dict:
    return _metadata(registry, model_name, model_version)


def _metadata(registry: Registry, name: str, version: str | None) -> dict:
    loss = registry.get(name, ("model",))
    models.check_version(loss, name, version)
    return models.model_metadata(loss, name)


@router.get(MODEL + "/ready", response_model=ModelReady, summary="Model readiness: the loss exists, the worker runs",
            responses=errors(401, 404, 503))  # fmt: skip
async def model_ready(request: Request, registry: RegistryDep, model_name: str) -> dict:
    return _ready(request, registry, model_name, None)


@router.get(VERSIONED + "/ready", response_model=ModelReady, summary="Model readiness of a version",
            responses=errors(401, 404, 503))  # fmt: skip
async def version_ready(request: Request, registry: RegistryDep, model_name: str, model_version: str) -> dict:
    return _ready(request, registry, model_name, model_version)


def _ready(request: Request, registry: Registry, name: str, version: str | None) -> dict:
    loss = registry.get(name, ("model",))
    models.check_version(loss, name, version)
    _check_ready(request)
    return {"name": name, "ready": True}


@router.post("/repository/index", response_model=list[RepositoryModel], summary="Every loss, as a ready model",
             responses=errors(401))  # fmt: skip
async def repository_index(registry: RegistryDep) -> list[dict]:
    return models.repository_index(list(registry))


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "description": "The JSON request; with the binary tensor data extension, the JSON (its length in the "
        "Inference-Header-Content-Length header) followed by each binary input's raw bytes, in input order",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INFER: dict[str, Any] = dict(
    response_model=InferenceResponse,
    openapi_extra=_INFER_DOC,
    responses=errors(400, 401, 404, 413, 415, 422, 429, 503, 504),
)


@router.post(MODEL + "/infer", summary="Evaluate a loss: value, elementwise values, gradients", **_INFER)
async def infer(request: Request, model_name: str) -> Response:
    return await _infer(request, model_name, None)


@router.post(VERSIONED + "/infer", summary="Evaluate a loss (a version)", **_INFER)
async def version_infer(request: Request, model_name: str, model_version: str) -> Response:
    return await _infer(request, model_name, model_version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    status, headers, parts = await answer(request.app.state.core, request.scope, request.receive, name, version)
    response = Response(b"".join(parts), status_code=status)
    response.raw_headers = headers
    return response


def openapi_schemas() -> dict:
    """The request's schema (the route reads its body itself), for the document's components."""
    schema = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "InferenceRequest": schema}
