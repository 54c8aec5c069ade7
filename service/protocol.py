"""uvicorn's httptools protocol, handing each body chunk to the application without copying it.

uvicorn collects a request's body chunks in a ``bytearray`` (``cycle.body += chunk``) and hands
``bytes(cycle.body)`` to the application: two copies of every chunk after the parser's own. For a
26.7 MB .npy upload that is about 20 ms of copying on a 2-core VM (measured: a raw ASGI app that
only drains the body took 30-55 ms on stock uvicorn, against 12-16 ms with this protocol).

Here the chunk waiting for the application starts as ``b""`` instead, so that uvicorn's own
``cycle.body += chunk`` keeps the parser's ``bytes`` object itself (in CPython, ``b"" + chunk`` is
``chunk``), and ``bytes(cycle.body)`` returns it unchanged. When the application is slower than
the socket and a second chunk arrives before the first was taken, ``+=`` joins them as uvicorn
would. Flow control, upgrades and disconnects stay uvicorn's: only the starting value changes.

This leans on two lines of uvicorn's code, so it is used only where the installed uvicorn has
exactly those lines; anywhere else (another uvicorn, no httptools) uvicorn's own choice stands.
Selected with ``uvicorn.Config(http=HTTP_PROTOCOL)``.
"""

from __future__ import annotations

import inspect

OURS = "service.protocol:HttpProtocol"
RELIED_ON = {  # uvicorn's code that the tweak depends on: (function, the line it must contain)
    "on_body": "self.cycle.body += body",
    "receive": '"body": bytes(self.body)',
}

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = RequestResponseCycle = None  # type: ignore[assignment,misc]
else:

    class HttpProtocol(HttpToolsProtocol):
        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if not cycle.body:  # the application has taken everything before this chunk
                cycle.body = b""  # type: ignore[assignment]  # bytes, where uvicorn has bytearray()
            super().on_body(body)


def choose(functions: dict | None = None) -> str:
    """``OURS`` where uvicorn's code is what the tweak relies on, else uvicorn's "auto"."""
    if HttpToolsProtocol is None:
        return "auto"
    functions = functions or {"on_body": HttpToolsProtocol.on_body, "receive": RequestResponseCycle.receive}
    for name, line in RELIED_ON.items():
        try:
            source = inspect.getsource(functions[name])
        except (OSError, TypeError):  # no source to check (e.g. compiled): do not guess
            return "auto"
        if line not in source:
            return "auto"
    return OURS


HTTP_PROTOCOL = choose()
