"""uvicorn's httptools protocol, with the limits a server facing careless or hostile clients needs,
and each body chunk handed to the application without copying it.

Limits on the request head (neither uvicorn nor httptools has any):

- a head (request line and headers) must arrive within ``header_timeout_s`` of the connection's
  opening or of the request's first byte; a connection that never sends one is closed, one that
  sent part of a head gets a 408 problem and is closed (a slow-headers client holds nothing);
- the request target is at most ``max_url_bytes`` (414) and the head at most
  ``max_header_bytes`` (431): counted as the bytes arrive, since httptools keeps a header in
  memory until it is complete;
- a head the parser refuses gets a 400 problem, not uvicorn's ``text/plain`` one.

Upgrades and expectations, which uvicorn's httptools protocol gets wrong for clients in the wild:

- an offer to upgrade to anything but a WebSocket (``Connection: Upgrade, HTTP2-Settings`` with
  ``Upgrade: h2c``, what Java's default ``HttpClient`` and ``curl --http2`` send on plain HTTP) is
  declined by answering over HTTP/1.1, as RFC 9110 (7.8) lets a server do. httptools stops parsing
  at the end of such a request's head, as if it had no body, and uvicorn then ignores every byte
  that follows: the application read an empty body, and the connection was dead. Here the parser
  is replaced by a fresh one that reads the body with the request's own framing (Content-Length or
  chunked) and then the requests that follow on the connection;
- a request that sent ``Expect: 100-continue`` and is answered before its body was asked for (a
  413 from its Content-Length, a 401) closes its connection after the answer: its client may send
  the body or not (RFC 9110, 10.1.1), so what follows could not be told apart from a next request.

Body chunks: uvicorn collects a request's body chunks in a ``bytearray`` (``cycle.body += chunk``)
and hands ``bytes(cycle.body)`` to the application: two copies of every chunk after the parser's
own. For a 26.7 MB .npy upload that is about 20 ms of copying on a 2-core VM (measured: a raw ASGI
app that only drains the body took 30-55 ms on stock uvicorn, against 12-16 ms with this). Here the
chunk waiting for the application starts as ``b""`` instead, so that uvicorn's own
``cycle.body += chunk`` keeps the parser's ``bytes`` object itself (in CPython, ``b"" + chunk`` is
``chunk``), and ``bytes(cycle.body)`` returns it unchanged. When the application is slower than
the socket and a second chunk arrives before the first was taken, ``+=`` joins them as uvicorn
would. This leans on two lines of uvicorn's code, so it is done only where the installed uvicorn
has exactly those lines (``KEEPS_CHUNKS``); the limits apply everywhere.

Selected with ``uvicorn.Config(http=HTTP_PROTOCOL)``.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from . import timeouts
from .api.problems import problem_reply
from .config import LimitSettings, Settings
from .errors import HeadersTooLarge, MalformedRequest, RequestTimeout, ServiceError, UriTooLong

OURS = "service.protocol:HttpProtocol"
RELIED_ON = {  # uvicorn's code that the chunk tweak depends on: (function, the line it must contain)
    "on_body": "self.cycle.body += body",
    "receive": '"body": bytes(self.body)',
}

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = RequestResponseCycle = None  # type: ignore[assignment,misc]

FRAMING = (b"content-length", b"transfer-encoding")  # the headers that delimit a request's body


def keeps_chunks(functions: dict | None = None) -> bool:
    """Whether uvicorn's code is what the chunk tweak relies on."""
    if HttpToolsProtocol is None:
        return False
    functions = functions or {"on_body": HttpToolsProtocol.on_body, "receive": RequestResponseCycle.receive}
    for name, line in RELIED_ON.items():
        try:
            source = inspect.getsource(functions[name])
        except (OSError, TypeError):  # no source to check (e.g. compiled): do not guess
            return False
        if line not in source:
            return False
    return True


KEEPS_CHUNKS = keeps_chunks()
HTTP_PROTOCOL = OURS if HttpToolsProtocol is not None else "auto"


def limits_of(app: Any) -> LimitSettings:
    """The limits of the service that uvicorn serves (found through the middleware uvicorn wraps
    it in), or those of the environment's settings for any other application."""
    for _ in range(8):
        settings = getattr(getattr(app, "state", None), "settings", None)
        if isinstance(settings, Settings):
            return settings.limits
        app = getattr(app, "app", None)
    return Settings().limits


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal itself is kept on the protocol."""


if HttpToolsProtocol is not None:

    class HttpProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._limits = limits_of(self.app)
            self._watchdog = timeouts.on(self.loop)
            self._in_head = False  # between a request's first byte (or the connection's start) and its headers' end
            self._head_started = False  # a byte of the current head has arrived
            self._head_bytes = 0  # raw bytes of a head that spans several reads
            self._head_parsed = 0  # its request target and headers, as the parser hands them over
            self._refusal: ServiceError | None = None

        # --- the head's deadline -----------------------------------------------------------
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_head(started=False)

        def connection_lost(self, exc: Exception | None) -> None:
            self._watchdog.disarm(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:
                self._start_head(started=True)
            self._head_started = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._watchdog.disarm(self)
            super().on_headers_complete()
            cycle = self.cycle
            if self.expect_100_continue and cycle is not None and cycle.scope is self.scope:
                cycle.__class__ = _ExpectingCycle  # (the same object: only its send differs)

        def _start_head(self, *, started: bool) -> None:
            self._in_head, self._head_started, self._head_bytes, self._head_parsed = True, started, 0, 0
            self._watchdog.arm(self, self._limits.header_timeout_s, _head_timed_out, self)

        # --- the head's size; upgrades declined -------------------------------------------
        def data_received(self, data: bytes) -> None:
            """uvicorn's, but for an upgrade other than to a WebSocket, which is declined."""
            self._unset_keepalive_if_required()
            fed: bytes | None = data
            while fed is not None:
                chunk, fed = fed, None
                try:
                    self.parser.feed_data(chunk)
                except httptools.HttpParserError:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                    return
                except httptools.HttpParserUpgrade as upgrade:
                    if self._should_upgrade():
                        self.handle_websocket_upgrade()
                        return
                    fed = self._decline_upgrade(chunk[upgrade.args[0] :])
            if self._in_head and self._head_started and not self.transport.is_closing():
                self._head_bytes += len(data)  # (httptools holds a header until it is complete)
                if self._head_bytes > self._limits.max_header_bytes:
                    self.refuse(self._head_too_large())

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._head_parsed += len(url)
            if len(self.url) > self._limits.max_url_bytes:
                limit = self._limits.max_url_bytes
                self._stop(UriTooLong(f"the request target is longer than {limit} bytes"))

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_parsed += len(name) + len(value) + 4
            if self._head_parsed > self._limits.max_header_bytes:
                self._stop(self._head_too_large())
            super().on_header(name, value)

        def _decline_upgrade(self, rest: bytes) -> bytes | None:
            """Go on in HTTP/1.1 after a request whose head offered an upgrade (``rest``: the
            bytes after that head): a fresh parser, first fed a stand-in head with the request's
            framing headers, reads its body and then the requests that follow. Returns what the
            new parser is to be fed, or None after a CONNECT (what follows it is a tunnel: its
            connection is closed once it is answered)."""
            cycle, headers = self.cycle, self.headers
            if self.scope.get("method") == "CONNECT" or cycle is None or cycle.scope is not self.scope:
                if cycle is not None:
                    cycle.keep_alive = False
                self.parser = _Tunnel()  # type: ignore[assignment]
                return None
            framing = [name + b": " + value + b"\r\n" for name, value in headers if name in FRAMING]
            version = self.parser.get_http_version().encode()
            callbacks = _AfterDeclinedUpgrade(self)
            self.parser = httptools.HttpRequestParser(callbacks)
            with contextlib.suppress(AttributeError):  # (as uvicorn: httptools < 0.6.3 has no such setting)
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            cycle.more_body = True  # (the old parser ended the request at its head)
            cycle.message_event.clear()
            self.parser.feed_data(b"".join([b"POST / HTTP/", version, b"\r\n", *framing, b"\r\n"]))
            return rest

        def _head_too_large(self) -> ServiceError:
            limit = self._limits.max_header_bytes
            return HeadersTooLarge(f"the request line and headers are larger than {limit} bytes")

        def _stop(self, error: ServiceError) -> None:
            """From a parser callback: stop parsing; uvicorn then calls send_400_response."""
            self._refusal = error
            raise _Refused

        def send_400_response(self, msg: str) -> None:
            """What uvicorn sends when the parser stops: the refusal a callback chose, or a 400."""
            self.refuse(self._refusal or MalformedRequest("malformed HTTP request: the parser refused it"))

        def refuse(self, error: ServiceError) -> None:
            """Answer ``error`` as a problem and close the connection (no request reaches the app)."""
            self._watchdog.disarm(self)
            self._in_head = False
            if self.transport.is_closing():
                return
            status, headers, body = problem_reply(error)
            lines = [f"HTTP/1.1 {status} {error.title}\r\n".encode()]
            lines += [name + b": " + value + b"\r\n" for name, value in [*headers, (b"connection", b"close")]]
            self.transport.write(b"".join([*lines, b"\r\n", *body]))
            self.transport.close()

        # --- body chunks, uncopied ---------------------------------------------------------
        if KEEPS_CHUNKS:

            def on_body(self, body: bytes) -> None:
                cycle = self.cycle
                if not cycle.body:  # the application has taken everything before this chunk
                    cycle.body = b""  # type: ignore[assignment]  # bytes, where uvicorn has bytearray()
                super().on_body(body)

    class _Tunnel:
        """The parser after a CONNECT: what follows its head is no HTTP, and is dropped until the
        connection closes after the answer."""

        def feed_data(self, data: bytes) -> None:
            pass

    class _AfterDeclinedUpgrade:
        """The parser callbacks of a connection after a declined upgrade: those of the stand-in
        head are dropped (its request is under way already); from its body on, the protocol's."""

        def __init__(self, protocol: HttpProtocol) -> None:
            self._protocol = protocol
            self._stand_in = True
            self.on_body = protocol.on_body
            self.on_message_complete = protocol.on_message_complete

        def on_message_begin(self) -> None:
            if not self._stand_in:
                self._protocol.on_message_begin()

        def on_url(self, url: bytes) -> None:
            if not self._stand_in:
                self._protocol.on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._stand_in:
                self._protocol.on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._stand_in:
                self._stand_in = False
            else:
                self._protocol.on_headers_complete()

    class _ExpectingCycle(RequestResponseCycle):
        """A request that sent ``Expect: 100-continue``: answered before it was told to send its
        body, it closes its connection (its client may send the body or not)."""

        async def send(self, message: Any) -> None:
            if not self.response_started and self.waiting_for_100_continue and self.more_body:
                self.keep_alive = False
            await super().send(message)

    def _head_timed_out(protocol: HttpProtocol) -> None:
        if protocol.transport is None or protocol.transport.is_closing():
            return
        if not protocol._head_started:  # nothing of a request came: nobody to answer
            protocol.transport.close()
            return
        timeout_s = protocol._limits.header_timeout_s
        protocol.refuse(RequestTimeout(f"the request line and headers did not arrive within {timeout_s:g} s"))
