"""HTTP/1.1 as common clients use it: Expect: 100-continue (curl sends it for bodies over 1 MiB),
a body refused by its Content-Length before it is sent, keep-alive and pipelining."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

from tests.e2e.servers import close, read_answer

from .conftest import MAX_BODY
from .wire import CROSS_ENTROPY, MSE, UPGRADE, converse, cross_entropy_reference, exchange, get, post, run

pytestmark = pytest.mark.e2e
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TOO_LARGE = f"request body is larger than the limit of {MAX_BODY} bytes"


def curl(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("curl"), "curl is needed (scripts/test installs it)"
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False)


def answer_lines(stderr: str) -> list[str]:
    """The status lines that ``curl -v`` received."""
    return [line for line in stderr.splitlines() if line.startswith("< HTTP/")]


def test_expect_100_continue_gets_100_then_the_answer(server):
    """The head alone: 100 Continue; then the body: the answer; twice on one connection."""
    body = json.dumps(MSE).encode()
    head = post(body, head=b"Expect: 100-continue\r\n")[: -len(body)]

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            answers = []
            for _ in range(2):
                writer.write(head)
                assert await reader.readexactly(len(CONTINUE)) == CONTINUE
                writer.write(body)
                answers.append(await read_answer(reader))
            return answers
        finally:
            await close(writer)

    answers = run(main())
    assert [(status, json.loads(text)["value"]) for status, _, text in answers] == [(200, 0.625), (200, 0.625)]


@pytest.mark.parametrize("offer_h2c", [False, True], ids=["http1.1", "http2-offer"])
def test_curl_sends_a_large_body_after_100_continue(server, tmp_path, offer_h2c):
    """A 1.7 MB body: curl asks with Expect: 100-continue (and, with --http2, offers h2c too)."""
    n = 160_000
    request = {"loss": "mse", "inputs": {"input": [[(i % 7) * 0.25 for i in range(n)]], "target": [[0.5] * n]}}
    path = tmp_path / "large.json"
    path.write_text(json.dumps(request))
    assert path.stat().st_size > 2**20
    http2 = ["--http2"] if offer_h2c else []
    done = curl(
        "-v", *http2, f"{server.url}/v1/evaluate", "-H", "Content-Type: application/json", "--data-binary", f"@{path}"
    )
    assert done.returncode == 0, done.stderr
    assert "> Expect: 100-continue" in done.stderr.splitlines()
    assert ("> Upgrade: h2c" in done.stderr.splitlines()) == offer_h2c
    assert answer_lines(done.stderr) == ["< HTTP/1.1 100 Continue", "< HTTP/1.1 200 OK"]
    expected = F.mse_loss(torch.tensor(request["inputs"]["input"]), torch.tensor(request["inputs"]["target"])).item()
    assert json.loads(done.stdout)["value"] == pytest.approx(expected, rel=1e-6)


def test_a_body_too_large_by_its_content_length_is_refused_without_100_continue(server):
    """The 413 comes from the head alone, with no 100 Continue: the client need not send the
    body, and the connection is closed (the client may send it or not)."""
    head = b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (MAX_BODY + 1)
    [(status, headers, body)] = run(exchange(server.port, [head], 1, closes=True))
    assert status == 413
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["detail"] == TOO_LARGE


def test_curl_stops_sending_a_body_refused_with_413(server, tmp_path):
    path = tmp_path / "too-large.json"
    path.write_bytes(b" " * (MAX_BODY + 1))
    done = curl("-v", f"{server.url}/v1/evaluate", "-H", "Content-Type: application/json", "--data-binary", f"@{path}")
    assert answer_lines(done.stderr) == ["< HTTP/1.1 413 Request Entity Too Large"]
    assert json.loads(done.stdout)["detail"] == TOO_LARGE


def test_keep_alive_serves_requests_one_after_another_on_one_connection(server):
    answers = run(
        converse(
            server.port,
            [post(MSE), get("/v1/losses/mse"), post(CROSS_ENTROPY, chunks=3), get("/healthz"), post(MSE)],
        )
    )
    assert [status for status, _, _ in answers] == [200] * 5
    assert json.loads(answers[0][2])["value"] == 0.625
    assert json.loads(answers[1][2])["name"] == "mse"
    assert json.loads(answers[2][2])["value"] == pytest.approx(cross_entropy_reference()[0], rel=1e-6)
    assert json.loads(answers[3][2]) == {"status": "ok"}
    assert json.loads(answers[4][2])["value"] == 0.625


def test_curl_reuses_its_connection(server):
    done = curl("-v", f"{server.url}/healthz", f"{server.url}/v1/losses/mse", "-o", "/dev/null", "-o", "/dev/null")
    assert done.returncode == 0, done.stderr
    assert answer_lines(done.stderr) == ["< HTTP/1.1 200 OK", "< HTTP/1.1 200 OK"]
    assert sum("Re-using existing connection" in line for line in done.stderr.splitlines()) == 1


def test_pipelined_requests_are_answered_in_order(server):
    """Seven requests written at once, h2c offers and an error among them: seven answers in order."""
    bad = {"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0]]}}
    requests = [
        post(MSE),
        get("/v1/losses/CrossEntropyLoss"),
        post(CROSS_ENTROPY, head=UPGRADE, chunks=2),
        post(bad),
        get("/healthz", head=UPGRADE),
        post(MSE, chunks=2),
        post(CROSS_ENTROPY),
    ]
    answers = run(exchange(server.port, [b"".join(requests)], len(requests)))
    assert [status for status, _, _ in answers] == [200, 200, 200, 422, 200, 200, 200]
    value, grad = cross_entropy_reference()
    assert json.loads(answers[0][2])["value"] == 0.625
    assert json.loads(answers[1][2])["name"] == "cross_entropy"
    assert json.loads(answers[2][2])["value"] == pytest.approx(value, rel=1e-6)
    assert json.loads(answers[2][2])["grad"]["input"]["data"] == pytest.approx(grad, rel=1e-5, abs=1e-7)
    assert json.loads(answers[3][2])["detail"] == (
        "inputs.target: expected shape (*) = (1, 2) from input (*) = (1, 2); got (1, 1)"
    )
    assert json.loads(answers[4][2]) == {"status": "ok"}
    assert json.loads(answers[5][2])["value"] == 0.625
    assert json.loads(answers[6][2])["value"] == pytest.approx(value, rel=1e-6)
