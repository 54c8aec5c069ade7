"""examples/java/LossClient.java, run with Java's single-file source launcher against a real server:
its output against torch, and the proof that it ran with Java's defaults (its first request offered
an h2c upgrade, which the service declined by answering over HTTP/1.1 with the body read)."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest
import torch
import torch.nn.functional as F

from .conftest import API_KEY, EXAMPLES, run_example
from .relay import Relay

JAVA = shutil.which("java")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(JAVA is None, reason="java is not installed: examples/java/LossClient.java was not run"),
]
GRAD = re.compile(r"^grad\[input\] shape \[(\d+), (\d+)\] float32: \[(.*)\]$")


def test_the_java_client_evaluates_and_lists_the_losses(server):
    with Relay(server.port) as relay:
        done = run_example([JAVA, EXAMPLES / "java" / "LossClient.java", relay.url], LOSS_SERVICE_API_KEY=API_KEY)
        sent = relay.sent()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 7, done.stdout

    request = json.loads(lines[0].removeprefix("request: "))
    assert lines[1] == "POST /v1/evaluate: 200 over HTTP_1_1"
    assert lines[2] == "loss: cross_entropy, reduction: mean"
    logits = torch.tensor(request["inputs"]["input"], requires_grad=True)
    expected = F.cross_entropy(logits, torch.tensor(request["inputs"]["target"]), **request["loss"]["params"])
    expected.backward()
    assert float(lines[3].removeprefix("value: ")) == pytest.approx(expected.item(), rel=1e-6)
    rows, columns, data = GRAD.match(lines[4]).groups()
    assert [int(rows), int(columns)] == list(logits.shape)
    assert [float(x) for x in data.split(", ")] == pytest.approx(logits.grad.flatten().tolist(), rel=1e-5, abs=1e-7)

    assert lines[5] == "GET /v1/losses: 200 over HTTP_1_1"
    catalog = httpx.get(f"{server.url}/v1/losses", headers={"X-API-Key": API_KEY}, timeout=10).json()
    names = [loss["name"] for loss in catalog["losses"]]
    assert lines[6] == f"losses ({len(names)}): " + ", ".join(names)

    head = sent[: sent.index(b"\r\n\r\n")].decode().split("\r\n")
    assert head[0] == "POST /v1/evaluate HTTP/1.1"
    assert {"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", f"Authorization: Bearer {API_KEY}"} <= set(head)
