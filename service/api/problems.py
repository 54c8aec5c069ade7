"""Every error becomes application/problem+json (RFC 9457); nothing internal reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import MethodNotAllowed, NotFound, ServiceError, from_pydantic
from .v2 import errors as v2

log = logging.getLogger("service.api")
PROBLEM = "application/problem+json"
_BY_STATUS = {404: NotFound, 405: MethodNotAllowed}


def problem_body(error: ServiceError) -> dict:
    return {
        "type": f"https://loss-service.dev/problems/{error.slug}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "errors": [{"loc": list(e.loc), "msg": e.msg} for e in error.errors],
    }


def problem_response(error: ServiceError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(orjson.dumps(problem_body(error)), status_code=error.status, media_type=PROBLEM, headers=headers)


Reply = tuple[int, list[tuple[bytes, bytes]], Sequence[bytes | memoryview]]  # status, headers, the body in pieces


def problem_reply(error: ServiceError) -> Reply:
    """``problem_response``'s answer, as the Gateway sends it for the routes it serves itself."""
    body = orjson.dumps(problem_body(error))
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    return error.status, headers, [body]


def error_reply(path: str, error: ServiceError) -> Reply:
    """The answer to ``error`` in the form of the protocol that ``path`` belongs to: the Open
    Inference Protocol's ``{"error": ...}`` under /v2, problem+json everywhere else."""
    return v2.error_reply(error) if v2.is_v2(path) else problem_reply(error)


def error_response(path: str, error: ServiceError) -> Response:
    if not v2.is_v2(path):
        return problem_response(error)
    status, headers, body = v2.error_reply(error)
    response = Response(b"".join(body), status_code=status)
    response.raw_headers = headers
    return response


async def _service_error(request: Request, exc: Exception) -> Response:
    return error_response(request.url.path, exc)  # type: ignore[arg-type]


async def _validation_error(request: Request, exc: Exception) -> Response:
    return error_response(request.url.path, from_pydantic(exc.errors()))  # type: ignore[attr-defined]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    cls = _BY_STATUS.get(status)
    if cls is None:
        error = ServiceError(str(exc.detail))
        error.status, error.title = status, str(exc.detail)
        return error_response(request.url.path, error)
    method = request.scope["state"].get("method", request.method)  # HEAD is routed as GET
    path = request.url.path
    detail = f"{method} {path}: {cls.title.lower()}"
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # GET routes answer HEAD too (the Gateway routes it as GET)
        allowed = headers["Allow"].split(", ")
        headers["Allow"] = ", ".join([*allowed, "HEAD"] if "GET" in allowed else allowed)
        detail += f"; allowed: {headers['Allow']}"
    elif status == 404 and path.endswith("/") and _has_route(request, path.rstrip("/")):
        detail += f"; did you mean {path.rstrip('/')}?"
    response = error_response(path, cls(detail))
    response.headers.update(headers)
    return response


def _has_route(request: Request, path: str) -> bool:
    """Whether ``path`` is one of the API's routes (those of its OpenAPI document)."""
    return path in request.app.openapi().get("paths", {})


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(request.url.path, unexpected_error(request.method, request.url.path))


def unexpected_response(method: str, path: str) -> Response:
    return problem_response(unexpected_error(method, path))


def unexpected_error(method: str, path: str) -> ServiceError:
    """Log the exception being handled; tell the client only that it happened."""
    log.exception("unhandled error on %s %s", method, path)
    return ServiceError("an internal error occurred; it was logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_DOC = {"content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {}}, "msg": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail", "errors"],
}


def responses(*statuses: int) -> dict:
    return {s: {"description": _DESCRIPTIONS[s], **PROBLEM_DOC} for s in statuses}


_DESCRIPTIONS = {
    400: "Malformed JSON, base64, .npy or multipart",
    401: "API key missing or wrong",
    404: "Unknown loss",
    413: "Body or tensor over the limits",
    415: "Unsupported content type",
    422: "Invalid input: schema, params, shapes, dtypes, values",
    429: "Overloaded; see Retry-After",
    503: "Not ready; see Retry-After",
    504: "Deadline exceeded",
}
