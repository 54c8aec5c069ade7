"""Closed-loop load generator: ``concurrency`` clients, each sends its next request when the last answers.

Each client is one keep-alive HTTP/1.1 connection on raw asyncio streams. httpx.AsyncClient was
tried first and measured against bench/trivial_app.py on this 2-core box: ~2 ms of client CPU per
request and a collapse to ~40 req/s at concurrency 64 (its pool), against ~2000 req/s with these
streams, so it would have measured itself, not the servers. Bodies (multipart included) are
serialised once, before the clock starts, and written in 1 MiB pieces (a 26 MB body then costs
the client what it costs curl). A point is a warm-up (discarded) and then a measured phase that
ends after ``duration_s`` seconds or ``max_requests`` answers, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK = 1 << 20


@dataclass
class Body:
    """One prepared request: the bytes and the headers that go with them."""

    content: bytes
    content_type: str
    path: str = "/v1/evaluate"
    headers: tuple[tuple[str, str], ...] = ()  # more headers (the v2 binary protocol's header length)

    @property
    def nbytes(self) -> int:
        return len(self.content)


@dataclass
class Point:
    concurrency: int
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""
    sample: str = ""
    body_bytes: int = 0
    cpu_s: float | None = None  # the server's CPU time over the measured phase, when probed
    steal: float | None = None  # the machine's share of time stolen by the hypervisor meanwhile

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
        return xs[k]

    def summary(self) -> dict:
        ok = self.requests - self.errors
        rps = ok / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "statuses": self.statuses,
            "first_error": self.first_error[:300],
            "sample": self.sample,
            "elapsed_s": round(self.elapsed_s, 3),
            "req_s": rps,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "mb_s": rps * self.body_bytes / 1e6,
            "body_bytes": self.body_bytes,
            "cpu_us_per_req": None if self.cpu_s is None or not self.requests else self.cpu_s / self.requests * 1e6,
            "steal": self.steal,
        }


class Connection:
    """One keep-alive HTTP/1.1 connection: raw asyncio streams, Content-Length or chunked replies."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        view = memoryview(raw)
        for i in range(0, len(view), CHUNK):  # one big write() would copy the rest of the body into
            self.writer.write(view[i : i + CHUNK])  # the transport's buffer; 1 MiB pieces do not
            await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}  # fmt: skip
        if b"content-length" in headers:
            data = await self.reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = await self._chunked()
        else:
            data = await self.reader.read()
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, data

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def http_request(host: str, body: Body) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in body.headers)
    head = (f"POST {body.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {body.content_type}\r\n{extra}"
            f"Content-Length: {len(body.content)}\r\n\r\n")  # fmt: skip
    return head.encode() + body.content


async def _phase(host: str, port: int, raw: bytes, point: Point, concurrency: int,
                 duration_s: float, max_requests: int) -> None:  # fmt: skip
    stop_at = time.perf_counter() + duration_s
    issued = 0
    statuses: Counter[int] = Counter()

    async def client_loop() -> None:
        nonlocal issued
        conn = Connection(host, port)
        try:
            while issued < max_requests and time.perf_counter() < stop_at:
                issued += 1
                t0 = time.perf_counter()
                try:
                    status, data = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    status, data = 0, f"{type(exc).__name__}: {exc}".encode()
                    await conn.close()
                point.latencies_ms.append((time.perf_counter() - t0) * 1000)
                statuses[status] += 1
                if status != 200:
                    point.errors += 1
                    point.first_error = point.first_error or f"{status} {data[:300].decode(errors='replace')}"
                elif not point.sample:
                    point.sample = data[:160].decode(errors="replace")
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    point.elapsed_s = time.perf_counter() - start
    point.requests = sum(statuses.values())
    point.statuses = dict(statuses)


async def run_point(host: str, port: int, body: Body, concurrency: int, *, duration_s: float = 5.0,
                    max_requests: int = 100_000, warmup_s: float = 1.0, warmup_requests: int = 50,
                    timeout_s: float = 300.0, cpu: Callable[[], float] | None = None,
                    ticks: Callable[[], tuple[int, int]] | None = None) -> dict:  # fmt: skip
    """Warm up, then measure one point; returns ``Point.summary()``. ``cpu`` (the server's CPU
    seconds so far) and ``ticks`` (the machine's steal and total ticks so far) are read just
    before and after the measured phase."""
    raw = http_request(f"{host}:{port}", body)
    if warmup_requests > 0:
        await _phase(host, port, raw, Point(concurrency), concurrency, warmup_s, warmup_requests)
    point = Point(concurrency, body_bytes=body.nbytes)
    cpu0, ticks0 = cpu and cpu(), ticks and ticks()
    await asyncio.wait_for(_phase(host, port, raw, point, concurrency, duration_s, max_requests), timeout_s)
    if cpu is not None:
        point.cpu_s = cpu() - cpu0
    if ticks is not None:
        (steal1, total1), (steal0, total0) = ticks(), ticks0
        point.steal = (steal1 - steal0) / max(1, total1 - total0)
    return point.summary()
