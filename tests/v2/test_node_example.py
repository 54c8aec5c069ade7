"""examples/node against a real server: evaluate.mjs's value, elementwise values and gradients equal
PyTorch's in this process; an error answer is the service's message on stderr, exit status 1."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.e2e.servers import ROOT, Server

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (examples/node needs Node.js 20+)")
SCRIPT = ROOT / "examples" / "node" / "evaluate.mjs"
WEIGHT = [1.0, 2.0, 0.5, 1.0, 1.0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("npy")
    logits, labels = rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 5, 8)
    np.save(d / "logits.npy", logits)
    np.save(d / "labels.npy", labels)
    return d, logits, labels


def run(server: Server, *args: str) -> subprocess.CompletedProcess:
    assert NODE is not None
    argv = [NODE, str(SCRIPT), "--url", server.url, *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


def test_value_and_gradient_equal_torch(server, files):
    d, logits, labels = files
    done = run(server, "--loss", "cross_entropy", "--param", "label_smoothing=0.1", "--param",
               f"weight={json.dumps(WEIGHT)}", "--grad", "input", "--out", str(d / "out"),
               f"input={d / 'logits.npy'}", f"target={d / 'labels.npy'}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    x = torch.from_numpy(logits).requires_grad_(True)
    want = F.cross_entropy(x, torch.from_numpy(labels), weight=torch.tensor(WEIGHT), label_smoothing=0.1)
    (grad,) = torch.autograd.grad(want, [x])
    assert (answer["loss"], answer["reduction"], answer["meta"]["dtype"]) == ("cross_entropy", "mean", "float32")
    torch.testing.assert_close(torch.tensor(answer["value"], dtype=torch.float32), want.detach(), rtol=2e-6, atol=1e-7)
    assert answer["grad"] == {"input": str(d / "out" / "grad_input.npy")}
    torch.testing.assert_close(torch.from_numpy(np.load(answer["grad"]["input"])), grad, rtol=2e-6, atol=1e-7)


def test_elementwise_values_under_reduction_none(server, files):
    d, logits, labels = files
    done = run(server, "--loss", "focal", "--param", "gamma=2", "--reduction", "none", "--out", str(d / "none"),
               f"input={d / 'logits.npy'}", f"target={d / 'labels.npy'}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["value"] is None
    log_pt = F.log_softmax(torch.from_numpy(logits), dim=1).gather(1, torch.from_numpy(labels)[:, None])[:, 0]
    want = -((1 - log_pt.exp()) ** 2) * log_pt
    torch.testing.assert_close(torch.from_numpy(np.load(answer["elementwise"])), want, rtol=2e-6, atol=1e-7)


def test_an_error_is_the_services_message(server, files):
    d, _, _ = files
    done = run(server, "--loss", "cross_entropyy", f"input={d / 'logits.npy'}", f"target={d / 'labels.npy'}")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "404: model: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?\n"
