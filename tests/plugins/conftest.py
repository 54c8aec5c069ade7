"""A real server (``python -m service``) with the example and sample plugins, and a feature network
for the perceptual example: a small random conv network saved with ``torch.jit.save``."""

from __future__ import annotations

import asyncio
import warnings

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from ..e2e import servers

S = "tests.plugins.sample_plugins:"
PLUGINS = [
    "examples.plugins.template:MyLoss",
    "examples.plugins.template:SquaredError",
    "examples.plugins.perceptual:PerceptualLoss",
    S + "Fragile",
    S + "WeightedCE",
    S + "CUBE_ERROR",
]


def feature_network() -> nn.Module:
    """A small random feature extractor: (N, 3, H, W) images to (N, 6, H/2 - 1, W/2 - 1) features."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.Tanh()
    ).eval()  # fmt: skip


@pytest.fixture(scope="session")
def network_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("network") / "features.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.10+ calls TorchScript deprecated
        torch.jit.save(torch.jit.script(feature_network()), str(path))
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory, network_path):
    s = servers.start(
        tmp_path_factory.mktemp("plugin-server"), plugins=",".join(PLUGINS), perceptual_network=network_path
    )
    yield s
    s.stop()


def post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Every body POSTed to /v1/evaluate at once."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/evaluate", json=b) for b in bodies))

    return asyncio.run(run())


def tensor(t: torch.Tensor) -> dict:
    """A tensor in the request's explicit form, its dtype stated."""
    return {"data": t.tolist(), "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}


def array(answer: dict) -> np.ndarray:
    """A tensor of an answer (flat data, its shape beside it) as numpy."""
    return np.array(answer["data"], dtype=float).reshape(answer["shape"])
