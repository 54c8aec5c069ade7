"""The overlap losses (tversky, focal_tversky, generalized_dice, jaccard, mcc): their checks with
exact messages through the app, their params, batch=true (never batched), and behaviours the
reference table cannot express: no NaN gradient where nothing is missed, half precision without
overflow or underflow, jaccard is dice with jaccard=true."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.codecs.tensors import Decoded
from service.engine.compute import group_key, run_group
from service.errors import InvalidInput
from service.losses import overlap
from service.losses.prepare import prepare

from ..conftest import problem
from .validators import REGISTRY

OVERLAP = ("tversky", "focal_tversky", "generalized_dice", "jaccard", "mcc")
CPU = torch.device("cpu")


def tensor(arr, dtype="float32"):
    arr = np.asarray(arr)
    return {"shape": list(arr.shape), "dtype": dtype, "data": arr.reshape(-1).tolist()}


def post(client, name, inputs, params=None, **extra):
    body = {"loss": {"name": name, "params": params or {}}, "inputs": inputs, **extra}
    return client.post("/v1/evaluate", json=body)


def errors(response):
    return [(e["loc"], e["msg"]) for e in problem(response, 422)["errors"]]


def probabilities(*shape, value=0.5):
    return tensor(np.full(shape, value))


INDICES = [[0, 1], [2, 0]]  # (N, *) = (2, 2) for an input (2, 3, 2)


# -- what every overlap loss checks -----------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAP)
def test_accepts_every_target_form(client, name):
    x = probabilities(2, 3, 2)
    for target in (INDICES, [[[0, 1]], [[2, 0]]], tensor(np.eye(3)[[[0, 1], [2, 0]]].transpose(0, 2, 1))):
        r = post(client, name, {"input": x, "target": target}, return_grad=["input"])
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", OVERLAP)
def test_needs_a_spatial_dimension(client, name):
    r = post(client, name, {"input": probabilities(2, 3), "target": [0, 1]})
    assert errors(r) == [(["inputs", "input"], "expected at least one spatial dimension after (N, C); got (2, 3)")]


@pytest.mark.parametrize("name", OVERLAP)
def test_sigmoid_and_softmax(client, name):
    r = post(client, name, {"input": probabilities(2, 3, 2), "target": INDICES}, {"sigmoid": True, "softmax": True})
    assert errors(r) == [(["loss", "params", "softmax"], "softmax and sigmoid cannot both be true")]


@pytest.mark.parametrize("name", OVERLAP)
def test_single_class_options(client, name):
    x = probabilities(2, 1, 2)
    r = post(client, name, {"input": x, "target": x}, {"softmax": True, "include_background": False})
    assert errors(r) == [
        (["loss", "params", "softmax"], "softmax needs C > 1 classes; got C = 1"),
        (
            ["loss", "params", "include_background"],
            "include_background=false drops class 0 and needs C > 1 classes; got C = 1",
        ),
    ]


@pytest.mark.parametrize("name", OVERLAP)
def test_index_target_with_one_class(client, name):
    r = post(client, name, {"input": probabilities(2, 1, 3), "target": [[0, 1, 0], [1, 1, 0]]}, {"sigmoid": True})
    msg = "class-index targets need C > 1 classes; with C = 1 send a float mask of the input's shape"
    assert errors(r) == [(["inputs", "target"], msg)]


@pytest.mark.parametrize("name", OVERLAP)
def test_class_index_range(client, name):
    r = post(client, name, {"input": probabilities(2, 3, 2), "target": [[0, 1], [3, 0]]})
    assert errors(r) == [(["inputs", "target"], "class index 3 out of range [0, 3) at position (1, 0)")]
    r = post(client, name, {"input": probabilities(2, 3, 2), "target": [[[0, -1]], [[2, 0]]]})
    assert errors(r) == [(["inputs", "target"], "class index -1 out of range [0, 3) at position (0, 0, 1)")]


@pytest.mark.parametrize("name", OVERLAP)
def test_float_target_range(client, name):
    y = np.full((2, 2, 2), 0.5)
    y[1, 0, 1] = 1.25
    r = post(client, name, {"input": probabilities(2, 2, 2), "target": tensor(y)})
    assert errors(r) == [(["inputs", "target"], "value 1.25 out of range [0, 1] at position (1, 0, 1)")]


# -- what some check ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["focal_tversky", "mcc"])
def test_input_must_be_probabilities_without_sigmoid_or_softmax(client, name):
    x = np.full((2, 3, 2), 0.25)
    x[1, 2, 0] = 1.5
    r = post(client, name, {"input": tensor(x), "target": INDICES})
    msg = "expected probabilities in [0, 1] (no sigmoid or softmax is applied); got 1.5 at position (1, 2, 0)"
    assert errors(r) == [(["inputs", "input"], msg)]
    x[1, 2, 0] = -0.5
    for params in ({"sigmoid": True}, {"softmax": True}):  # logits: any value
        assert post(client, name, {"input": tensor(x), "target": INDICES}, params).status_code == 200


@pytest.mark.parametrize("name", ["tversky", "generalized_dice", "jaccard"])
def test_input_outside_0_1_is_taken_as_monai_takes_it(client, name):
    """Their formulas have a value for any input (as dice's): MONAI does not check, nor does the service."""
    r = post(client, name, {"input": tensor(np.full((2, 3, 2), -0.5)), "target": INDICES})
    assert r.status_code == 200, r.text


def test_jaccard_weight_length(client):
    x = probabilities(2, 3, 2)
    r = post(client, "jaccard", {"input": x, "target": INDICES}, {"weight": [1.0, 2.0]})
    assert errors(r) == [(["loss", "params", "weight"], "expected C = 3 values; got 2")]
    r = post(
        client, "jaccard", {"input": x, "target": INDICES}, {"weight": [1.0, 2.0, 3.0], "include_background": False}
    )
    assert errors(r) == [(["loss", "params", "weight"], "expected C - 1 = 2 values; got 3")]


def test_generalized_dice_target_has_no_gradient(client):
    x = probabilities(2, 3, 2)
    r = post(client, "generalized_dice", {"input": x, "target": x}, return_grad=["target"])
    assert errors(r) == [(["return_grad", 0], "role 'target' of generalized_dice is not differentiable")]


@pytest.mark.parametrize(
    ("name", "params", "loc", "msg"),
    [
        ("tversky", {"alpha": -1}, "alpha", "input should be greater than or equal to 0; got -1"),
        ("focal_tversky", {"gamma": 0}, "gamma", "input should be greater than 0; got 0"),
        (
            "generalized_dice",
            {"w_type": "cube"},
            "w_type",
            "input should be 'square', 'simple' or 'uniform'; got 'cube'",
        ),
        (
            "jaccard",
            {"jaccard": False},
            "jaccard",
            "unknown parameter 'jaccard' for jaccard; expected include_background, sigmoid, softmax, squared_pred, "
            "smooth_nr, smooth_dr, batch, weight",
        ),
    ],
)
def test_params_refused_with_their_text(client, name, params, loc, msg):
    r = post(client, name, {"input": probabilities(2, 3, 2), "target": INDICES}, params)
    assert errors(r) == [(["loss", "params", loc], msg)]


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (overlap.TverskyParams, {"beta": -0.5}),
        (overlap.TverskyParams, {"alpha": float("inf")}),
        (overlap.TverskyParams, {"smooth_dr": -1e-5}),
        (overlap.FocalTverskyParams, {"gamma": -1.0}),
        (overlap.FocalTverskyParams, {"gamma": float("nan")}),
        (overlap.GeneralizedDiceParams, {"w_type": "Square"}),
        (overlap.GeneralizedDiceParams, {"weight": [1.0]}),
        (overlap.JaccardParams, {"weight": [1.0, -0.5]}),
        (overlap.MCCParams, {"smooth_nr": -1.0}),
        (overlap.MCCParams, {"to_onehot_y": True}),
    ],
)
def test_params_refused(model, params):
    with pytest.raises(ValidationError):
        model.model_validate(params)


def test_defaults_are_the_references():
    assert overlap.TverskyParams().model_dump() == {
        "include_background": True, "sigmoid": False, "softmax": False, "alpha": 0.5, "beta": 0.5,
        "smooth_nr": 1e-5, "smooth_dr": 1e-5, "batch": False,
    }  # fmt: skip
    assert overlap.FocalTverskyParams().gamma == 0.75
    assert overlap.GeneralizedDiceParams().w_type == "square"
    assert (overlap.MCCParams().smooth_nr, overlap.MCCParams().smooth_dr) == (0.0, 1e-5)


# -- batch=true: one value spans the request ------------------------------------------------------


def job(name, params, x, y, reduction="mean", grads=True):
    inputs = {"input": Decoded(x, str(x.dtype)), "target": Decoded(y, str(y.dtype))}
    return prepare(REGISTRY, name, params, reduction, inputs, grads, not params.get("batch", False))


@pytest.mark.parametrize("name", OVERLAP)
def test_batch_true_reduces_the_whole_request_and_is_never_batched(name):
    """batch=true pools the sums over the batch: one value per class (one in all for
    generalized_dice), so no elementwise values nor reduction none (a 422 that says why)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 4, 5)), rng.integers(0, 4, (3, 5))
    assert group_key(job(name, {}, x, y)) is not None
    jobs = [job(name, {"batch": True}, x, y, reduction) for reduction in ("mean", "sum")]
    assert [group_key(j) for j in jobs] == [None, None]
    mean, total = (run_group([j], CPU)[0].value for j in jobs)
    classes = 1 if name == "generalized_dice" else 4  # the mean over the pooled classes
    assert total == pytest.approx(mean * classes, rel=1e-12)
    why = "with batch=true its value reduces the whole request"
    with pytest.raises(InvalidInput) as info:
        job(name, {"batch": True}, x, y, "none")
    assert (
        info.value.detail
        == f"loss.reduction: {name} does not accept reduction 'none': {why}; expected one of mean, sum"
    )


# -- behaviours -----------------------------------------------------------------------------------


def _forward(name, params, x, y):
    loss = REGISTRY.get(name)
    return loss.forward({"input": x, "target": y}, loss.params.model_validate(params))


@pytest.mark.parametrize("gamma", [0.25, 0.75])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_tversky_gradient_is_finite_where_nothing_is_missed(gamma, dtype):
    """Where 1 - TI is 0 (a saturated sigmoid, or probabilities equal to the target), the power's
    derivative is infinite: autograd would give NaN; the service gives 0 there, and the value 0."""
    y = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]], dtype=dtype)
    for params, logits in (({"sigmoid": True}, (y * 2 - 1) * 1000), ({}, y.clone())):
        x = logits.requires_grad_(True)
        el = _forward("focal_tversky", {**params, "gamma": gamma}, x, y)
        el.sum().backward()
        assert torch.equal(el, torch.zeros_like(el)) and x.grad.isfinite().all()
        (g,) = torch.autograd.grad((_forward("tversky", params, x, y) ** gamma).sum(), x)
        assert not g.isfinite().all()  # what the formula written out gives


def test_mcc_gradient_is_finite_on_a_perfect_prediction_without_smoothing():
    """A class absent from both (TP = FP = FN = 0) with smooth_dr = 0: MONAI's value is 0 there
    and its gradient NaN (0 / 0 under the masked branch); the service's gradient is 0."""
    from monai.losses import MCCLoss

    y = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    x = y.clone().requires_grad_(True)
    el = _forward("mcc", {"smooth_dr": 0.0}, x, y)
    el.sum().backward()
    assert torch.equal(el, torch.zeros_like(el)) and x.grad.isfinite().all()
    leaf = y.clone().requires_grad_(True)
    want = MCCLoss(reduction="none", smooth_dr=0.0)(leaf, y)
    want.sum().backward()
    assert torch.equal(want, el) and leaf.grad.isnan().any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("name", "params"), [("mcc", {"softmax": True}), ("generalized_dice", {"softmax": True}), ("tversky", {})]
)
def test_half_precision_neither_overflows_nor_underflows(name, params, dtype):
    """On a 64 x 64 image, MCC's product of four sums (~10^15) overflows float16, generalized_dice's
    weights 1 / V^2 (~10^-7) underflow it, and tversky's denominator passes 65504 on a 400 x 400
    image: computed in float32, the values are MONAI's in float32, rounded to the dtype."""
    from monai.losses import GeneralizedDiceLoss, MCCLoss, TverskyLoss

    monai = {"mcc": MCCLoss, "generalized_dice": GeneralizedDiceLoss, "tversky": TverskyLoss}[name]
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 64, 64) if name != "tversky" else (1, 2, 400, 400)
    x = (torch.randn(*shape, generator=g) if params else torch.rand(*shape, generator=g)).to(dtype)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    got = _forward(name, params, x, y)
    assert got.dtype == dtype
    onehot = torch.nn.functional.one_hot(y, shape[1]).movedim(-1, 1).float()
    want = monai(reduction="none", **params)(x.float(), onehot).reshape(got.shape)
    torch.testing.assert_close(got, want.to(dtype), rtol=0, atol=torch.finfo(dtype).eps)


@pytest.mark.parametrize("params", [{"softmax": True}, {"sigmoid": True, "batch": True, "weight": [1.0, 2.0, 0.5]}])
def test_jaccard_is_dice_with_jaccard_true(params):
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 3, 4, 5, generator=g), torch.randint(0, 3, (2, 4, 5), generator=g)
    assert torch.equal(_forward("jaccard", params, x, y), _forward("dice", {**params, "jaccard": True}, x, y))
