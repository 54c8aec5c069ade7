"""Reading request headers straight from the ASGI scope."""

from __future__ import annotations

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI servers give names): one pass
    over the raw list, where starlette's Headers would decode every name on every lookup."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
