"""The protocol's error body, ``{"error": "<message>"}``, with the statuses of v1's problems.

The message carries what a v1 problem says: its detail, then each ``loc: msg`` line that the
detail does not already say, one per line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ...errors import ServiceError

if TYPE_CHECKING:
    from ..problems import Reply

CONTENT_TYPE = b"application/json"


def message(error: ServiceError) -> str:
    """``detail``, then every error's ``loc: msg`` line not already said (the detail is the first
    error's line when there is one error)."""
    lines = dict.fromkeys([error.detail, *(e.text() for e in error.errors)])
    return "\n".join(lines)


def error_body(error: ServiceError) -> bytes:
    return orjson.dumps({"error": message(error)})


def error_reply(error: ServiceError) -> Reply:
    """The answer to ``error`` as the Gateway sends it: status, headers, body."""
    body = error_body(error)
    headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    return error.status, headers, [body]


def is_v2(path: str) -> bool:
    """Whether ``path`` is one of the protocol's (its errors are written in its form)."""
    return path == "/v2" or path.startswith("/v2/")
