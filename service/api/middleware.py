"""The service's ASGI layer: request ids, access logs and metrics; API keys; body size and read timeouts."""

from __future__ import annotations

import asyncio
import hmac
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import timeouts
from ..errors import MalformedRequest, NotReady, ServiceError, TooLarge, Unauthenticated
from ..headers import header
from ..observability import metrics
from ..observability.logging import AccessLog
from .problems import Reply, error_reply

DirectRoute = Callable[[Scope, Receive], Awaitable[Reply | None]]  # the answer; None: the client left
# routes matched by a pattern, whose named groups become the scope's path_params
PatternRoute = tuple[str, re.Pattern[str], DirectRoute]  # method, path pattern, route


class Budget(Protocol):
    """The in-flight byte budget (the engine's): body bytes are counted against it as they arrive."""

    def take(self, nbytes: int) -> None: ...  # raises Overloaded when it is full

    def release(self, nbytes: int) -> None: ...


_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
_IDS = random.Random(os.urandom(32))  # seeded once per process from the OS


def _new_id() -> str:
    """A random 128-bit request id. Not os.urandom per request: that system call releases the
    GIL, and getting it back behind the compute thread cost ~200 us per request under load."""
    return f"{_IDS.getrandbits(128):032x}"


class Gateway:
    """The service's own layer, one per request: X-Request-ID in and out, API keys, body size and
    read timeouts, then one access-log line and the request metrics.

    One layer rather than one per concern (there were three, each a coroutine that the request
    passed through, most with a wrapper around ``send`` or ``receive``). Routes given in
    ``direct`` (the hot route) are called from here, without FastAPI's and Starlette's
    per-request layers, and answer with their status, headers and body, which this sends with
    the request id: no wrapper around ``send`` for them; so are the routes of ``direct_patterns``
    whose path matches (``/v2/models/{model}/infer``), their path parameters in the scope.
    Refusals are written in the form of the protocol the path belongs to (``problems.error_reply``).

    Every body byte is counted as it arrives, whatever the framing (Content-Length or chunked):
    against the body limit (413), and against the in-flight ``budget`` (429), so that the memory
    bodies hold is bounded and a client that declares a large body but sends it slowly holds only
    what it sent. A body must arrive within ``body_timeout_s`` in all, and each of its chunks
    within ``read_timeout_s`` (400). A request still running when the server's graceful shutdown
    gives up on it is answered 503 (problem+json), not left to the server's bare 500.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: AccessLog,
        max_body_bytes: int,
        read_timeout_s: float,
        body_timeout_s: float = float("inf"),
        budget: Budget | None = None,
        api_keys: list[str] | tuple[str, ...] = (),
        direct: dict[tuple[str, str], DirectRoute] | None = None,
        direct_patterns: tuple[PatternRoute, ...] = (),
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.max_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self.body_timeout_s = body_timeout_s
        self.budget = budget
        self.keys = [k.encode() for k in api_keys]
        self.direct = direct or {}
        self.patterns = direct_patterns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id") or ""
        request_id = given if _SAFE_ID.match(given) else _new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status, sent, answered = 500, 0, False
        if scope["method"] == "HEAD":  # answered as GET (the server itself sends no body for HEAD)
            scope = {**scope, "method": "GET"}
            scope["state"]["method"] = "HEAD"  # what error messages name

        async def send_wrapper(message: Message) -> None:  # for the routes FastAPI serves
            nonlocal status, sent, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        body = BodyReader(receive, self)
        try:
            reply = self._refusal(scope)
            if reply is None:
                route = self.direct.get((scope["method"], scope["path"]))
                if route is None and self.patterns:
                    route = self._matching(scope)
                if route is None:
                    await self.app(scope, body, send_wrapper)
                    return
                reply = await route(scope, body)
                if reply is None:
                    return  # the client went away: nobody to answer
            status, answered = reply[0], True
            sent = await _send_reply(send, reply, id_header)
        except asyncio.CancelledError:
            # Only the server cancels a request (its graceful shutdown gave up waiting): say so.
            if answered:
                raise
            status = 503
            sent = await _send_reply(send, _shutting_down(scope["path"]), id_header)
        finally:
            body.close()
            self._record(scope, request_id, status, body.received, sent, time.perf_counter() - started)

    def _matching(self, scope: Scope) -> DirectRoute | None:
        for method, pattern, route in self.patterns:
            m = pattern.match(scope["path"]) if scope["method"] == method else None
            if m is not None:
                scope["path_params"] = m.groupdict()
                return route
        return None

    # --- before the application: keys and sizes ------------------------------------------------
    def _refusal(self, scope: Scope) -> Reply | None:
        """The answer to a request that goes no further, or None."""
        if self.keys and scope["path"] not in OPEN_PATHS:  # OPTIONS too: CORS preflights are answered earlier
            error = self._check_key(Headers(scope=scope))
            if error is not None:
                status, headers, body = error_reply(scope["path"], error)
                return status, [*headers, (b"www-authenticate", b'Bearer realm="loss-service"')], body
        length = header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            error = self._too_large() if length.isdigit() else MalformedRequest("invalid Content-Length header")
            return error_reply(scope["path"], error)
        return None

    def _check_key(self, headers: Headers) -> ServiceError | None:
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
        if not given:
            return Unauthenticated("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        candidate = given.encode()
        # Compare with every key, in constant time each, so timing tells nothing about which matched.
        matched = [hmac.compare_digest(candidate, key) for key in self.keys]
        return None if any(matched) else Unauthenticated("the API key is not valid")

    def _too_large(self) -> TooLarge:
        return TooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")

    # --- after: the log line and the metrics ---------------------------------------------------
    def _record(self, scope: Scope, request_id: str, status: int, received: int, sent: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        loss = scope["state"].get("loss", "")
        metrics.observe_request(path, loss, status, seconds)
        client = (scope.get("client") or ("", 0))[0]
        self.access_log.request(
            request_id, scope["method"], scope["path"], status, loss, seconds, received, sent, client
        )


class BodyReader:
    """A request's ``receive``: counts every body byte as it arrives against the body limit and the
    in-flight budget (given back by ``close``), and times each wait for the next chunk and the
    whole body (by the loop's Watchdog, not a timer per chunk)."""

    __slots__ = ("_deadline", "_gateway", "_receive", "_watchdog", "held", "received")

    def __init__(self, receive: Receive, gateway: Gateway) -> None:
        self._receive = receive
        self._gateway = gateway
        self._watchdog: timeouts.Watchdog | None = None
        self._deadline = 0.0
        self.received = 0
        self.held = 0  # bytes taken from the budget

    async def __call__(self) -> Message:
        gateway = self._gateway
        watchdog = self._watchdog
        if watchdog is None:  # the body's deadline runs from its first read
            watchdog = self._watchdog = timeouts.on(asyncio.get_running_loop())
            self._deadline = watchdog.loop.time() + gateway.body_timeout_s
        task = asyncio.current_task()
        left = self._deadline - watchdog.loop.time()
        per_chunk = left > gateway.read_timeout_s  # which of the two runs out first
        expired: list[bool] = []
        watchdog.arm(task, gateway.read_timeout_s if per_chunk else max(left, 0.0), _expire, (task, expired))
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()  # type: ignore[union-attr]
            if per_chunk:
                raise MalformedRequest(f"the request body did not arrive within {gateway.read_timeout_s:g} s") from None
            raise MalformedRequest(f"the request body was not complete within {gateway.body_timeout_s:g} s") from None
        finally:
            watchdog.disarm(task)
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            if size:
                self.received += size
                if self.received > gateway.max_bytes:
                    raise gateway._too_large()
                if gateway.budget is not None:
                    gateway.budget.take(size)
                    self.held += size
        return message

    def close(self) -> None:
        """The request is answered: its body's bytes leave the budget."""
        if self.held and self._gateway.budget is not None:
            self._gateway.budget.release(self.held)
            self.held = 0


def _shutting_down(path: str) -> Reply:
    status, headers, body = error_reply(path, NotReady("the service shut down before this request was answered"))
    return status, [*headers, (b"connection", b"close")], body


async def _send_reply(send: Send, reply: Reply, id_header: tuple[bytes, bytes]) -> int:
    """Send a whole answer (each body piece to the socket as it is: no joined copy); its body's size."""
    status, headers, parts = reply
    await send({"type": "http.response.start", "status": status, "headers": [*headers, id_header]})
    last = len(parts) - 1
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i < last})
    return sum(map(len, parts))


def _expire(timed: tuple[asyncio.Task | None, list[bool]]) -> None:
    task, expired = timed
    if task is not None and not task.done():
        expired.append(True)
        task.cancel()
