"""The real server, started with the README's command, called with curl (JSON and multipart .npy)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    with open(tmp_path_factory.mktemp("server") / "server.log", "w+b") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
        env["LOSS_SERVICE_VENV"] = str(Path(sys.executable).parent.parent)  # the suite's own environment
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail("server exited: " + log.read().decode(errors="replace"))
            if curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/readyz").stdout == "200":
                break
            time.sleep(0.3)
        else:
            pytest.fail("server did not become ready in 120 s")
        yield url, proc
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def curl(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("curl"), "curl is needed (scripts/test installs it)"
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False)


def npy_file(tmp_path: Path, name: str, arr: np.ndarray) -> Path:
    path = tmp_path / f"{name}.npy"
    np.save(path, arr)
    return path


def test_json_with_curl(server):
    url, _ = server
    body = {"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}, "return_grad": True}
    r = curl("-X", "POST", f"{url}/v1/evaluate", "-H", "Content-Type: application/json", "-d", json.dumps(body))
    out = json.loads(r.stdout)
    assert out["value"] == 0.625
    assert out["grad"]["input"]["data"] == [1.0, -0.5]


def test_multipart_npy_with_curl(server, tmp_path):
    url, _ = server
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    y = rng.standard_normal((4, 3, 5))
    request = json.dumps(
        {"loss": {"name": "huber", "params": {"delta": 0.5}}, "return_grad": ["input"], "response_encoding": "npy"}
    )
    r = curl(
        "-X",
        "POST",
        f"{url}/v1/evaluate",
        "-F",
        f"request={request}",
        "-F",
        f"input=@{npy_file(tmp_path, 'input', x)}",
        "-F",
        f"target=@{npy_file(tmp_path, 'target', y)}",
    )
    out = json.loads(r.stdout)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = torch.nn.functional.huber_loss(xt, torch.from_numpy(y), delta=0.5)
    want.backward()
    assert out["meta"]["dtype"] == "float64"
    assert out["value"] == pytest.approx(want.item(), rel=1e-12)
    import base64

    grad = np.load(io.BytesIO(base64.b64decode(out["grad"]["input"]["npy"])))
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_npy_upload_with_curl(server, tmp_path, chunked):
    """An 8 MB .npy upload arrives in many chunks (sent chunked too): every byte reaches the loss."""
    url, _ = server
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16384, 64)).astype(np.float32)
    t = rng.integers(0, 64, 16384)
    headers = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    r = curl(
        "-X",
        "POST",
        f"{url}/v1/evaluate",
        *headers,
        "-F",
        'request={"loss": {"name": "cross_entropy", "reduction": "sum"}}',
        "-F",
        f"input=@{npy_file(tmp_path, 'input', x)}",
        "-F",
        f"target=@{npy_file(tmp_path, 'target', t)}",
    )
    want = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t), reduction="sum")
    assert json.loads(r.stdout).get("value") == pytest.approx(want.item(), rel=1e-5), r.stdout


def test_errors_reach_curl_as_problem_json(server):
    url, _ = server
    r = curl(
        "-X",
        "POST",
        f"{url}/v1/evaluate",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{not json",
        "-w",
        "\n%{http_code} %{content_type}",
    )
    body, _, status = r.stdout.rpartition("\n")
    assert status == "400 application/problem+json"
    assert json.loads(body)["title"] == "Malformed request"


def test_sigterm_exits_cleanly(server):
    """Last in this module: SIGTERM stops the server with exit status 0."""
    url, proc = server
    assert curl(f"{url}/healthz").stdout == '{"status":"ok"}'
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0


def test_two_workers_serve_and_stop_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    with open(tmp_path / "server.log", "w+b") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/readyz").stdout != "200":
                assert proc.poll() is None and time.monotonic() < deadline, log.seek(0) or log.read().decode()
                time.sleep(0.3)
            info = json.loads(curl(f"{url}/v1/info").stdout)
            assert info["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)  # cores shared by the workers
            body = json.dumps({"loss": "l1", "inputs": {"input": [[1.0, -1.0]], "target": [[0.0, 0.0]]}})
            for _ in range(6):
                r = curl("-X", "POST", f"{url}/v1/evaluate", "-H", "Content-Type: application/json", "-d", body)
                assert json.loads(r.stdout)["value"] == 1.0
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
