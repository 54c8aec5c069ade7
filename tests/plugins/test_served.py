"""Plugins named by LOSS_SERVICE_PLUGINS, served by a real server: the seed template, a template
that takes reduction (batched), the richer API, a Loss object, and a plugin that raises."""

from __future__ import annotations

import random

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from examples.plugins.template import MyLoss, SquaredError

from .conftest import array, post_all, tensor

pytestmark = pytest.mark.e2e

MY_LOSS = {
    "name": "my_loss",
    "aliases": ["MyLoss", "myloss"],
    "summary": "MyLoss (a deployer plugin)",
    "category": "custom",
    "reference": "deployer plugin examples.plugins.template:MyLoss",
    "decomposable": False,
    "whole_request_when": None,
    "roles": [
        {"name": "predict", "kind": "float", "shape": "(N, *)", "differentiable": True, "optional": False,
         "description": ""},
        {"name": "label", "kind": "float", "shape": "(N, *)", "differentiable": True, "optional": False,
         "description": ""},
    ],
    "params": {"additionalProperties": False, "type": "object",
               "properties": {"param1": {"default": 0.0, "title": "Param1", "type": "number"}}},
    "reductions": ["mean"],
    "default_reduction": "mean",
    "elementwise_shape": "() the module's scalar",
}  # fmt: skip


def test_the_seed_template_is_in_the_catalog(server):
    assert httpx.get(f"{server.url}/v1/losses/my_loss").json() == MY_LOSS
    assert httpx.get(f"{server.url}/v1/losses/MyLoss").json() == MY_LOSS
    names = [entry["name"] for entry in httpx.get(f"{server.url}/v1/losses").json()["losses"]]
    assert names[-6:] == ["my_loss", "squared_error", "perceptual", "fragile", "weighted_ce", "cube_error"]


def test_the_seed_template_gives_the_modules_value_and_gradient(server):
    g = torch.Generator().manual_seed(1)
    predict = torch.randn(4, 3, 5, dtype=torch.float64, generator=g)
    label = torch.randn(4, 3, 5, dtype=torch.float64, generator=g)
    body = {"loss": {"name": "MyLoss", "params": {"param1": 0.5}}, "return_grad": True,
            "inputs": {"predict": tensor(predict), "label": tensor(label)}}  # fmt: skip
    r = httpx.post(f"{server.url}/v1/evaluate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    leaves = [predict.clone().requires_grad_(True), label.clone().requires_grad_(True)]
    value = MyLoss(param1=0.5)(*leaves)
    grads = torch.autograd.grad(value, leaves)
    assert (out["loss"], out["reduction"], out["elementwise"], out["meta"]["dtype"]) == (
        "my_loss", "mean", None, "float64")  # fmt: skip
    np.testing.assert_allclose(out["value"], value.item(), rtol=1e-9, atol=0)
    for name, grad in zip(("predict", "label"), grads, strict=True):
        assert out["grad"][name]["shape"] == [4, 3, 5]
        np.testing.assert_allclose(array(out["grad"][name]), grad.numpy(), rtol=1e-9, atol=1e-15)


ONE = {"predict": [[1.0, 2.0]], "label": [[0.0, 2.5]]}
NOT_DECOMPOSABLE = "it is not decomposable (its value reduces the whole request)"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"loss": {"name": "my_loss", "params": {"param": 1.0}}, "inputs": ONE},
         "loss.params.param: unknown parameter 'param' for my_loss; did you mean 'param1'?"),
        ({"loss": {"name": "my_loss", "params": {"scale": 1.0}}, "inputs": ONE},
         "loss.params.scale: unknown parameter 'scale' for my_loss; expected param1"),
        ({"loss": {"name": "my_loss", "params": {"param1": "2"}}, "inputs": ONE},
         "loss.params.param1: input should be a valid number; got '2'"),
        ({"loss": {"name": "my_loss", "params": {"param1": True}}, "inputs": ONE},
         "loss.params.param1: input should be a valid number; got True"),
        ({"loss": {"name": "my_loss", "reduction": "sum"}, "inputs": ONE},
         "loss.reduction: my_loss does not accept reduction 'sum'; expected one of mean"),
        ({"loss": {"name": "my_loss", "reduction": "none"}, "inputs": ONE},
         f"loss.reduction: my_loss does not accept reduction 'none': {NOT_DECOMPOSABLE}; expected one of mean"),
        ({"loss": "my_loss", "inputs": ONE, "return_elementwise": True},
         f"return_elementwise: my_loss has no elementwise values: {NOT_DECOMPOSABLE}"),
        ({"loss": "my_loss", "inputs": {"predict": [[1.0, 2.0]], "label": [[0.0, 2.5, 3.0]]}},
         "inputs.label: expected shape (N, *) = (1, 2) from predict (N, *) = (1, 2); got (1, 3)"),
        ({"loss": "my_loss", "inputs": {"predict": [[1.0, 2.0]]}},
         "inputs.label: missing required role 'label' with shape (N, *)"),
        ({"loss": {"name": "squared_error", "params": {"scale": [2.0]}}, "inputs": ONE},
         "loss.params.scale: input should be a valid number; got [2.0]"),
        ({"loss": "weighted_ce", "inputs": {"logits": [[1.0, 2.0, 0.5]], "target": [3]}},
         "inputs.target: class index 3 out of range [0, 3) at (0,)"),
        ({"loss": "weighted_ce", "inputs": {"logits": [[1.0, 2.0, 0.5]], "target": [0.5]}},
         "inputs.target: expected integers; got 0.5 at position (0,)"),
    ],
)  # fmt: skip
def test_params_and_inputs_are_checked_as_for_built_in_losses(server, body, detail):
    r = httpx.post(f"{server.url}/v1/evaluate", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail


def squared_error_bodies(rng: random.Random, count: int) -> list[dict]:
    bodies = []
    for _ in range(count):
        n = rng.randint(1, 3)
        predict = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(n)]
        label = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(n)]
        loss = {"name": "squared_error", "params": {"scale": 1.5}, "reduction": rng.choice(["mean", "sum", "none"])}
        inputs = {"predict": {"data": predict, "dtype": "float64"}, "label": {"data": label, "dtype": "float64"}}
        bodies.append({"loss": loss, "inputs": inputs, "return_grad": True})
    return bodies


def test_a_template_that_takes_reduction_is_batched_and_exact(server):
    bodies = squared_error_bodies(random.Random(3), 48)
    alone = [httpx.post(f"{server.url}/v1/evaluate", json=b).json() for b in bodies]
    assert {a["meta"]["batch_size"] for a in alone} == {1}
    for body, answer in zip(bodies, alone, strict=True):  # PyTorch's module, in-process
        predict = torch.tensor(body["inputs"]["predict"]["data"], dtype=torch.float64, requires_grad=True)
        label = torch.tensor(body["inputs"]["label"]["data"], dtype=torch.float64)
        reduction = body["loss"]["reduction"]
        value = SquaredError(scale=1.5, reduction=reduction)(predict, label)
        (grad,) = torch.autograd.grad(value.sum(), [predict])
        got = array(answer["elementwise"]) if reduction == "none" else answer["value"]
        np.testing.assert_allclose(got, value.detach().numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(array(answer["grad"]["predict"]), grad.numpy(), rtol=1e-12, atol=1e-15)
    for _ in range(5):  # concurrent requests form batches (how many depends on timing: a few rounds)
        together = [r.json() for r in post_all(server.url, bodies)]
        for a, b in zip(alone, together, strict=True):  # to the last bit
            assert {k: v for k, v in b.items() if k != "meta"} == {k: v for k, v in a.items() if k != "meta"}
        if max(t["meta"]["batch_size"] for t in together) > 1:
            break
    assert max(t["meta"]["batch_size"] for t in together) > 1, "nothing was batched"


def test_a_plugin_that_raises_fails_its_request_alone(server):
    rng = random.Random(5)
    fragile = [{"loss": "fragile", "inputs": {"predict": [[rng.random(), 1.0]], "label": [[rng.random(), 0.5]]}}
               for _ in range(12)]  # fmt: skip
    mse = [{"loss": "mse", "inputs": {"input": [[rng.random(), 2.0]], "target": [[0.0, rng.random()]]}}
           for _ in range(24)]  # fmt: skip
    bad = {"loss": "fragile", "inputs": {"predict": [[1.0, 2.0]], "label": [[0.0, -2.5]]}}
    answers = post_all(server.url, [*fragile[:6], bad, *mse, *fragile[6:]])
    failed = answers[6]
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.json() == {
        "type": "https://loss-service.dev/problems/compute-failed", "title": "Compute failed", "status": 500,
        "detail": "computing fragile failed on the device; the error was logged", "errors": [],
    }  # fmt: skip
    healthy = [*answers[:6], *answers[7:]]
    assert [r.status_code for r in healthy] == [200] * len(healthy)
    for body, r in zip([*fragile[:6], *mse, *fragile[6:]], healthy, strict=True):
        x, y = (torch.tensor(t, dtype=torch.float32) for t in body["inputs"].values())
        expected = (x - y).abs().mean() if body["loss"] == "fragile" else F.mse_loss(x, y)
        assert r.json()["value"] == pytest.approx(expected.item(), rel=1e-6)
    assert "hunter2" in server.log.read_text()  # the deployer sees what went wrong; the client does not


IMPORTABLE = ["os:system", "examples.plugins.template:MyLoss", "tests.plugins.sample_plugins:Typed"]


@pytest.mark.parametrize("name", IMPORTABLE)
def test_no_request_makes_the_service_import_anything(server, name):
    body = {"loss": {"name": name, "params": {}}, "inputs": {"input": [[1.0]], "target": [[0.0]]}}
    r = httpx.post(f"{server.url}/v1/evaluate", json=body)
    assert r.status_code == 404
    assert r.json()["detail"] == f"loss: unknown loss {name!r}; see GET /v1/losses for the catalog"
    assert httpx.get(f"{server.url}/v1/losses/{name}").status_code == 404


def test_the_richer_api_declares_contracts_validators_and_weighted_means(server):
    info = httpx.get(f"{server.url}/v1/losses/WCE").json()
    assert (info["name"], info["aliases"], info["category"], info["reference"], info["elementwise_shape"]) == (
        "weighted_ce", ["WCE", "WeightedCE", "weightedce"], "classification", "PyTorch CrossEntropyLoss(weight=...)",
        "(N)",
    )  # fmt: skip
    assert [(r["name"], r["kind"], r["shape"], r["differentiable"]) for r in info["roles"]] == [
        ("logits", "float", "(N, C)", True), ("target", "integer", "(N)", False)]  # fmt: skip
    g = torch.Generator().manual_seed(2)
    weight = [0.5, 2.0, 1.0, 3.0]
    bodies, expected = [], []
    for n in (3, 1, 4, 2, 5, 1):  # concurrent: batched, each reduced by its own class weights
        logits = torch.randn(n, 4, dtype=torch.float64, generator=g)
        target = torch.randint(0, 4, (n,), generator=g)
        bodies.append({"loss": {"name": "weighted_ce", "params": {"weight": weight}}, "return_grad": True,
                       "inputs": {"logits": tensor(logits), "target": target.tolist()}})  # fmt: skip
        leaf = logits.clone().requires_grad_(True)
        value = F.cross_entropy(leaf, target, weight=torch.tensor(weight, dtype=torch.float64))
        expected.append((value.item(), torch.autograd.grad(value, [leaf])[0].numpy()))
    for r, (value, grad) in zip(post_all(server.url, bodies), expected, strict=True):
        out = r.json()
        np.testing.assert_allclose(out["value"], value, rtol=1e-12)
        np.testing.assert_allclose(array(out["grad"]["logits"]), grad, rtol=1e-12, atol=1e-15)


def test_a_loss_object_is_served_as_it_is(server):
    body = {"loss": {"name": "cube_error", "params": {"scale": 2.0}, "reduction": "sum"},
            "inputs": {"input": [[1.0, -1.0]], "target": [[0.5, 1.0]]}, "return_elementwise": True}  # fmt: skip
    out = httpx.post(f"{server.url}/v1/evaluate", json=body).json()
    assert (out["value"], out["elementwise"]["data"], out["elementwise"]["shape"]) == (16.25, [0.25, 16.0], [1, 2])
