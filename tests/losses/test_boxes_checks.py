"""The box-regression losses: what a client can get wrong (exact texts, over HTTP), what is accepted
(boxes with x2 < x1, degenerate boxes), and the behaviours the reference table cannot express:
gradients 0 (not NaN) where a fractional power of the IoU meets boxes that are apart, siou where
the centres coincide (YOLOv6 gives NaN there), half precision computed in float32."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.engine.compute import group_key
from service.losses import boxes
from service.losses.prepare import prepare

from ..conftest import problem
from ..reference import cases_boxes
from ..reference.case import Case
from .validators import REGISTRY

BOX_LOSSES = ["iou", "giou", "diou", "ciou", "eiou", "focal_eiou", "siou", "alpha_iou", "wiou"]
BOXES = [[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]]
TARGET = [[0.5, 0.0, 2.0, 3.0], [0.0, 2.0, 2.0, 5.0]]


def npy(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    np.save(buf, arr)
    return {"npy": base64.b64encode(buf.getvalue()).decode()}


def evaluate(client, loss, inputs, params=None, reduction="mean", **fields):
    spec = {"name": loss, "params": params or {}, "reduction": reduction}
    return client.post("/v1/evaluate", json={"loss": spec, "inputs": inputs, **fields})


def refused(client, loss, inputs, params=None) -> list[tuple[list, str]]:
    body = problem(evaluate(client, loss, inputs, params), 422)
    return [(e["loc"], e["msg"]) for e in body["errors"]]


def test_the_catalog_has_every_box_loss():
    names = [loss.name for loss in boxes.LOSSES]
    assert names == BOX_LOSSES
    assert {c.loss for c in cases_boxes.CASES} == set(BOX_LOSSES)
    assert all(REGISTRY.get(n).name == n for n in BOX_LOSSES)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_each_entry_is_complete(client, name):
    info = client.get(f"/v1/losses/{name}").json()
    assert info["category"] == "boxes" and info["decomposable"] is True
    assert info["reductions"] == ["mean", "sum", "none"]
    assert info["elementwise_shape"] == "(N, *)"
    assert [(r["name"], r["shape"], r["kind"], r["differentiable"]) for r in info["roles"]] == [
        ("input", "(N, *, 4)", "float", True),
        ("target", "(N, *, 4)", "float", True),
    ]
    assert info["params"]["properties"]["eps"]["default"] == 1e-7
    assert info["params"]["properties"]["eps"]["minimum"] == 0
    assert info["reference"] and info["summary"]


@pytest.mark.parametrize(
    "alias,name",
    [
        ("generalized_box_iou_loss", "giou"), ("GIoULoss", "giou"), ("distance_box_iou_loss", "diou"),
        ("complete_box_iou_loss", "ciou"), ("CIoULoss", "ciou"), ("IoULoss", "iou"), ("EIoULoss", "eiou"),
        ("FocalEIoULoss", "focal_eiou"), ("SIoULoss", "siou"), ("AlphaIoULoss", "alpha_iou"),
        ("wise_iou", "wiou"), ("WIoULoss", "wiou"),
    ],
)  # fmt: skip
def test_aliases(client, alias, name):
    assert client.get(f"/v1/losses/{alias}").json()["name"] == name


@pytest.mark.parametrize("name", ["iou", "siou", "wiou"])
def test_defaults(client, name):
    assert evaluate(client, name, {"input": BOXES, "target": TARGET}).status_code == 200


def test_param_defaults_and_bounds(client):
    info = {n: client.get(f"/v1/losses/{n}").json()["params"]["properties"] for n in ("focal_eiou", "alpha_iou")}
    assert info["focal_eiou"]["gamma"]["default"] == 0.5 and info["focal_eiou"]["gamma"]["minimum"] == 0
    assert info["alpha_iou"]["alpha"]["default"] == 3.0 and info["alpha_iou"]["alpha"]["exclusiveMinimum"] == 0


# -- what a client can get wrong ------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs,loc,msg",
    [
        ({"input": [[0, 0, 2]], "target": [[0, 0, 2]]}, ["inputs", "input"],
         "expected shape (N, *, 4) (at least 2 dimensions); got (1, 3)"),
        ({"input": [0, 0, 2, 2], "target": [0, 0, 2, 2]}, ["inputs", "input"],
         "expected shape (N, *, 4) (at least 2 dimensions); got (4,)"),
        ({"input": BOXES, "target": [[0, 0, 2, 2]]}, ["inputs", "target"],
         "expected shape (N, *, 4) = (2, 4) from input (N, *, 4) = (2, 4); got (1, 4)"),
        ({"input": [BOXES], "target": [[[0, 0, 2, 2]]]}, ["inputs", "target"],
         "expected shape (N, *, 4) = (1, 2, 4) from input (N, *, 4) = (1, 2, 4); got (1, 1, 4)"),
        ({"input": BOXES, "target": [[0, 0, 2, 2, 1], [0, 0, 1, 1, 1]]}, ["inputs", "target"],
         "expected shape (N, *, 4) = (2, 4) from input (N, *, 4) = (2, 4); got (2, 5)"),
        ({"input": BOXES}, ["inputs", "target"], "missing required role 'target' with shape (N, *, 4)"),
        ({"input": npy(np.array([[0, 0, 2, 2], [1, 1, np.inf, 4]], np.float32)), "target": BOXES},
         ["inputs", "input"], "non-finite value inf at position (1, 2)"),
        ({"input": BOXES, "target": npy(np.array([[0, 0, 2, 2], [1, np.nan, 3, 4]]))},
         ["inputs", "target"], "non-finite value nan at position (1, 1)"),
        ({"input": BOXES, "target": npy(np.array([[0, 0, 2, 2], [1, 1, 3, -np.inf]], np.float16))},
         ["inputs", "target"], "non-finite value -inf at position (1, 3)"),
        ({"input": {"data": [0, 0, 2, 2, 1, 1, 3, 4], "shape": [2, 4], "dtype": "int64"}, "target": BOXES},
         ["inputs", "input"], "expected a float tensor (float16, bfloat16, float32, float64); got int64"),
        ({"input": {"data": [0, 0, 2, 2, 1, 1, 3, 1e6], "shape": [2, 4], "dtype": "float16"}, "target": BOXES},
         ["inputs", "input", "data"], "value 1000000.0 out of range for float16 at position (1, 3)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("loss", ["giou", "siou"])
def test_boxes_refused(client, loss, inputs, loc, msg):
    assert refused(client, loss, inputs) == [(loc, msg)]


@pytest.mark.parametrize(
    "loss,params,loc,msg",
    [
        ("iou", {"eps": -1e-7}, ["loss", "params", "eps"], "input should be greater than or equal to 0; got -1e-07"),
        ("focal_eiou", {"gamma": -0.5}, ["loss", "params", "gamma"],
         "input should be greater than or equal to 0; got -0.5"),
        ("alpha_iou", {"alpha": 0}, ["loss", "params", "alpha"], "input should be greater than 0; got 0"),
        ("alpha_iou", {"alpha": -3}, ["loss", "params", "alpha"], "input should be greater than 0; got -3"),
        ("giou", {"gamma": 1}, ["loss", "params", "gamma"], "unknown parameter 'gamma' for giou; expected eps"),
        ("eiou", {"alpha": 1}, ["loss", "params", "alpha"], "unknown parameter 'alpha' for eiou; expected eps"),
        ("alpha_iou", {"gamma": 1}, ["loss", "params", "gamma"],
         "unknown parameter 'gamma' for alpha_iou; expected eps, alpha"),
    ],
)  # fmt: skip
def test_params_refused(client, loss, params, loc, msg):
    assert refused(client, loss, {"input": BOXES, "target": TARGET}, params) == [(loc, msg)]


@pytest.mark.parametrize(
    "loss,params",
    [("iou", {"eps": math.nan}), ("ciou", {"eps": math.inf}), ("focal_eiou", {"gamma": math.inf}),
     ("alpha_iou", {"alpha": math.nan}), ("siou", {"eps": -math.inf})],
)  # fmt: skip
def test_params_must_be_finite(loss, params):
    """(JSON has no NaN or infinity: only a client in-process could send them.)"""
    with pytest.raises(ValidationError):
        REGISTRY.get(loss).params.model_validate(params)


# -- what is accepted -----------------------------------------------------------------------------


def _pair(x, y):
    return {"input": torch.tensor(x, dtype=torch.float64), "target": torch.tensor(y, dtype=torch.float64)}


INVERTED = [[2.0, 0.0, 0.0, 2.0], [1.0, 4.0, 3.0, 1.0], [3.0, 3.0, 1.0, 1.0]]  # x2 < x1, y2 < y1, both
INVERTED_TARGET = [[0.5, 0.0, 2.0, 3.0], [0.0, 2.0, 2.0, 5.0], [0.0, 0.0, 2.0, 2.0]]


@pytest.mark.parametrize("loss", ["iou", "giou", "diou", "ciou"])
def test_boxes_with_x2_below_x1_are_computed_as_torchvision_does(client, loss):
    r = evaluate(client, loss, {"input": INVERTED, "target": INVERTED_TARGET}, reduction="none", return_grad=["input"])
    assert r.status_code == 200, r.text
    got = r.json()
    t = _pair(INVERTED, INVERTED_TARGET)
    t["input"].requires_grad_(True)
    want = cases_boxes.REFERENCES[loss](t, {}, "none")
    (grad,) = torch.autograd.grad(want.sum(), t["input"])
    np.testing.assert_allclose(got["elementwise"]["data"], want.detach().numpy(), rtol=1e-6, atol=1e-6)  # float32
    np.testing.assert_allclose(got["grad"]["input"]["data"], grad.reshape(-1).numpy(), rtol=1e-5, atol=1e-7)
    assert torch.isfinite(want).all()


@pytest.mark.parametrize("loss", BOX_LOSSES)
def test_identical_boxes(loss):
    """A perfect prediction: each loss's minimum (0; siou's shape cost is 0 too), gradients finite."""
    t = _pair(BOXES, BOXES)
    t["input"].requires_grad_(True)
    module = REGISTRY.get(loss)
    el = module.forward(t, module.params.model_validate({}))
    el.sum().backward()
    assert el.abs().max() < 1e-6, el
    assert torch.isfinite(t["input"].grad).all()


def test_degenerate_boxes_follow_torchvision():
    """Zero-height boxes: torchvision's ciou takes atan(w / 0) = pi / 2 (and NaN for 0 / 0, and a NaN
    gradient where its atan(w / h) jumps by pi); the service gives the same, not a refusal."""
    x, y = [[0.0, 1.0, 2.0, 1.0], [0.0, 1.0, 0.0, 1.0]], [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]]
    module = REGISTRY.get("ciou")
    got = module.forward(_pair(x, y), module.params.model_validate({}))
    want = cases_boxes.ciou_reference(_pair(x, y), {}, "none")
    torch.testing.assert_close(got, want, equal_nan=True)
    assert got[0].isfinite() and got[1].isnan()


# -- gradients where the IoU is 0 -----------------------------------------------------------------

APART = [[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 7.0], [0.0, 0.0, 2.0, 2.0]]  # the last one overlaps
APART_TARGET = [[2.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0]]


@pytest.mark.parametrize(
    "loss,params",
    [("focal_eiou", {}), ("focal_eiou", {"gamma": 0.25}), ("alpha_iou", {"alpha": 0.5}), ("alpha_iou", {})],
)
def test_fractional_powers_of_an_iou_of_0_have_gradient_0(loss, params):
    """IoU^gamma is 0 all around boxes that are apart, so is its gradient: the written-out formula's
    autograd gives 0 * inf = NaN there; the service gives 0, and the formula's value and gradient
    wherever the boxes overlap."""
    t = _pair(APART, APART_TARGET)
    t["input"].requires_grad_(True)
    module = REGISTRY.get(loss)
    el = module.forward(t, module.params.model_validate(params))
    (grad,) = torch.autograd.grad(el.sum(), t["input"])
    assert torch.isfinite(grad).all()
    ref_t = _pair(APART, APART_TARGET)
    ref_t["input"].requires_grad_(True)
    want = cases_boxes.REFERENCES[loss](ref_t, params, "none")
    (want_grad,) = torch.autograd.grad(want.sum(), ref_t["input"])
    torch.testing.assert_close(el, want.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad[2], want_grad[2], rtol=1e-12, atol=1e-12)  # overlapping: the formula's
    if loss == "focal_eiou":  # the weight IoU^gamma is 0: so are the value and its gradient
        assert el[:2].tolist() == [0.0, 0.0] and grad[:2].abs().max() == 0
    if params.get("alpha", 3.0) < 1 or loss == "focal_eiou":
        assert want_grad[:2].isnan().any()  # what the plain formula's autograd gives


def test_focal_eiou_gamma_0_is_eiou():
    t = _pair(APART, APART_TARGET)
    focal, eiou = REGISTRY.get("focal_eiou"), REGISTRY.get("eiou")
    got = focal.forward(t, focal.params.model_validate({"gamma": 0.0}))
    torch.testing.assert_close(got, eiou.forward(t, eiou.params.model_validate({})), rtol=0, atol=0)


def test_alpha_iou_1_is_iou():
    t = _pair(APART, APART_TARGET)
    alpha, iou = REGISTRY.get("alpha_iou"), REGISTRY.get("iou")
    got = alpha.forward(t, alpha.params.model_validate({"alpha": 1.0}))
    torch.testing.assert_close(got, iou.forward(t, iou.params.model_validate({})), rtol=0, atol=0)


# -- siou where the centres coincide --------------------------------------------------------------


def test_siou_where_the_centres_coincide_is_its_limit():
    """YOLOv6 divides the centres' offset by its length (NaN at 0: a perfect prediction gives NaN).
    The distance cost tends to 0 there whatever the angle, and so does its gradient: the service
    gives that limit, and YOLOv6's own value as the offset shrinks."""
    pred = [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]]  # same centres as the targets, other shapes
    target = [[-0.5, 0.5, 2.5, 1.5], [1.0, -1.0, 3.0, 3.0]]
    module = REGISTRY.get("siou")
    params = module.params.model_validate({})
    t = _pair(pred, target)
    t["input"].requires_grad_(True)
    got = module.forward(t, params)
    (grad,) = torch.autograd.grad(got.sum(), t["input"])
    assert torch.isfinite(grad).all()
    assert cases_boxes.yolov6_siou_reference(_pair(pred, target), {}, "none").isnan().all()
    for offset in (1e-3, 1e-5):
        for direction in ((1, 0), (0, 1), (1, 1), (-1, 2)):
            dx, dy = (offset * d / math.hypot(*direction) for d in direction)
            moved = [[x1 + dx, y1 + dy, x2 + dx, y2 + dy] for x1, y1, x2, y2 in pred]
            near = _pair(moved, target)
            near["input"].requires_grad_(True)
            want = cases_boxes.yolov6_siou_reference(near, {}, "none")
            (want_grad,) = torch.autograd.grad(want.sum(), near["input"])
            torch.testing.assert_close(got, want.detach(), rtol=0, atol=10 * offset)
            torch.testing.assert_close(grad, want_grad, rtol=0, atol=100 * offset)


# -- precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("loss", BOX_LOSSES)
def test_half_precision_is_computed_in_float32(client, loss, dtype):
    """Boxes of a few hundred: their areas (and the enclosing diagonal squared) pass float16's
    65504; like torchvision, the service computes them in float32 and rounds the values."""
    x = [[100.0, 100.0, 400.0, 380.0], [0.0, 0.0, 300.0, 500.0]]
    y = [[120.0, 90.0, 410.0, 400.0], [200.0, 100.0, 600.0, 700.0]]
    r = evaluate(
        client,
        loss,
        {"input": {"data": [v for box in x for v in box], "shape": [2, 4], "dtype": dtype}, "target": y},
        reduction="none",
        return_grad=["input"],
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["elementwise"]["dtype"] == dtype and got["meta"]["dtype"] == dtype
    half = getattr(torch, dtype)
    sent = {"input": torch.tensor(x).to(half).float(), "target": torch.tensor(y).to(half).float()}
    want = cases_boxes.REFERENCES[loss](sent, {}, "none")
    assert torch.equal(torch.tensor(got["elementwise"]["data"]).to(half), want.to(half))
    assert all(math.isfinite(v) for v in got["grad"]["input"]["data"])


# -- batching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", BOX_LOSSES)
def test_box_losses_batch(loss):
    """Elementwise losses: requests of one loss, params and dtype share a compute call."""
    from service.codecs.tensors import Decoded

    arrays = {k: Decoded(np.asarray(v, np.float32), "float32") for k, v in (("input", BOXES), ("target", TARGET))}
    job = prepare(REGISTRY, loss, {}, "mean", arrays, True, False)
    assert group_key(job) is not None


def test_cases_cover_every_param():
    covered: dict[str, set[str]] = {}
    for case in cases_boxes.CASES:
        assert isinstance(case, Case)
        covered.setdefault(case.loss, set()).update(case.params)
    for name in BOX_LOSSES:
        assert covered[name] == set(REGISTRY.get(name).params.model_fields), name
