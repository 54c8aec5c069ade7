"""service.protocol: body chunks reach the application as the HTTP parser made them, uncopied,
complete and in order, on a real uvicorn server over a real socket. (Its limits on request heads:
tests/api/test_slow_clients.py.)"""

from __future__ import annotations

import asyncio
import os

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl

import service.__main__ as entry
from service import protocol
from service.protocol import HTTP_PROTOCOL, HttpProtocol

PIECE = 100_000


def run_server_and_send(protocol: type, pieces: list[bytes], *, pause_s: float, app_delay_s: float) -> list[bytes]:
    """Serve one POST whose body is sent in ``pieces`` (``pause_s`` apart) to an app that waits
    ``app_delay_s`` before reading; returns the bodies of the app's http.request messages."""
    received: list[bytes] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await asyncio.sleep(app_delay_s)
        while True:
            message = await receive()
            received.append(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> bytes:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol, log_config=None, loop="asyncio")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        size = sum(map(len, pieces))
        writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause_s)
        answer = await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2)
        server.should_exit = True
        await task
        writer.close()
        return answer

    answer = asyncio.run(asyncio.wait_for(main(), 30))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok")
    return received


@pytest.fixture
def parsed(monkeypatch) -> list[bytes]:
    """Every body chunk httptools hands to uvicorn's on_body, as the very objects it made."""
    seen: list[bytes] = []
    original = httptools_impl.HttpToolsProtocol.on_body

    def spy(self, body: bytes) -> None:
        seen.append(body)
        original(self, body)

    monkeypatch.setattr(httptools_impl.HttpToolsProtocol, "on_body", spy)
    return seen


def pieces(n: int, size: int = PIECE) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]


def test_each_chunk_reaches_the_app_as_the_parser_made_it(parsed):
    sent = pieces(3)
    received = run_server_and_send(HttpProtocol, sent, pause_s=0.05, app_delay_s=0)
    assert b"".join(received) == b"".join(sent)
    data = [b for b in received if b]
    assert len(data) >= 3
    for body in data:
        assert type(body) is bytes
        assert any(body is chunk for chunk in parsed)  # the same object: no copy on the way


def test_stock_uvicorn_copies_every_chunk(parsed):
    """The control: uvicorn's own protocol hands over copies (what HttpProtocol exists to avoid).
    If this fails, uvicorn has stopped copying and service.protocol can go."""
    sent = pieces(3)
    received = run_server_and_send(httptools_impl.HttpToolsProtocol, sent, pause_s=0.05, app_delay_s=0)
    assert b"".join(received) == b"".join(sent)
    assert not any(body is chunk for body in received if body for chunk in parsed)


def test_chunks_that_arrive_before_the_app_reads_are_joined_in_order(parsed):
    sent = pieces(6, 10_000)  # under uvicorn's 64 KiB high-water mark: it keeps reading
    received = run_server_and_send(HttpProtocol, sent, pause_s=0.02, app_delay_s=0.3)
    assert b"".join(received) == b"".join(sent)
    assert all(type(body) is bytes for body in received)
    assert len(parsed) > len([b for b in received if b])  # some did wait, and were joined


def test_python_m_service_runs_uvicorn_with_it(monkeypatch):
    configs = []
    monkeypatch.setattr(entry.DrainingServer, "run", lambda self: configs.append(self.config))
    entry.main(["--port", "8123"])
    (config,) = configs
    assert config.http == HTTP_PROTOCOL == "service.protocol:HttpProtocol"
    config.load()
    assert config.http_protocol_class is HttpProtocol


def test_installed_uvicorn_has_the_lines_it_relies_on():
    assert protocol.keeps_chunks() is protocol.KEEPS_CHUNKS is True


def test_another_uvicorn_gets_its_own_protocol():
    """Where uvicorn's code differs from what the tweak relies on, uvicorn's own chunk handling stands."""

    def on_body(self, body):  # e.g. a uvicorn that appends with extend()
        self.cycle.body.extend(body)

    def receive(self):  # e.g. a uvicorn that hands over the bytearray itself
        return {"type": "http.request", "body": self.body, "more_body": self.more_body}

    functions = {"on_body": on_body, "receive": httptools_impl.RequestResponseCycle.receive}
    assert protocol.keeps_chunks(functions) is False
    assert protocol.keeps_chunks({"on_body": httptools_impl.HttpToolsProtocol.on_body, "receive": receive}) is False
    assert protocol.keeps_chunks({"on_body": len, "receive": len}) is False  # no source at all
