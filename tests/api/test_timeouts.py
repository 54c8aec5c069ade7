"""service.timeouts.Watchdog, and the two timeouts it runs: a body that stops arriving (on a real
uvicorn server, over a socket) and a request past its deadline (see tests/engine for the engine's)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import uvicorn

from service import timeouts
from service.app import create_app
from service.config import Settings
from service.protocol import HTTP_PROTOCOL
from service.timeouts import Watchdog

RES = 0.005


def test_fires_once_after_its_time_and_not_before():
    async def go():
        loop = asyncio.get_running_loop()
        wd, fired = Watchdog(loop, RES), []
        start = loop.time()
        wd.arm("a", 0.05, lambda arg: fired.append((arg, loop.time() - start)), "a-arg")
        await asyncio.sleep(0.13)  # "not before" is the fire time below (sampling mid-way would
        return fired, len(wd)  # fail whenever a busy loop wakes that sample late)

    fired, left = asyncio.run(go())
    assert [arg for arg, _ in fired] == ["a-arg"]
    assert 0.05 <= fired[0][1] < 0.05 + 0.08  # late by at most a tick or two on a busy box
    assert left == 0


def test_disarmed_never_fires_and_rearming_replaces():
    async def go():
        loop = asyncio.get_running_loop()
        wd, fired = Watchdog(loop, RES), []
        start = loop.time()

        def note(arg):
            fired.append((arg, loop.time() - start))

        wd.arm("gone", 0.02, note, "gone")
        wd.disarm("gone")
        wd.disarm("never-armed")  # no error
        wd.arm("moved", 0.02, note, "first")
        wd.arm("moved", 0.06, note, "second")
        while not fired and loop.time() - start < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time for anything else that (wrongly) would fire
        return fired

    fired = asyncio.run(go())
    assert [arg for arg, _ in fired] == ["second"]
    assert fired[0][1] >= 0.06  # the replacement's time, not the first arming's
    # (timed when it fires, not by sampling at a moment: a busy loop wakes late, never early)


def test_a_failing_callback_does_not_stop_the_others(caplog):
    def boom(_):
        raise RuntimeError("boom")

    async def go():
        wd, fired = Watchdog(asyncio.get_running_loop(), RES), []
        wd.arm(1, 0.01, boom, None)
        wd.arm(2, 0.01, fired.append, "two")
        wd.arm(3, 0.03, fired.append, "three")
        await asyncio.sleep(0.1)
        return fired

    assert asyncio.run(go()) == ["two", "three"]
    assert "a timeout callback failed" in caplog.text


def test_ticks_only_while_something_is_armed():
    async def go():
        loop = asyncio.get_running_loop()
        wd = Watchdog(loop, RES)
        idle = wd._tick
        wd.arm("x", 0.01, lambda _: None, None)
        armed = wd._tick is not None
        await asyncio.sleep(0.05)
        return idle, armed, wd._tick

    idle, armed, after = asyncio.run(go())
    assert idle is None and armed and after is None


def test_one_watchdog_per_loop_and_each_keeps_its_own():
    fired = []

    async def go(tag):
        loop = asyncio.get_running_loop()
        wd = timeouts.on(loop)
        assert timeouts.on(loop) is wd and wd.loop is loop
        wd.arm(tag, 0.01, fired.append, tag)
        await asyncio.sleep(0.05)
        return wd

    first, second = asyncio.run(go("first")), asyncio.run(go("second"))
    assert first is not second and fired == ["first", "second"]


# -- a body that stops arriving, on a real server ------------------------------------------------


def serve(settings: Settings, client):
    """Run the app on a real uvicorn server and ``await client(port)`` against it."""

    async def main():
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, http=HTTP_PROTOCOL, log_config=None)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            return await client(server.servers[0].sockets[0].getsockname()[1])
        finally:
            server.should_exit = True
            await task

    return asyncio.run(asyncio.wait_for(main(), 60))


async def read_response(reader) -> tuple[int, dict, dict]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    body = json.loads(await reader.readexactly(int(headers["content-length"])))
    return int(head[0].split()[1]), headers, body


MSE = json.dumps({"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}}).encode()


def post(body: bytes, length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length) + body  # fmt: skip


@pytest.mark.parametrize("sent", [0, 10])
def test_a_body_that_stops_arriving_is_answered_400_and_others_are_served(sent):
    async def client(port):
        stalled_r, stalled_w = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        stalled_w.write(post(MSE[:sent], length=len(MSE)))  # promises the whole body, sends part
        await stalled_w.drain()
        await asyncio.sleep(0.1)
        other_r, other_w = await asyncio.open_connection("127.0.0.1", port)  # meanwhile, on another connection
        other_w.write(post(MSE))
        other = await read_response(other_r)
        stalled = await read_response(stalled_r)
        waited = time.monotonic() - started
        for w in (stalled_w, other_w):
            w.close()
        return stalled, other, waited

    (status, headers, body), other, waited = serve(Settings(limits={"read_timeout_s": 0.4}), client)
    assert (status, headers["content-type"]) == (400, "application/problem+json")
    assert body["detail"] == "the request body did not arrive within 0.4 s"
    assert 0.4 <= waited < 3
    assert other[0] == 200 and other[2]["value"] == 0.625


def test_a_slow_body_that_keeps_coming_is_not_cut_off():
    """The timeout is for each wait for the next chunk, not for the whole body."""

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"", length=len(MSE)))
        for i in range(0, len(MSE), 8):  # the whole body takes longer than the timeout
            writer.write(MSE[i : i + 8])
            await writer.drain()
            await asyncio.sleep(0.05)
        answer = await read_response(reader)
        writer.close()
        return answer

    status, _, body = serve(Settings(limits={"read_timeout_s": 0.3}), client)
    assert status == 200 and body["value"] == 0.625


def test_the_read_timeout_stops_when_the_body_is_in():
    """An application that works longer than the read timeout after reading its body is not cut off."""
    from service.api.middleware import Gateway
    from service.observability.logging import AccessLog

    sent = []

    async def slow_app(scope, receive, send):
        await receive()
        await asyncio.sleep(0.25)  # longer than the read timeout, after the body came
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def receive():
        return {"type": "http.request", "body": b"x", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/slow", "headers": [(b"content-length", b"1")]}
    gateway = Gateway(slow_app, access_log=AccessLog(enabled=False), max_body_bytes=10, read_timeout_s=0.05)
    asyncio.run(gateway(scope, receive, send))
    assert [m.get("body") for m in sent] == [None, b"done"]
    assert sent[0]["status"] == 200
