"""Offers to upgrade to HTTP/2 on plain HTTP (``Connection: Upgrade, HTTP2-Settings``,
``Upgrade: h2c``: Java's default HttpClient, ``curl --http2``) are declined by answering over
HTTP/1.1, with the request's body read (it was dropped: 400 "empty document") and the connection
kept for the requests that follow. Java's own client: tests/examples/test_java.py."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .wire import CROSS_ENTROPY, MSE, UPGRADE, cross_entropy_reference, exchange, get, post, run

pytestmark = pytest.mark.e2e


def curl(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("curl"), "curl is needed (scripts/test installs it)"
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False)


def test_curl_http2_post_is_answered_over_http1_with_its_body(server):
    if "HTTP2" not in curl("--version").stdout:
        pytest.skip("this curl has no HTTP/2 support, so --http2 offers no upgrade")
    done = curl(
        "-v", "--http2", f"{server.url}/v1/evaluate", "-H", "Content-Type: application/json",
        "-d", json.dumps(CROSS_ENTROPY),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sent = [line for line in done.stderr.splitlines() if line.startswith("> ")]
    assert "> Upgrade: h2c" in sent
    assert "> Connection: Upgrade, HTTP2-Settings" in sent
    assert [line for line in done.stderr.splitlines() if line.startswith("< HTTP/")] == ["< HTTP/1.1 200 OK"]
    answer = json.loads(done.stdout)
    value, grad = cross_entropy_reference()
    assert answer["value"] == pytest.approx(value, rel=1e-6)
    assert answer["grad"]["input"]["data"] == pytest.approx(grad, rel=1e-5, abs=1e-7)


def test_bodies_of_upgrade_offers_are_read_and_the_connection_kept(server):
    """A Content-Length body, a chunked one, a GET without a body (the parser upgrades at once),
    then a plain request: four answers on one connection, none a 101."""
    answers = run(
        exchange(
            server.port,
            [
                post(CROSS_ENTROPY, head=UPGRADE),
                post(MSE, head=UPGRADE, chunks=3),
                get("/v1/losses/MSELoss", head=UPGRADE),
                post(MSE),
            ],
            4,
        )
    )
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    value, _ = cross_entropy_reference()
    assert json.loads(answers[0][2])["value"] == pytest.approx(value, rel=1e-6)
    assert json.loads(answers[1][2])["value"] == 0.625
    assert json.loads(answers[2][2])["name"] == "mse"
    assert json.loads(answers[3][2])["value"] == 0.625


@pytest.mark.parametrize("chunks", [0, 4], ids=["content-length", "chunked"])
def test_an_upgrade_offer_whose_body_arrives_in_pieces(server, chunks):
    """The head alone, then the body in three writes (the parser that reads it after the declined
    upgrade is fed each piece as it comes), then a next request."""
    request = post(MSE, head=UPGRADE, chunks=chunks)
    body_at = request.index(b"\r\n\r\n") + 4
    third = (len(request) - body_at) // 3
    pieces = [
        request[:body_at],
        request[body_at : body_at + third],
        request[body_at + third : -third],
        request[-third:],
    ]
    answers = run(exchange(server.port, [*pieces, get("/healthz")], 2))
    assert [(status, json.loads(body)) for status, _, body in answers][1] == (200, {"status": "ok"})
    assert answers[0][0] == 200
    assert json.loads(answers[0][2])["value"] == 0.625


def test_a_malformed_body_after_an_upgrade_offer_is_a_problem(server):
    """The body is the application's to judge, as without the offer: here, JSON that is not."""
    (status, headers, body), *_ = run(exchange(server.port, [post(b'{"loss": ', head=UPGRADE)], 1))
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["detail"] == "body: malformed JSON: unexpected end of data: line 1 column 10 (char 9)"


def test_what_follows_a_connect_is_dropped_and_the_connection_closed_after_the_answer(server):
    """CONNECT is an upgrade to the parser too; this is no proxy: 405, and the tunnel's bytes
    that follow (here in a later read) are neither parsed nor answered."""
    writes = [b"CONNECT /v1/evaluate HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00 no HTTP\r\n\r\n"]
    [(status, headers, body)] = run(exchange(server.port, writes, 1, closes=True))
    assert status == 405
    assert headers["connection"] == "close"
    assert json.loads(body)["detail"] == "CONNECT /v1/evaluate: method not allowed; allowed: POST"
