"""A plugin distribution (tests/plugin_pkg) installed with pip into a folder of its own, found by a
real server through the ``loss_service.losses`` entry points; the suite's environment stays without it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata

import httpx
import numpy as np
import pytest
import torch

from service.losses.catalog import ALL_LOSSES
from service.losses.plugins import ENTRY_POINT_GROUP, registry

from ..e2e import servers
from .conftest import array, tensor

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The distribution, built and installed by pip into a fresh folder (the source copied first: the
    build writes beside it)."""
    root = tmp_path_factory.mktemp("plugin-dist")
    shutil.copytree(servers.ROOT / "tests" / "plugin_pkg", root / "src")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--target", str(root / "site"), str(root / "src")]  # fmt: skip
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    return root / "site"


@pytest.fixture(scope="module")
def server(installed, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(installed))
        s = servers.start(tmp_path_factory.mktemp("entry-point-server"))
    yield s
    s.stop()


def test_the_suite_itself_runs_without_any_plugin_installed():
    assert not metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert [loss.name for loss in registry()] == [loss.name for loss in ALL_LOSSES]


def test_the_entry_points_losses_are_in_the_catalog(server):
    names = [entry["name"] for entry in httpx.get(f"{server.url}/v1/losses").json()["losses"]]
    assert names == [*(loss.name for loss in ALL_LOSSES), "pseudo_huber_loss", "log_ratio"]
    info = httpx.get(f"{server.url}/v1/losses/PseudoHuberLoss").json()
    assert (info["summary"], info["category"], info["reference"], info["reductions"]) == (
        "Pseudo-Huber loss delta^2 (sqrt(1 + ((x - y) / delta)^2) - 1), elementwise.", "custom",
        "deployer plugin demo_losses:PseudoHuberLoss", ["mean", "sum", "none"],
    )  # fmt: skip
    assert httpx.get(f"{server.url}/v1/losses/log_ratio").json()["reference"] == "the formula in the summary"


def test_the_entry_points_losses_compute(server):
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(3, 4, dtype=torch.float64, generator=g), torch.randn(3, 4, dtype=torch.float64, generator=g)
    body = {"loss": {"name": "pseudo_huber_loss", "params": {"delta": 0.5}, "reduction": "sum"},
            "inputs": {"input": tensor(x), "target": tensor(y)}, "return_grad": ["input"]}  # fmt: skip
    out = httpx.post(f"{server.url}/v1/evaluate", json=body).json()
    leaf = x.clone().requires_grad_(True)
    value = (0.25 * (torch.sqrt(1 + ((leaf - y) / 0.5) ** 2) - 1)).sum()
    (grad,) = torch.autograd.grad(value, [leaf])
    np.testing.assert_allclose(out["value"], value.item(), rtol=1e-12)
    np.testing.assert_allclose(array(out["grad"]["input"]), grad.numpy(), rtol=1e-12, atol=1e-15)
    body = {"loss": "log_ratio", "inputs": {"input": [[2.0, 1.0]], "target": [[1.0, 4.0]]}}
    value = httpx.post(f"{server.url}/v1/evaluate", json=body).json()["value"]
    x, y = torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 4.0]])
    assert value == torch.log((x + 1e-6) / (y + 1e-6)).abs().mean().item()
