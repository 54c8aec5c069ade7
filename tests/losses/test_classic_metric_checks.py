"""The classic classification losses (poly1, binary_focal, hinge, squared_hinge, exponential,
zero_one) and the metric-learning ones (arcface, cosface, contrastive): every check's exact text
through the app, what the reference table cannot express (binary_focal's clipping at 0 and 1,
poly1's class weights, arcface at parallel vectors, contrastive at small temperatures), and that
the losses which cannot share a compute call never do."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import ContrastiveLoss

from service.codecs.tensors import Decoded
from service.engine.compute import group_key, run_group
from service.losses import default_registry
from service.losses.prepare import prepare

from ..conftest import problem

REGISTRY = default_registry()
CPU = torch.device("cpu")


def evaluate(client, loss, inputs, params=None, reduction="mean", **extra):
    body = {"loss": {"name": loss, "params": params or {}, "reduction": reduction}, "inputs": inputs, **extra}
    return client.post("/v1/evaluate", json=body)


def refused(response, *errors: tuple[tuple, str]) -> str:
    """The 422's detail, after checking its errors are exactly ``errors`` ((loc, msg) pairs)."""
    body = problem(response, 422)
    assert [(tuple(e["loc"]), e["msg"]) for e in body["errors"]] == list(errors)
    return body["detail"]


TARGET = ("inputs", "target")

# -- labels 1 or -1 -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hinge", "squared_hinge", "exponential", "logistic"])
def test_the_hinge_family_takes_labels_1_or_minus_1(client, name):
    good = evaluate(client, name, {"input": [[0.5, 1.0, -2.0]], "target": [[1, -1, 1]]})
    assert good.status_code == 200, good.text
    bad = evaluate(client, name, {"input": [[0.5, 1.0, -2.0], [1, 2, 3]], "target": [[1, -1, 1], [-1, 0.5, 0]]})
    detail = refused(bad, (TARGET, "expected 1 or -1; got 0.5 at position (1, 1)"))
    assert detail == "inputs.target: expected 1 or -1; got 0.5 at position (1, 1)"


@pytest.mark.parametrize("name", ["hinge", "squared_hinge", "exponential"])
def test_the_hinge_family_labels_have_no_gradient(client, name):
    r = evaluate(client, name, {"input": [0.5], "target": [1]}, return_grad=["target"])
    refused(r, (("return_grad", 0), f"role 'target' of {name} is not differentiable"))


def test_logistic_is_soft_margin(client):
    for alias in ("logistic", "LogisticLoss", "logistic_loss"):
        assert client.get(f"/v1/losses/{alias}").json()["name"] == "soft_margin"


def test_the_hinge_family_at_the_kink_and_beyond():
    """max(0, 1 - y f) is 0 from the margin on, with gradient 0 there (relu's, at the kink too)."""
    f = torch.tensor([1.0, 2.0, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    el = REGISTRY.get("hinge").forward({"input": f, "target": y}, None)
    assert el.tolist() == [0.0, 0.0, 0.5, 0.0]
    (grad,) = torch.autograd.grad(el.sum(), f)
    assert grad.tolist() == [0.0, 0.0, -1.0, 0.0]
    squared = REGISTRY.get("squared_hinge").forward({"input": f, "target": y}, None)
    assert squared.tolist() == [0.0, 0.0, 0.25, 0.0]


# -- binary_focal ---------------------------------------------------------------------------------


def test_binary_focal_takes_probabilities(client):
    r = evaluate(client, "binary_focal", {"input": [[0.5, 1.5], [0.2, 0.3]], "target": [[1, -0.5], [0, 1]]})
    assert (
        refused(
            r,
            (("inputs", "input"), "value 1.5 out of range [0, 1] at position (0, 1)"),
            (TARGET, "value -0.5 out of range [0, 1] at position (0, 1)"),
        )
        == "inputs.input: value 1.5 out of range [0, 1] at position (0, 1) (and 1 more)"
    )


def test_binary_focal_params(client):
    r = evaluate(client, "binary_focal", {"input": [0.5], "target": [1]}, {"alpha": 2, "gamma": -1, "eps": 0.5})
    refused(
        r,
        (("loss", "params", "alpha"), "input should be less than or equal to 1; got 2"),
        (("loss", "params", "gamma"), "input should be greater than or equal to 0; got -1"),
        (("loss", "params", "eps"), "input should be less than 0.5; got 0.5"),
    )


def _binary_focal_formula(p, y, alpha=0.25, gamma=2.0, eps=1e-8):
    p = torch.clamp(p, eps, 1 - eps)
    return -alpha * y * (1 - p) ** gamma * torch.log(p) - (1 - alpha) * (1 - y) * p**gamma * torch.log(1 - p)


def _binary_focal(p, y, **params):
    loss = REGISTRY.get("binary_focal")
    return loss.forward({"input": p, "target": y}, loss.params.model_validate(params))


EXTREMES = [0.0, 1e-12, 1e-8, 0.3, 1 - 1e-12, 1.0]


def test_binary_focal_clips_at_0_and_1_as_the_formula_does():
    """float64: the formula's values at and beyond the clipping bounds, and its gradient (0 where
    clipped). Above 1 - eps, 1 - p is eps, which the formula written in float64 rounds to
    1 - (1 - 1e-8) = 1.000000005e-8: 5e-9 relative there (exact elsewhere)."""
    p = torch.tensor(EXTREMES * 2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0] * 6 + [1.0] * 6, dtype=torch.float64)
    got = _binary_focal(p, y)
    want = _binary_focal_formula(p, y)
    above = p.detach() > 1 - 1e-8
    torch.testing.assert_close(got[~above], want[~above], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[above], want[above], rtol=2e-8, atol=0)
    (g_got,) = torch.autograd.grad(got.sum(), p)
    (g_want,) = torch.autograd.grad(want.sum(), p)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_binary_focal_is_finite_where_the_dtype_cannot_hold_1_minus_eps(dtype):
    """In float32, 1 - 1e-8 rounds to 1 (so clipped p = 1 and log(1 - p) = -inf in the formula
    written in the dtype); in float16 1e-8 rounds to 0. The service clips 1 - p itself (exact near
    p = 1) within bounds the dtype holds: every value and gradient finite; float32 agrees with the
    formula in float64 (float16 clips at its smallest normal number, 6.1e-5)."""
    p = torch.tensor(EXTREMES * 2, dtype=dtype, requires_grad=True)
    y = torch.tensor([0.0] * 6 + [1.0] * 6, dtype=dtype)
    got = _binary_focal(p, y)
    (grad,) = torch.autograd.grad(got.sum(), p)
    assert torch.isfinite(got).all() and torch.isfinite(grad).all()
    if dtype == torch.float32:
        want = _binary_focal_formula(p.detach().double(), y.double())
        torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=1e-6)


# -- poly1 ----------------------------------------------------------------------------------------


def test_poly1_checks(client):
    r = evaluate(client, "poly1", {"input": [[0.5, 1.5, 0.1], [0, 0, 0]], "target": [1, 3]}, {"weight": [1, 2]})
    refused(
        r,
        (TARGET, "class index 3 out of range [0, 3) at position (1,)"),
        (("loss", "params", "weight"), "expected C = 3 values; got 2"),
    )
    r = evaluate(client, "poly1", {"input": [[0.5, 1.5, 0.1]], "target": [1]}, {"epsilon": -2})
    refused(r, (("loss", "params", "epsilon"), "input should be greater than or equal to -1; got -2"))
    r = evaluate(client, "poly1", {"input": [[0.5, 1.5, 0.1]], "target": [1]}, return_grad=["target"])
    refused(r, (("return_grad", 0), "role 'target' of poly1 is not differentiable"))
    ok = evaluate(client, "poly1", {"input": [[0.5, 1.5, 0.1], [0, 0, 0]], "target": [1, 7]}, {"ignore_index": 7})
    assert ok.status_code == 200, ok.text


def test_poly1_weights_the_cross_entropy_term_and_divides_by_cross_entropys_weights():
    """The choice the summary states: w[t] CE + epsilon (1 - p_t) per element; the mean is
    cross_entropy's weighted mean plus epsilon sum(1 - p_t) / sum(w[t]) over the kept elements."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (7,), generator=g)
    t[2] = -100
    weight = [0.5, 2.0, 1.0, 3.0]
    loss = REGISTRY.get("poly1")
    params = loss.params.model_validate({"weight": weight, "epsilon": 2.0})
    el = loss.forward({"input": x, "target": t}, params)
    w = torch.tensor(weight, dtype=x.dtype)
    kept = t != -100
    p_t = torch.softmax(x, 1)[torch.arange(7), t.clamp_min(0)]
    ce_mean = F.cross_entropy(x, t, weight=w)
    want = ce_mean + 2.0 * ((1 - p_t) * kept).sum() / w[t.clamp_min(0)][kept].sum()
    torch.testing.assert_close(loss.reduce(el, {"input": x, "target": t}, params, "mean"), want, rtol=1e-12, atol=0)
    assert el[2] == 0


def test_poly1_with_epsilon_0_is_cross_entropy():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (4, 3), generator=g)
    t[1, 1] = -100
    loss = REGISTRY.get("poly1")
    w = [1.0, 0.5, 2.0, 1.5, 0.25]
    params = loss.params.model_validate({"epsilon": 0.0, "weight": w})
    el = loss.forward({"input": x, "target": t}, params)
    for reduction in ("mean", "sum"):
        want = F.cross_entropy(x, t, weight=torch.tensor(w, dtype=x.dtype), reduction=reduction)
        got = loss.reduce(el, {"input": x, "target": t}, params, reduction)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


# -- zero_one -------------------------------------------------------------------------------------


def test_zero_one_checks_and_has_no_gradient(client):
    r = evaluate(client, "zero_one", {"input": [[0.5, 1.5, 0.1]], "target": [3]})
    refused(r, (TARGET, "class index 3 out of range [0, 3) at position (0,)"))
    r = evaluate(client, "zero_one", {"input": [[0.5, 1.5, 0.1]], "target": [1]}, return_grad=["input"])
    refused(r, (("return_grad", 0), "role 'input' of zero_one is not differentiable"))
    ok = evaluate(client, "zero_one", {"input": [[0.5, 1.5, 0.1], [2, 2, 1]], "target": [1, 1]}, return_grad=True)
    assert ok.status_code == 200, ok.text
    assert ok.json()["value"] == 0.5  # the tie (2, 2, 1) goes to class 0: one error in two
    assert ok.json()["grad"] is None


# -- arcface, cosface -----------------------------------------------------------------------------

MARGIN_INPUTS = {"input": [[0.5, 1.5, 0.1], [1.0, 0.0, 0.0]], "weight": [[1, 0, 0], [0, 1, 0]], "target": [1, 0]}


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_margin_softmax_checks(client, name):
    r = evaluate(client, name, {**MARGIN_INPUTS, "target": [1, 2]})
    refused(r, (TARGET, "class index 2 out of range [0, 2) at position (1,)"))
    r = evaluate(client, name, {**MARGIN_INPUTS, "weight": [[1, 0], [0, 1]]})
    refused(r, (("inputs", "weight"), "expected shape (C, D) from input (N, D) = (2, 3); got (2, 2)"))
    r = evaluate(client, name, {**MARGIN_INPUTS, "target": [[1], [0]]})
    refused(r, (TARGET, "expected shape (N) = (2,) from input (N, D) = (2, 3); got (2, 1)"))
    r = evaluate(client, name, MARGIN_INPUTS, return_grad=["target"])
    refused(r, (("return_grad", 0), f"role 'target' of {name} is not differentiable"))
    r = evaluate(client, name, MARGIN_INPUTS, {"s": 0, "m": -1})
    refused(
        r,
        (("loss", "params", "s"), "input should be greater than 0; got 0"),
        (("loss", "params", "m"), "input should be greater than or equal to 0; got -1"),
    )
    ok = evaluate(client, name, MARGIN_INPUTS, return_grad=True)
    assert ok.status_code == 200, ok.text
    assert set(ok.json()["grad"]) == {"input", "weight"}


def test_arcface_margin_is_at_most_pi(client):
    r = evaluate(client, "arcface", MARGIN_INPUTS, {"m": 4})
    refused(r, (("loss", "params", "m"), "input should be less than or equal to 3.141592653589793; got 4"))


def _job(name, arrays, params=None, reduction="mean", grad=True):
    decoded = {k: Decoded(np.asarray(v), "float64" if np.asarray(v).dtype.kind == "f" else None)
               for k, v in arrays.items()}  # fmt: skip
    return prepare(REGISTRY, name, params or {}, reduction, decoded, grad, False)


def _margin_arrays(seed, n=3):
    rng = np.random.default_rng(seed)
    return {
        "input": rng.standard_normal((n, 4)),
        "weight": rng.standard_normal((5, 4)),
        "target": rng.integers(0, 5, n),
    }


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_margin_softmax_requests_are_never_batched(name):
    """Their class centres have no batch dimension: requests could share a call only if their
    centres were equal, so each runs alone, and its value is its own."""
    jobs = [_job(name, _margin_arrays(seed)) for seed in range(3)]
    assert [group_key(j) for j in jobs] == [None, None, None]
    for j in jobs:
        (outcome,) = run_group([j], CPU)
        assert outcome.batch_size == 1
        t = {k: torch.from_numpy(v) for k, v in j.arrays.items()}
        assert outcome.value == pytest.approx(REGISTRY.get(name).forward(t, j.params).mean().item(), rel=1e-12)


def test_arcface_at_parallel_and_opposite_vectors_has_finite_gradients():
    """cos theta = 1 (an embedding on its centre) has d cos(theta + m) / d cos = infinite; the service
    keeps sin theta off 0, so the gradient is finite, and the value is cos m (to 1e-150 in float64)."""
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, -3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1])
    loss = REGISTRY.get("arcface")
    params = loss.params()
    el = loss.forward({"input": x, "weight": w, "target": t}, params)
    # row 0: target logit s cos(0 + m), other 0; row 1: cos = -1 < cos(pi - m): s (-1 - m sin m)
    want0 = F.cross_entropy(torch.tensor([[64 * math.cos(0.5), 0.0]], dtype=torch.float64), t[:1], reduction="none")
    want1 = F.cross_entropy(
        torch.tensor([[0.0, 64 * (-1 - 0.5 * math.sin(0.5))]], dtype=torch.float64), t[1:], reduction="none"
    )
    torch.testing.assert_close(el, torch.cat([want0, want1]), rtol=1e-12, atol=0)
    grads = torch.autograd.grad(el.sum(), [x, w])
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["arcface", "cosface", "contrastive"])
def test_cosines_of_huge_rows_are_their_directions(name):
    """Rows of float32 embeddings whose squares overflow (1e30) have the cosines of their
    directions, and the gradients (of the value alone, up to the scale) of those rows: as if they
    were 1e30 times smaller."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 4, generator=g)
    other = torch.randn(5, 4, generator=g) if name != "contrastive" else torch.randn(3, 4, generator=g)
    second = "target" if name == "contrastive" else "weight"
    extra = {} if name == "contrastive" else {"target": torch.tensor([0, 4, 2])}
    loss = REGISTRY.get(name)
    params = loss.params()

    def value_and_grad(scale):
        leaf = (x * scale).requires_grad_(True)
        value = loss.forward({"input": leaf, second: other, **extra}, params).mean()
        (grad,) = torch.autograd.grad(value, leaf)
        return value, grad * scale

    small, g_small = value_and_grad(1.0)
    huge, g_huge = value_and_grad(1e30)
    torch.testing.assert_close(huge, small, rtol=1e-6, atol=0)
    torch.testing.assert_close(g_huge, g_small, rtol=1e-5, atol=1e-7)


# -- contrastive ----------------------------------------------------------------------------------

VIEWS = {"input": [[0.5, 1.5, 0.1], [1.0, 0.0, 0.0]], "target": [[0.4, 1.2, 0.0], [0.9, 0.1, 0.0]]}


def test_contrastive_checks(client):
    r = evaluate(client, "contrastive", {**VIEWS, "target": [[0.4, 1.2], [0.9, 0.1]]})
    refused(r, (TARGET, "expected shape (N, D) = (2, 3) from input (N, D) = (2, 3); got (2, 2)"))
    r = evaluate(client, "contrastive", VIEWS, {"temperature": 0})
    refused(r, (("loss", "params", "temperature"), "input should be greater than 0; got 0"))
    r = evaluate(client, "contrastive", VIEWS, {"batch_size": 4})
    refused(
        r, (("loss", "params", "batch_size"), "unknown parameter 'batch_size' for contrastive; expected temperature")
    )


def test_contrastive_is_not_decomposable(client):
    r = evaluate(client, "contrastive", VIEWS, reduction="none")
    refused(
        r,
        (
            ("loss", "reduction"),
            "contrastive does not accept reduction 'none': it is not decomposable (its value reduces the whole "
            "request); expected one of mean",
        ),
    )
    r = evaluate(client, "contrastive", VIEWS, reduction="sum")
    refused(r, (("loss", "reduction"), "contrastive does not accept reduction 'sum'; expected one of mean"))
    r = evaluate(client, "contrastive", VIEWS, return_elementwise=True)
    refused(
        r,
        (
            ("return_elementwise",),
            "contrastive has no elementwise values: it is not decomposable (its value reduces the whole request)",
        ),
    )
    ok = evaluate(client, "contrastive", VIEWS, return_grad=True)
    assert ok.status_code == 200, ok.text
    assert ok.json()["elementwise"] is None and set(ok.json()["grad"]) == {"input", "target"}
    info = client.get("/v1/losses/contrastive").json()
    assert (info["decomposable"], info["reductions"], info["reference"]) == (False, ["mean"], "MONAI ContrastiveLoss")


def test_contrastive_requests_are_never_batched_and_each_value_is_monais():
    rng = np.random.default_rng(3)
    jobs = [_job("contrastive", {"input": rng.standard_normal((4, 5)), "target": rng.standard_normal((4, 5))})
            for _ in range(3)]  # fmt: skip
    assert [group_key(j) for j in jobs] == [None, None, None]
    for j in jobs:
        (outcome,) = run_group([j], CPU)
        want = ContrastiveLoss()(torch.from_numpy(j.arrays["input"]), torch.from_numpy(j.arrays["target"]))
        assert outcome.value == pytest.approx(want.item(), rel=1e-12)


def test_contrastive_at_small_temperatures_stays_finite():
    """exp(cos / T) overflows float32 for T = 0.01 (MONAI's formula gives NaN there); the service
    takes a logsumexp: its float32 value is MONAI's in float64."""
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    monai = ContrastiveLoss(temperature=0.01)
    assert torch.isnan(monai(x.float(), y.float()))
    loss = REGISTRY.get("contrastive")
    params = loss.params.model_validate({"temperature": 0.01})
    got = loss.forward({"input": x.float(), "target": y.float()}, params).mean()
    monai.temperature = torch.tensor(0.01, dtype=torch.float64)
    torch.testing.assert_close(got.double(), monai(x, y), rtol=1e-5, atol=0)


# -- the PyTorch effect held in tests/engine/test_half_precision.py -------------------------------


def test_pytorch_pow_minus_half_in_bfloat16_depends_on_the_tensor_length():
    """Why POSITION_DEPENDENT holds binary_focal's bfloat16 gradients (alone against in a group) to
    the dtype's tolerance: PyTorch's CPU pow(x, -0.5) in bfloat16 (which x.pow(0.5)'s backward, gamma
    0.5, calls) gives the first elements other values when more elements follow them (its SIMD
    body and scalar tail round differently). Should this fail, PyTorch computes them alike: drop
    the exception."""
    g = torch.Generator().manual_seed(0)
    x = (1e-3 + 0.998 * torch.rand(64, generator=g)).bfloat16()
    assert not torch.equal(x[:5].pow(-0.5), x.pow(-0.5)[:5])
    torch.testing.assert_close(x[:5].pow(-0.5), x.pow(-0.5)[:5], rtol=2**-7, atol=0)
