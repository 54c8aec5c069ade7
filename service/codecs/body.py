"""Request bodies: JSON, or multipart with a ``request`` JSON part and one .npy file per role."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from ..errors import (
    InvalidInput,
    Loc,
    MalformedRequest,
    UnsupportedMediaType,
    from_pydantic,
    lower_first,
)
from ..headers import header
from ..schemas.evaluate import EvaluateRequest
from . import multipart, numeric


@dataclass
class Body:
    request: EvaluateRequest
    files: dict[str, bytearray] = field(default_factory=dict)  # role -> raw .npy bytes


def media_type(request: Request) -> str:
    return (header(request.scope, b"content-type") or "").split(";")[0].strip().lower()


async def read_body(request: Request) -> tuple[str, bytes | bytearray | None]:
    """The media type, and the raw body for JSON (multipart is streamed by its parser)."""
    kind = media_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        return "json", await read_all(request.receive)
    if kind == "multipart/form-data":
        return "multipart", None
    expected = "expected application/json or multipart/form-data"
    if not kind:
        raise UnsupportedMediaType(f"no Content-Type header; {expected}")
    raise UnsupportedMediaType(f"unsupported content type {kind!r}; {expected}")


async def read_all(receive: Receive, start: bytearray | None = None) -> bytes | bytearray:
    """The whole body, grown in one buffer: a list of chunks and their join would hold it twice.
    (Read from ``receive`` itself: request.body() would keep it for the request's life, and
    request.stream() costs an async generator per request.) After ``start`` when given (padding
    that aligns what follows), else as the first chunk came when it is all there is."""
    body: bytes | bytearray = b"" if start is None else start
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if not body and start is None:
            body = chunk  # a small body comes in one chunk: no copy
        elif chunk:
            if isinstance(body, bytes):
                body = bytearray(body)
            body += chunk
        if not message.get("more_body", False):
            return body


def parse_json(raw: bytes | bytearray, loc: Loc = ("body",)) -> EvaluateRequest:
    try:
        data = numeric.loads(raw, _tensor_path)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest.at(loc, f"malformed JSON: {lower_first(str(exc))}") from None
    if not isinstance(data, dict):
        raise InvalidInput.at(loc, "expected a JSON object")
    try:
        return EvaluateRequest.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc.errors(include_url=False)) from None


def _tensor_path(path: numeric.Path) -> bool:
    """Where a tensor's nested array may stand: ``inputs.<role>`` or ``inputs.<role>.data``."""
    return path[0] == "inputs" and (len(path) == 2 or (len(path) == 3 and path[2] == "data"))


async def read_multipart(request: Request) -> Body:
    parts = await multipart.read_parts(request.receive, header(request.scope, b"content-type") or "")
    requests = [p for p in parts if p.name == "request"]
    if not requests:
        raise InvalidInput.at(("body", "request"), "missing the 'request' part holding the JSON request")
    if len(requests) > 1:
        raise InvalidInput.at(("body", "request"), "given in two parts")
    body = Body(parse_json(requests[0].data, ("body", "request")))
    for part in parts:
        name = part.name
        if name == "request":
            continue
        if part.filename is None:
            raise InvalidInput.at(("body", name), "expected a file part holding a .npy file")
        if name in body.files:
            raise InvalidInput.at(("inputs", name), "given in two file parts")
        if name in body.request.inputs:
            raise InvalidInput.at(("inputs", name), "given both in the request part and as a file part")
        body.files[name] = part.data  # the .npy file is used in place
    return body
