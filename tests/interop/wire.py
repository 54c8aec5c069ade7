"""Raw HTTP/1.1 on one connection: requests written as given, answers read in order."""

from __future__ import annotations

import asyncio
import json

import torch
import torch.nn.functional as F

from tests.e2e.servers import close, read_answer

UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
MSE = {"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}}  # value 0.625
CROSS_ENTROPY = {
    "loss": {"name": "cross_entropy", "params": {"label_smoothing": 0.1}},
    "inputs": {"input": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "target": [0, 2]},
    "return_grad": ["input"],
}


def post(body: dict | bytes, *, head: bytes = b"", chunks: int = 0, path: str = "/v1/evaluate") -> bytes:
    """A POST of ``body``: with a Content-Length, or chunked in ``chunks`` pieces; ``head``: more header lines."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s" % (path.encode(), head)
    if not chunks:
        return start + b"Content-Length: %d\r\n\r\n" % len(data) + data
    size = -(-len(data) // chunks)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return (
        start
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        + b"0\r\n\r\n"
    )


def get(path: str, *, head: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), head)


async def exchange(
    port: int, writes: list[bytes], answers: int, *, closes: bool = False
) -> list[tuple[int, dict, bytes]]:
    """Write each of ``writes`` on one connection (each sent on its own: the server reads them
    apart), then read ``answers`` answers; with ``closes``, the server must close the connection
    after them (what it sends next is asserted to be nothing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)  # (not a timing assertion: so that the writes arrive apart)
        got = [await read_answer(reader) for _ in range(answers)]
        if closes:
            assert await reader.read() == b""
        return got
    finally:
        await close(writer)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def mse_value() -> float:
    return F.mse_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.5]])).item()


def cross_entropy_reference() -> tuple[float, list[float]]:
    """CROSS_ENTROPY's value and gradient, by torch in this process."""
    logits = torch.tensor(CROSS_ENTROPY["inputs"]["input"], requires_grad=True)
    value = F.cross_entropy(logits, torch.tensor(CROSS_ENTROPY["inputs"]["target"]), label_smoothing=0.1)
    value.backward()
    return value.item(), logits.grad.flatten().tolist()


async def converse(port: int, requests: list[bytes]) -> list[tuple[int, dict, bytes]]:
    """Each request on one connection after the answer to the one before (keep-alive)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        answers = []
        for data in requests:
            writer.write(data)
            answers.append(await read_answer(reader))
        return answers
    finally:
        await close(writer)
