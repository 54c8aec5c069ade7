"""The lovasz_hinge, lovasz_softmax and ssim checks (exact messages, through the app where the shape
contract answers, in-process where a validator does), their params, and what the reference table
cannot express: per_image=false runs alone, ties in half precision, MONAI's own float32 SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.codecs.tensors import Decoded
from service.engine.compute import group_key, run_group
from service.errors import ErrorItem, InvalidInput
from service.losses import lovasz, ssim
from service.losses.prepare import prepare

from ..conftest import problem
from .validators import REGISTRY, errors

CPU = torch.device("cpu")


def floats(*shape, fill=0.0, dtype="float32"):
    return {"shape": list(shape), "dtype": dtype, "data": [fill] * int(np.prod(shape))}


def ints(*shape, fill=0):
    return {"shape": list(shape), "dtype": "int64", "data": [fill] * int(np.prod(shape))}


def evaluate(client, name, params, **inputs):
    body = {"loss": {"name": name, "params": params}, "inputs": inputs}
    return client.post("/v1/evaluate", json=body)


def answer(client, status, name, params, **inputs):
    """The (loc, msg) pairs of the problem the request gets."""
    body = problem(evaluate(client, name, params, **inputs), status)
    return [(tuple(e["loc"]), e["msg"]) for e in body["errors"]]


def param_error(name, msg):
    return ErrorItem(("loss", "params", name), msg)


def job(name, params, reduction="mean", seed=0, n=2, grads=True, elementwise=False, dtype=torch.float64):
    """A checked job of random tensors: (n, 1, 4, 5) logits for lovasz_hinge, (n, 3, 4, 5) for
    lovasz_softmax, (n, 2, 6, 7) images for ssim."""
    g = torch.Generator().manual_seed(seed)
    if name == "lovasz_hinge":
        x, y = torch.randn(n, 1, 4, 5, generator=g), torch.randint(0, 2, (n, 4, 5), generator=g)
    elif name == "lovasz_softmax":
        x, y = torch.randn(n, 3, 4, 5, generator=g), torch.randint(0, 3, (n, 4, 5), generator=g)
    else:
        x, y = torch.rand(n, 2, 6, 7, generator=g), torch.rand(n, 2, 6, 7, generator=g)
    dtype_name = str(dtype).removeprefix("torch.")
    tensors = {
        k: Decoded(v.to(dtype).numpy(), dtype_name) if v.is_floating_point() else Decoded(v.numpy(), "int64")
        for k, v in {"input": x, "target": y}.items()
    }
    return prepare(REGISTRY, name, params, reduction, tensors, grads, elementwise)


# --- lovasz_hinge -------------------------------------------------------------------------------


def test_lovasz_hinge_accepts_binary_labels():
    y = np.array([[[0, 1], [1, 1]], [[0, 0], [0, 0]]])
    assert errors("lovasz_hinge", {}, input=np.zeros((2, 1, 2, 2), np.float32), target=y) == []


def test_lovasz_hinge_target_must_be_binary():
    y = np.array([[[0, 1], [1, 2]], [[0, -1], [0, 0]]])
    got = errors("lovasz_hinge", {}, input=np.zeros((2, 1, 2, 2), np.float32), target=y)
    assert got == [ErrorItem(("inputs", "target"), "expected 0 or 1; got 2 at position (0, 1, 1)")]


def test_lovasz_hinge_shapes(client):
    got = answer(client, 422, "lovasz_hinge", {}, input=floats(2, 2, 3, 3), target=ints(2, 3, 3))
    assert got == [(("inputs", "input"), "expected shape (N, 1, H, W); got (2, 2, 3, 3)")]
    got = answer(client, 422, "lovasz_hinge", {}, input=floats(2, 1, 3, 3), target=ints(2, 3, 4))
    msg = "expected shape (N, H, W) = (2, 3, 3) from input (N, 1, H, W) = (2, 1, 3, 3); got (2, 3, 4)"
    assert got == [(("inputs", "target"), msg)]


def test_lovasz_hinge_labels_are_integers(client):
    got = answer(client, 422, "lovasz_hinge", {}, input=floats(2, 1, 2, 2), target=floats(2, 2, 2, fill=0.5))
    assert got == [(("inputs", "target"), "expected integers; got 0.5 at position (0, 0, 0)")]
    # integral floats are labels
    assert evaluate(client, "lovasz_hinge", {}, input=floats(2, 1, 2, 2), target=floats(2, 2, 2, fill=1.0)).is_success


def test_lovasz_hinge_has_no_gradient_for_its_labels(client):
    body = {
        "loss": "lovasz_hinge",
        "inputs": {"input": floats(1, 1, 2, 2), "target": ints(1, 2, 2)},
        "return_grad": ["target"],
    }
    body = problem(client.post("/v1/evaluate", json=body), 422)
    assert [e["loc"] for e in body["errors"]] == [["return_grad", 0]]


def test_lovasz_hinge_params_refused():
    with pytest.raises(ValidationError):
        lovasz.LovaszHingeParams.model_validate({"per_image": 2})
    with pytest.raises(ValidationError):
        lovasz.LovaszHingeParams.model_validate({"ignore_index": 255})


# --- lovasz_softmax -----------------------------------------------------------------------------


def test_lovasz_softmax_accepts():
    x, y = np.zeros((2, 3, 2, 2), np.float32), np.array([[[0, 1], [2, 2]], [[1, 1], [0, 0]]])
    assert errors("lovasz_softmax", {}, input=x, target=y) == []
    assert errors("lovasz_softmax", {"weight": [1.0, 0.0, 2.5]}, input=x, target=y) == []
    assert errors("lovasz_softmax", {"classes": "present", "per_image": False}, input=x, target=y) == []


def test_lovasz_softmax_needs_two_classes():
    got = errors("lovasz_softmax", {}, input=np.zeros((2, 1, 2, 2), np.float32), target=np.zeros((2, 2, 2), np.int64))
    msg = "expected C > 1 classes (the softmax is taken over C; for one class use lovasz_hinge); got C = 1"
    assert got == [ErrorItem(("inputs", "input"), msg)]


def test_lovasz_softmax_class_index_range():
    y = np.array([[[0, 1], [2, 3]], [[1, 1], [0, 0]]])
    got = errors("lovasz_softmax", {}, input=np.zeros((2, 3, 2, 2), np.float32), target=y)
    assert got == [ErrorItem(("inputs", "target"), "class index 3 out of range [0, 3) at position (0, 1, 1)")]
    y[0, 1, 1] = -1
    got = errors("lovasz_softmax", {}, input=np.zeros((2, 3, 2, 2), np.float32), target=y)
    assert got == [ErrorItem(("inputs", "target"), "class index -1 out of range [0, 3) at position (0, 1, 1)")]


def test_lovasz_softmax_weight():
    x, y = np.zeros((2, 3, 2, 2), np.float32), np.zeros((2, 2, 2), np.int64)
    got = errors("lovasz_softmax", {"weight": [1.0, 2.0]}, input=x, target=y)
    assert got == [param_error("weight", "expected C = 3 values; got 2")]
    got = errors("lovasz_softmax", {"weight": [1.0, 2.0, 3.0], "classes": "present"}, input=x, target=y)
    msg = "weight is kornia's and applies to classes='all' (the mean over all C); got classes='present'"
    assert got == [param_error("weight", msg)]


def test_lovasz_softmax_params(client):
    x, y = floats(2, 3, 2, 2), ints(2, 2, 2)
    got = answer(client, 422, "lovasz_softmax", {"classes": "some"}, input=x, target=y)
    assert got == [(("loss", "params", "classes"), "input should be 'all' or 'present'; got 'some'")]
    got = answer(client, 422, "lovasz_softmax", {"weight": [1, -2, 1]}, input=x, target=y)
    assert got == [(("loss", "params", "weight", 1), "input should be greater than or equal to 0; got -2")]


@pytest.mark.parametrize("params", [{"weight": [float("inf")]}, {"classes": ["all"]}, {"ignore": 255}])
def test_lovasz_softmax_params_refused(params):
    with pytest.raises(ValidationError):
        lovasz.LovaszSoftmaxParams.model_validate(params)


# --- per_image=false: the pooled batch, alone ---------------------------------------------------


@pytest.mark.parametrize("name", ["lovasz_hinge", "lovasz_softmax"])
def test_per_image_is_batched_and_the_pooled_batch_runs_alone(name):
    assert group_key(job(name, {})) is not None
    pooled = [job(name, {"per_image": False}, reduction, seed) for seed, reduction in enumerate(["mean", "sum"])]
    assert [group_key(j) for j in pooled] == [None, None]
    assert not REGISTRY.get(name).batchable(pooled[0].params, pooled[0].arrays)


@pytest.mark.parametrize("name", ["lovasz_hinge", "lovasz_softmax"])
def test_the_pooled_batch_is_one_value(name):
    """per_image=false: one value for the whole request, so mean and sum are that value, with one
    gradient; no elementwise values nor reduction none (a 422 that says why); never batched."""
    mean, total = (job(name, {"per_image": False}, r) for r in ("mean", "sum"))
    assert group_key(mean) is None and group_key(total) is None
    outcomes = [run_group([j], CPU)[0] for j in (mean, total)]
    assert outcomes[0].value == outcomes[1].value
    np.testing.assert_array_equal(outcomes[0].grads["input"], outcomes[1].grads["input"])
    why = "with per_image=false its value reduces the whole request"
    with pytest.raises(InvalidInput) as info:
        job(name, {"per_image": False}, "none")
    assert (
        info.value.detail
        == f"loss.reduction: {name} does not accept reduction 'none': {why}; expected one of mean, sum"
    )
    with pytest.raises(InvalidInput) as info:
        job(name, {"per_image": False}, elementwise=True)
    assert info.value.detail == f"return_elementwise: {name} has no elementwise values: {why}"
    # and it is not the mean of the images' values
    per_image = run_group([job(name, {}, "none")], CPU)[0].elementwise
    assert per_image.shape == (2,) and abs(per_image.mean() - outcomes[0].value) > 1e-6


def test_a_batch_of_one_image_pools_to_its_own_value():
    for name in ("lovasz_hinge", "lovasz_softmax"):
        alone = run_group([job(name, {}, n=1)], CPU)[0]
        pooled = run_group([job(name, {"per_image": False}, n=1)], CPU)[0]
        assert alone.value == pooled.value
        np.testing.assert_array_equal(alone.grads["input"], pooled.grads["input"])


# --- lovasz in half precision -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["lovasz_hinge", "lovasz_softmax"])
def test_lovasz_in_half_precision_is_float32_rounded_once(name, dtype):
    """Sorted in the dtype, errors that differ in float32 tie, and the subgradient would depend on
    how the ties fall: the errors are sorted and weighted in float32 and each value rounded once."""
    loss = REGISTRY.get(name)
    params = loss.params.model_validate({})
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(3, 1 if name == "lovasz_hinge" else 4, 8, 8, generator=g) * 0.05).to(dtype)  # many ties
    y = torch.randint(0, x.shape[1] if name == "lovasz_softmax" else 2, (3, 8, 8), generator=g)
    leaf, leaf32 = x.clone().requires_grad_(True), x.float().requires_grad_(True)
    got = loss.forward({"input": leaf, "target": y}, params)
    want = loss.forward({"input": leaf32, "target": y}, params)
    assert got.dtype == dtype
    assert torch.equal(got, want.to(dtype))
    (grad,) = torch.autograd.grad(got.sum(), leaf)
    (grad32,) = torch.autograd.grad(want.sum(), leaf32)
    assert torch.equal(grad, grad32.to(dtype))


def test_lovasz_gradient_at_ties_is_a_subgradient():
    """Equal errors: the value is the extension's, and the gradient one of its subgradients: the
    Jaccard steps of one order of the pixels, non-negative and adding up to the loss of all."""
    loss = REGISTRY.get("lovasz_hinge")
    x = torch.zeros(1, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[[1, 0, 1], [0, 1, 0]]])
    el = loss.forward({"input": x, "target": y}, loss.params.model_validate({}))
    assert el.item() == pytest.approx(1.0)  # every hinge error is 1: the Jaccard loss of all pixels, 1
    (grad,) = torch.autograd.grad(el.sum(), x)
    steps = -grad * (2 * y.unsqueeze(1) - 1)  # d loss / d error (error = 1 - x s)
    assert (steps >= 0).all() and steps.sum().item() == pytest.approx(1.0)


# --- ssim ---------------------------------------------------------------------------------------


def images(*shape):
    return np.zeros(shape, np.float32)


def test_ssim_accepts_images_and_volumes():
    assert errors("ssim", {}, input=images(2, 3, 11, 12), target=images(2, 3, 11, 12)) == []
    assert errors("ssim", {"win_size": [3, 4, 5]}, input=images(1, 1, 3, 4, 5), target=images(1, 1, 3, 4, 5)) == []
    assert (
        errors("ssim", {"win_size": 4, "kernel_sigma": [1, 2.5]}, input=images(1, 1, 4, 4), target=images(1, 1, 4, 4))
        == []
    )


def test_ssim_window_larger_than_the_image():
    got = errors("ssim", {}, input=images(2, 1, 8, 12), target=images(2, 1, 8, 12))
    msg = "expected spatial sizes (H, W) of at least win_size = 11; got (N, C, H, W) = (2, 1, 8, 12)"
    assert got == [ErrorItem(("inputs", "input"), msg)]
    got = errors("ssim", {"win_size": [3, 3, 7]}, input=images(2, 1, 5, 9, 6), target=images(2, 1, 5, 9, 6))
    msg = "expected spatial sizes (D, H, W) of at least win_size = (3, 3, 7); got (N, C, D, H, W) = (2, 1, 5, 9, 6)"
    assert got == [ErrorItem(("inputs", "input"), msg)]


def test_ssim_one_value_per_spatial_dimension():
    x = images(2, 1, 8, 12)
    got = errors("ssim", {"win_size": [3, 5, 7], "kernel_sigma": [1.0]}, input=x, target=x)
    assert got == [
        param_error("win_size", "expected 2 values, one per spatial dimension (H, W) of the input; got 3"),
        param_error("kernel_sigma", "expected 2 values, one per spatial dimension (H, W) of the input; got 1"),
    ]
    x = images(1, 1, 6, 6, 6)
    got = errors("ssim", {"win_size": [3, 5], "kernel_sigma": [1.0, 1.0, 1.0]}, input=x, target=x)
    assert got == [
        param_error("win_size", "expected 3 values, one per spatial dimension (D, H, W) of the input; got 2")
    ]


def test_ssim_images_and_volumes_are_not_mixed(client):
    got = answer(client, 422, "ssim", {"win_size": 3}, input=floats(2, 1, 5, 6, 7), target=floats(2, 1, 6, 7))
    msg = (
        "expected shape (N, C, D, H, W) = (2, 1, 5, 6, 7) from input (N, C, D, H, W) = (2, 1, 5, 6, 7); "
        "got (2, 1, 6, 7)"
    )
    assert got == [(("inputs", "target"), msg)]
    got = answer(client, 422, "ssim", {"win_size": 3}, input=floats(2, 1, 6, 7), target=floats(2, 1, 5, 6, 7))
    msg = "expected shape (N, C, H, W) = (2, 1, 6, 7) from input (N, C, H, W) = (2, 1, 6, 7); got (2, 1, 5, 6, 7)"
    assert got == [(("inputs", "target"), msg)]
    got = answer(client, 422, "ssim", {}, input=floats(2, 1, 6), target=floats(2, 1, 6))
    assert got == [(("inputs", "input"), "expected shape (N, C, H, W) or (N, C, D, H, W); got (2, 1, 6)")]
    got = answer(client, 422, "ssim", {"win_size": 3}, input=floats(2, 1, 6, 7), target=floats(2, 2, 6, 7))
    msg = (
        "expected shape (N, C, H, W) = (2, 1, 6, 7) or (N, C, D, H, W) from input (N, C, H, W) = (2, 1, 6, 7); "
        "got (2, 2, 6, 7)"
    )
    assert got == [(("inputs", "target"), msg)]


def test_ssim_params(client):
    x = floats(2, 1, 6, 6)
    params = {"win_size": 0, "data_range": 0, "kernel_type": "box", "kernel_sigma": -1, "k1": -0.1}
    assert answer(client, 422, "ssim", params, input=x, target=x) == [
        (("loss", "params", "data_range"), "input should be greater than 0; got 0"),
        (("loss", "params", "kernel_type"), "input should be 'gaussian' or 'uniform'; got 'box'"),
        (
            ("loss", "params", "win_size"),
            "expected an integer >= 1, or a list of them (one per spatial dimension); got 0",
        ),
        (
            ("loss", "params", "kernel_sigma"),
            "expected a finite number > 0, or a list of them (one per spatial dimension); got -1",
        ),
        (("loss", "params", "k1"), "input should be greater than or equal to 0; got -0.1"),
    ]
    got = answer(client, 422, "ssim", {"win_size": [3, 2.5], "kernel_sigma": [1, "x"]}, input=x, target=x)
    assert got == [
        (
            ("loss", "params", "win_size"),
            "expected an integer >= 1, or a list of them (one per spatial dimension); got [3, 2.5]",
        ),
        (
            ("loss", "params", "kernel_sigma"),
            "expected a finite number > 0, or a list of them (one per spatial dimension); got [1, 'x']",
        ),
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"win_size": True},
        {"win_size": 3.5},
        {"win_size": [3, "5"]},
        {"kernel_sigma": float("nan")},
        {"kernel_sigma": [1.0, True]},
        {"k2": float("inf")},
        {"spatial_dims": 2},
    ],
)
def test_ssim_params_refused(params):
    with pytest.raises(ValidationError):
        ssim.SSIMParams.model_validate(params)


def test_ssim_integral_floats_are_windows():
    p = ssim.SSIMParams.model_validate({"win_size": [3.0, 5], "kernel_sigma": [1, 2.5]})
    assert (p.win_size, p.kernel_sigma) == ([3, 5], [1.0, 2.5])
    assert type(p.win_size[0]) is int and type(p.kernel_sigma[0]) is float
    assert ssim.SSIMParams.model_validate({"win_size": 7.0}).win_size == 7


def test_ssim_params_schema():
    schema = ssim.SSIMParams.model_json_schema()["properties"]
    assert schema["win_size"]["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert schema["win_size"]["default"] == 11 and schema["kernel_sigma"]["default"] == 1.5


def test_ssim_work_is_bounded():
    x = images(1, 1, 2, 600_000)
    got = errors("ssim", {"win_size": [1, 2000]}, input=x, target=x)
    msg = (
        "the window needs N x C x H x W x (sum of win_size) = 2401200000 multiply-adds per map; "
        f"the limit is {ssim.WORK_LIMIT}"
    )
    assert got == [param_error("win_size", msg)]


def test_ssim_elementwise_and_batching():
    j = job("ssim", {"win_size": 5}, "none", n=3)
    assert group_key(j) is not None
    (outcome,) = run_group([j], CPU)
    assert outcome.elementwise.shape == (3,) and set(outcome.grads) == {"input", "target"}


@pytest.mark.parametrize("params", [{}, {"kernel_type": "uniform", "win_size": 5}, {"win_size": [3, 5], "k2": 0.1}])
def test_ssim_agrees_with_monais_own_float32_path(params):
    """MONAI computes in float32 whatever the dtype (the reference table lifts that in float64):
    its own answer for float64 images agrees to float32 precision."""
    from monai.losses import SSIMLoss

    g = torch.Generator().manual_seed(4)
    x, y = (
        torch.rand(2, 2, 11, 12, generator=g, dtype=torch.float64),
        torch.rand(2, 2, 11, 12, generator=g, dtype=torch.float64),
    )
    want = SSIMLoss(spatial_dims=2, reduction="none", **params)(x, y).reshape(-1)
    assert want.dtype == torch.float32
    loss = REGISTRY.get("ssim")
    got = loss.forward({"input": x, "target": y}, loss.params.model_validate(params))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want.double(), rtol=1e-6, atol=1e-6)


def test_ssim_of_an_image_with_itself_is_zero():
    loss = REGISTRY.get("ssim")
    x = torch.rand(2, 3, 9, 9, 9, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got = loss.forward({"input": x, "target": x.clone()}, loss.params.model_validate({"win_size": 3}))
    torch.testing.assert_close(got, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ssim_in_half_precision_is_float32_rounded_once(dtype):
    loss = REGISTRY.get("ssim")
    params = loss.params.model_validate({"win_size": 5})
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(2, 1, 8, 8, generator=g).to(dtype), torch.rand(2, 1, 8, 8, generator=g).to(dtype)
    got = loss.forward({"input": x, "target": y}, params)
    assert got.dtype == dtype
    assert torch.equal(got, loss.forward({"input": x.float(), "target": y.float()}, params).to(dtype))


@pytest.mark.parametrize("win_size", [4, 5])
def test_ssim_window_of_a_tiny_sigma_is_its_central_taps(win_size):
    """Where exp(-d^2 / (2 sigma^2)) underflows for every tap (an even window, sigma ~ 1e-3),
    MONAI's window is 0 / 0 (NaN); the service's is its limit: the central tap(s), so that SSIM is
    that of the pixels (or pairs' means) at the window's centre."""
    loss = REGISTRY.get("ssim")
    g = torch.Generator().manual_seed(8)
    x, y = (
        torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64),
        torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64),
    )
    tiny = loss.forward(
        {"input": x, "target": y}, loss.params.model_validate({"win_size": win_size, "kernel_sigma": 1e-3})
    )
    central = {
        "kernel_type": "uniform",
        "win_size": 2 if win_size % 2 == 0 else 1,
    }
    shrink = (win_size - central["win_size"]) // 2
    inner = (slice(None), slice(None), slice(shrink, 6 - shrink), slice(shrink, 6 - shrink))
    want = loss.forward({"input": x[inner], "target": y[inner]}, loss.params.model_validate(central))
    assert tiny.isfinite().all()
    torch.testing.assert_close(tiny, want, rtol=1e-12, atol=1e-12)
