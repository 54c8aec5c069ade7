"""The perceptual example: a TorchScript network named by a setting, against the same network in-process."""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .conftest import array, feature_network, tensor

pytestmark = pytest.mark.e2e


def reference(images: torch.Tensor, target: torch.Tensor, distance: str, reduction: str):
    """The value and the gradient for ``images``, from the unscripted network in the images' dtype."""
    net = copy.deepcopy(feature_network()).to(images.dtype)
    leaf = images.clone().requires_grad_(True)
    distance_fn = F.l1_loss if distance == "l1" else F.mse_loss
    value = distance_fn(net(leaf), net(target), reduction=reduction)
    (grad,) = torch.autograd.grad(value.sum(), [leaf])
    return value.detach(), grad


@pytest.mark.parametrize(
    ("dtype", "distance", "reduction", "rtol"),
    [(torch.float64, "l2", "mean", 1e-9), (torch.float64, "l1", "sum", 1e-9), (torch.float64, "l2", "none", 1e-9),
     (torch.float32, "l1", "mean", 1e-5)],
)  # fmt: skip
def test_perceptual_value_and_gradient_match_the_network_in_process(server, dtype, distance, reduction, rtol):
    g = torch.Generator().manual_seed(4)
    images, target = torch.rand(2, 3, 12, 10, generator=g), torch.rand(2, 3, 12, 10, generator=g)
    images, target = images.to(dtype), target.to(dtype)
    body = {"loss": {"name": "perceptual", "params": {"distance": distance}, "reduction": reduction},
            "inputs": {"input": tensor(images), "target": tensor(target)}, "return_grad": ["input"]}  # fmt: skip
    r = httpx.post(f"{server.url}/v1/evaluate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    value, grad = reference(images, target, distance, reduction)
    got = array(out["elementwise"]) if reduction == "none" else out["value"]
    if reduction == "none":
        assert out["elementwise"]["shape"] == [2, 6, 5, 4]
    np.testing.assert_allclose(got, value.numpy(), rtol=rtol, atol=rtol * 1e-3)
    assert out["grad"]["input"]["dtype"] == str(dtype).removeprefix("torch.")
    np.testing.assert_allclose(array(out["grad"]["input"]), grad.numpy(), rtol=rtol, atol=rtol * 1e-3)


def test_perceptual_is_in_the_catalog_with_its_contract(server):
    info = httpx.get(f"{server.url}/v1/losses/PerceptualLoss").json()
    assert (info["name"], info["category"], info["decomposable"], info["reductions"]) == (
        "perceptual", "image", True, ["mean", "sum", "none"])  # fmt: skip
    assert info["reference"].startswith("Johnson et al. 2016, Perceptual Losses for Real-Time Style Transfer")
    assert [(r["name"], r["shape"]) for r in info["roles"]] == [("input", "(N, C, H, W)"), ("target", "(N, C, H, W)")]
    assert info["params"]["properties"] == {
        "distance": {"default": "l2", "enum": ["l1", "l2"], "title": "Distance", "type": "string"}}  # fmt: skip
    body = {"loss": "perceptual", "inputs": {"input": [[[1.0, 2.0]]], "target": [[[1.0, 2.0]]]}}
    r = httpx.post(f"{server.url}/v1/evaluate", json=body)
    assert r.json()["detail"] == "inputs.input: expected shape (N, C, H, W); got (1, 1, 2)"
