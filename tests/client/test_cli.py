"""The ``loss-client`` command, run as a subprocess against a real server: stdout JSON, gradient
files, exit statuses and the texts on stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.client.conftest import API_KEY
from tests.e2e.servers import free_port

pytestmark = pytest.mark.e2e

LOSS_CLIENT = str(Path(sys.executable).parent / "loss-client")
TOL = dict(rtol=1e-9, atol=1e-12)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: bytes = b""):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    return subprocess.run(
        [LOSS_CLIENT, *args],
        check=False,
        env={**clean, **(env or {})},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def env(server):
    return {"LOSS_SERVICE_URL": server.url, "LOSS_SERVICE_API_KEY": API_KEY}


@pytest.fixture
def files(tmp_path):
    """logits (4, 3) float64, labels (4,) int64, and two (4, 3) float64 arrays, as .npy files."""
    rng = np.random.default_rng(7)
    arrays = {
        "logits": rng.normal(size=(4, 3)),
        "labels": np.array([0, 2, 1, 1]),
        "x": rng.normal(size=(4, 3)),
        "y": rng.normal(size=(4, 3)),
    }
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    return arrays


def test_losses_prints_a_table_of_the_catalog(server, env):
    done = run("losses", env=env)
    assert (done.returncode, done.stderr) == (0, b"")
    lines = done.stdout.decode().splitlines()
    catalog = httpx.get(f"{server.url}/v1/losses", headers={"X-API-Key": API_KEY}).json()["losses"]
    assert [re.split(r"\s{2,}", line, maxsplit=2) for line in lines] == [
        ["NAME", "CATEGORY", "SUMMARY"],
        *([e["name"], e["category"], e["summary"]] for e in catalog),
    ]


def test_a_reader_that_leaves_early_gets_no_traceback(env):
    """``loss-client losses | head -1``: stdout's reader is gone before the table is written."""
    read, write = os.pipe()
    os.close(read)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run(
            [LOSS_CLIENT, "losses"], check=False, env={**clean, **env}, stdout=stdout, stderr=subprocess.PIPE
        )
    assert (done.returncode, done.stderr) == (1, b"")


def test_losses_json_is_the_catalog(server):
    done = run("losses", "--json", "--url", server.url, "--api-key", API_KEY)
    assert done.returncode == 0
    catalog = httpx.get(f"{server.url}/v1/losses", headers={"X-API-Key": API_KEY}).json()
    assert json.loads(done.stdout) == catalog


def test_evaluate_prints_the_value_and_writes_gradients(env, files, tmp_path):
    done = run(
        "evaluate", "CrossEntropyLoss", "input=logits.npy", "target=labels.npy",
        "--param", "weight=[0.5,1,2]", "--param", "label_smoothing=0.1", "--grad", "--grad-dir", "out",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    out = json.loads(done.stdout)
    x = torch.tensor(files["logits"], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    expected = F.cross_entropy(x, torch.from_numpy(files["labels"]), weight=w, label_smoothing=0.1)
    expected.backward()
    np.testing.assert_allclose(out["value"], expected.item(), **TOL)
    assert {k: out[k] for k in ("loss", "reduction", "elementwise", "grad")} == {
        "loss": "cross_entropy",
        "reduction": "mean",
        "elementwise": None,
        "grad": {"input": "out/grad_input.npy"},
    }
    assert out["meta"]["dtype"] == "float64"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grad_input.npy"]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "grad_input.npy"), x.grad.numpy(), **TOL)


def test_params_json_roles_after_grad_and_options_between_inputs(env, files, tmp_path):
    done = run(
        "evaluate", "focal", "input=logits.npy", "--params-json", '{"gamma": 3, "alpha": [1, 1, 1]}',
        "--param", "gamma=1.5", "--grad", "input", "target=labels.npy", "--grad-dir", str(tmp_path / "g"),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    x = torch.tensor(files["logits"], requires_grad=True)
    log_p_t = torch.log_softmax(x, 1).gather(1, torch.from_numpy(files["labels"])[:, None])[:, 0]
    expected = (-((1 - log_p_t.exp()) ** 1.5) * log_p_t).mean()
    expected.backward()
    out = json.loads(done.stdout)
    np.testing.assert_allclose(out["value"], expected.item(), **TOL)
    assert out["grad"] == {"input": str(tmp_path / "g" / "grad_input.npy")}
    np.testing.assert_allclose(np.load(tmp_path / "g" / "grad_input.npy"), x.grad.numpy(), **TOL)


def test_elementwise_to_a_file(env, files, tmp_path):
    done = run(
        "evaluate", "mse", "input=x.npy", "target=y.npy", "--reduction", "none", "--elementwise", "el.npy",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    out = json.loads(done.stdout)
    assert (out["value"], out["elementwise"], out["grad"]) == (None, "el.npy", {})
    expected = F.mse_loss(torch.from_numpy(files["x"]), torch.from_numpy(files["y"]), reduction="none")
    np.testing.assert_allclose(np.load(tmp_path / "el.npy"), expected.numpy(), **TOL)


def test_reduction_none_without_a_file_prints_the_elementwise_values(env, files, tmp_path):
    done = run("evaluate", "l1", "input=x.npy", "target=y.npy", "--reduction", "none", env=env, cwd=tmp_path)
    assert done.returncode == 0
    np.testing.assert_allclose(json.loads(done.stdout)["elementwise"], np.abs(files["x"] - files["y"]), **TOL)


def test_a_role_read_from_stdin(env, files, tmp_path):
    stdin = (tmp_path / "x.npy").read_bytes()
    done = run("evaluate", "mse", "input=-", "target=y.npy", env=env, cwd=tmp_path, stdin=stdin)
    assert done.returncode == 0
    np.testing.assert_allclose(json.loads(done.stdout)["value"], np.mean((files["x"] - files["y"]) ** 2), **TOL)


def test_a_bad_role_prints_the_problem_and_exits_1(env, files, tmp_path):
    done = run("evaluate", "mse", "input=x.npy", "targt=y.npy", env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == (
        "inputs.targt: unknown role 'targt' for mse; expected input, target (and 1 more)\n"
        "  inputs.targt: unknown role 'targt' for mse; expected input, target\n"
        "  inputs.target: missing required role 'target' with shape (*)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "logits.npy", "x.npy", "y.npy"]


def test_an_unknown_param_prints_the_problem(env, files, tmp_path):
    args = ("evaluate", "focal", "input=logits.npy", "target=labels.npy", "--param", "gama=2")
    done = run(*args, env=env, cwd=tmp_path)
    assert (done.returncode, done.stderr.decode()) == (
        1,
        "loss.params.gama: unknown parameter 'gama' for focal; did you mean 'gamma'?\n",
    )


def test_api_key_flag_wins_over_the_environment(server, files, tmp_path):
    args = ("evaluate", "mse", "input=x.npy", "target=y.npy", "--url", server.url)
    done = run(*args, "--api-key", "wrong", env={"LOSS_SERVICE_API_KEY": API_KEY}, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, b"the API key is not valid\n")
    done = run(*args, "--api-key", API_KEY, env={"LOSS_SERVICE_API_KEY": "wrong"}, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")


def test_an_unreachable_url_is_one_line_and_exit_1(files, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = run("evaluate", "mse", "input=x.npy", "target=y.npy", env={"LOSS_SERVICE_URL": url}, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == f"loss-client: cannot connect to {url}: [Errno 111] Connection refused\n"


def test_a_missing_file_is_exit_1(env, tmp_path):
    done = run("evaluate", "mse", "input=nope.npy", "target=nope.npy", env=env, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, b"loss-client: cannot read nope.npy: No such file or directory\n")


EVALUATE = "loss-client evaluate: error: "


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("evaluate", "mse", "input", "target=y.npy"), EVALUATE + "expected ROLE=FILE.npy, got 'input'"),
        (("evaluate", "mse"), EVALUATE + "at least one ROLE=FILE.npy is required"),
        (("evaluate", "mse", "input=x.npy", "--param", "gamma"), EVALUATE + "expected --param K=V, got 'gamma'"),
        (("evaluate", "mse", "input=x.npy", "--params-json", "[1]"), EVALUATE + "--params-json must be a JSON object"),
        (("evaluate", "mse", "input=x.npy", "--bogus"), EVALUATE + "unrecognized arguments: --bogus"),
        (("losses", "extra"), "loss-client: error: unrecognized arguments: extra"),
        ((), "loss-client: error: the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(args, message, tmp_path):
    done = run(*args, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode().splitlines()[-1] == message
