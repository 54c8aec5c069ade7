"""Pure ASGI middleware: request ids, access logs and metrics; API keys; body size and read timeouts."""

from __future__ import annotations

import asyncio
import hmac
import os
import random
import re
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import timeouts
from ..errors import MalformedRequest, ServiceError, TooLarge, Unauthenticated
from ..headers import content_length, header
from ..observability import metrics
from ..observability.logging import AccessLog
from .problems import problem_response

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_IDS = random.Random(os.urandom(32))  # seeded once per process from the OS


def _new_id() -> str:
    """A random 128-bit request id. Not os.urandom per request: that system call releases the
    GIL, and getting it back behind the compute thread cost ~200 us per request under load."""
    return f"{_IDS.getrandbits(128):032x}"


class RequestContext:
    """X-Request-ID in and out, one access-log line and the request metrics per request."""

    def __init__(self, app: ASGIApp, access_log: AccessLog) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = header(scope, b"x-request-id") or ""
        request_id = given if _SAFE_ID.match(given) else _new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status, sent = 500, 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._record(scope, request_id, status, content_length(scope), sent, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, received: int, sent: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        loss = scope["state"].get("loss", "")
        metrics.observe_request(path, loss, status, seconds)
        client = (scope.get("client") or ("", 0))[0]
        self.access_log.request(
            request_id, scope["method"], scope["path"], status, loss, seconds, received, sent, client
        )


class ApiKeys:
    """When keys are configured, every path but the health checks needs one."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        error = self._check(Headers(scope=scope))
        if error is None:
            return await self.app(scope, receive, send)
        response = problem_response(error)
        response.headers["WWW-Authenticate"] = 'Bearer realm="loss-service"'
        await response(scope, receive, send)

    def _check(self, headers: Headers) -> ServiceError | None:
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
        if not given:
            return Unauthenticated("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        candidate = given.encode()
        # Compare with every key, in constant time each, so timing tells nothing about which matched.
        matched = [hmac.compare_digest(candidate, key) for key in self.keys]
        return None if any(matched) else Unauthenticated("the API key is not valid")


class BodyLimit:
    """413 from Content-Length before the body is read (and while counting chunked bodies);
    408-style refusal of clients that send their body too slowly (each wait for the next chunk is
    timed, by the loop's Watchdog rather than a timer per chunk)."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            error = self._too_large() if length.isdigit() else MalformedRequest("invalid Content-Length header")
            return await problem_response(error)(scope, receive, send)
        received = 0
        watchdog = timeouts.on(asyncio.get_running_loop())

        async def limited() -> Message:
            nonlocal received
            task = asyncio.current_task()
            expired: list[bool] = []
            watchdog.arm(task, self.read_timeout_s, _expire, (task, expired))
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not expired:
                    raise
                task.uncancel()  # type: ignore[union-attr]
                raise MalformedRequest(f"the request body did not arrive within {self.read_timeout_s:g} s") from None
            finally:
                watchdog.disarm(task)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")


def _expire(timed: tuple[asyncio.Task | None, list[bool]]) -> None:
    task, expired = timed
    if task is not None and not task.done():
        expired.append(True)
        task.cancel()
