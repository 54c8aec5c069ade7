"""examples/curl/*.sh against a real server with an API key: each script's output against torch
(values and gradients) or against the server's own catalog."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .conftest import API_KEY, EXAMPLES, run_example

pytestmark = pytest.mark.e2e
CURL = EXAMPLES / "curl"


@pytest.fixture(autouse=True)
def _curl():
    assert shutil.which("curl"), "curl is needed (scripts/test installs it)"


def script(name: str, *args: str, **env: str) -> str:
    """What ``examples/curl/NAME ARGS`` printed; it must succeed."""
    done = run_example(["bash", CURL / name, *args], **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    return done.stdout


def test_evaluate_sends_json_and_gets_the_value_and_gradient(server):
    answer = json.loads(script("evaluate.sh", server.url, LOSS_SERVICE_API_KEY=API_KEY))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
    expected = F.cross_entropy(logits, torch.tensor([0, 2]), label_smoothing=0.1)
    expected.backward()
    assert answer["value"] == pytest.approx(expected.item(), rel=1e-6)
    assert answer["grad"]["input"]["shape"] == [2, 3]
    assert answer["grad"]["input"]["data"] == pytest.approx(logits.grad.flatten().tolist(), rel=1e-5, abs=1e-7)


def test_evaluate_npy_sends_npy_files(server):
    """The URL from LOSS_SERVICE_URL this time, not an argument."""
    answer = json.loads(script("evaluate_npy.sh", LOSS_SERVICE_URL=server.url, LOSS_SERVICE_API_KEY=API_KEY))
    logits = torch.from_numpy(np.load(CURL / "data" / "logits.npy")).requires_grad_()
    labels = torch.from_numpy(np.load(CURL / "data" / "labels.npy"))
    expected = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=torch.tensor([1.0, 2.0, 0.5]))
    expected.backward()
    assert answer["loss"] == "bce_with_logits"
    assert answer["value"] == pytest.approx(expected.item(), rel=1e-6)
    assert answer["grad"]["input"]["shape"] == [4, 3]
    assert answer["grad"]["input"]["data"] == pytest.approx(logits.grad.flatten().tolist(), rel=1e-5, abs=1e-7)


def test_losses_lists_the_catalog_and_finds_one_by_alias(server):
    catalog = httpx.get(f"{server.url}/v1/losses", headers={"X-API-Key": API_KEY}, timeout=10).json()
    assert json.loads(script("losses.sh", server.url, LOSS_SERVICE_API_KEY=API_KEY)) == catalog
    one = json.loads(script("losses.sh", server.url, "CrossEntropyLoss", LOSS_SERVICE_API_KEY=API_KEY))
    assert one == next(loss for loss in catalog["losses"] if loss["name"] == "cross_entropy")


def test_error_shows_a_problem(server):
    *problem, status = script("error.sh", server.url, LOSS_SERVICE_API_KEY=API_KEY).splitlines()
    assert status == "HTTP 422 application/problem+json"
    msg = "expected shape (N, *) = (2,) or (N, C, *) = (2, 3) from input (N, C, *) = (2, 3); got (3,)"
    assert json.loads("\n".join(problem)) == {
        "type": "https://loss-service.dev/problems/invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": f"inputs.target: {msg}",
        "errors": [{"loc": ["inputs", "target"], "msg": msg}],
    }


def test_a_script_fails_with_the_problem_when_the_server_refuses(server):
    """Without the API key: curl's exit status 22 (--fail-with-body), the 401 problem printed."""
    done = run_example(["bash", CURL / "evaluate.sh", server.url])
    assert done.returncode == 22
    assert done.stderr == "curl: (22) The requested URL returned error: 401\n"
    assert json.loads(done.stdout)["detail"] == (
        "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
    )
