"""Reference cases: poly1, binary_focal, hinge, squared_hinge, exponential and zero_one, each
against its formula written out here plainly (no library defines them all; poly1's reference is
the paper, Leng et al. 2022, whose code adds epsilon (1 - p_t) to the cross entropy).

poly1 with class weights: the weight scales the cross-entropy term only (as PyTorch's
``cross_entropy(weight=...)`` gives it elementwise), and the mean is cross_entropy's weighted mean
(the sum divided by the sum of weight[target] over the elements not ignored)."""

import torch
import torch.nn.functional as F

from .case import Case
from .cases_focal import class_targets


def _reduce(el, reduction, count=None):
    if reduction == "none":
        return el
    if reduction == "sum":
        return el.sum()
    return el.sum() / (el.numel() if count is None else count)


# -- poly1 ----------------------------------------------------------------------------------------


def poly1_reference(t, p, reduction):
    x, y = t["input"], t["target"]
    ignore = p.get("ignore_index", -100)
    weight = None if p.get("weight") is None else torch.tensor(p["weight"], dtype=x.dtype)
    ce = F.cross_entropy(x, y, weight=weight, ignore_index=ignore, reduction="none")  # 0 where ignored
    kept = y != ignore
    safe = torch.where(kept, y, 0)
    p_t = torch.softmax(x, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    el = ce + p.get("epsilon", 1.0) * (1 - p_t) * kept
    count = kept.sum() if weight is None else (weight[safe] * kept).sum()
    return _reduce(el, reduction, count)


def _poly1(id, params, make, **kw):
    return Case(id, "poly1", params, make, poly1_reference, **kw)


# -- binary focal ---------------------------------------------------------------------------------


def _probabilities(shape, soft=False, low=1e-3):
    """Probabilities in [low, 1 - low] and 0/1 labels (or soft labels)."""

    def make(g, dtype):
        p = low + (1 - 2 * low) * torch.rand(*shape, generator=g, dtype=dtype)
        y = torch.rand(*shape, generator=g, dtype=dtype)
        return {"input": p, "target": y if soft else (y > 0.5).to(dtype)}

    return make


def binary_focal_reference(t, p, reduction):
    x, y = t["input"], t["target"]
    alpha, gamma, eps = p.get("alpha", 0.25), p.get("gamma", 2.0), p.get("eps", 1e-8)
    x = torch.clamp(x, eps, 1 - eps)
    el = -alpha * y * (1 - x) ** gamma * torch.log(x) - (1 - alpha) * (1 - y) * x**gamma * torch.log(1 - x)
    return _reduce(el, reduction)


def _focal(id, params, make, **kw):
    return Case(id, "binary_focal", params, make, binary_focal_reference, **kw)


# -- the hinge family -----------------------------------------------------------------------------


def _scores(shape):
    """Scores and labels 1 or -1."""

    def make(g, dtype):
        f = torch.randn(*shape, generator=g, dtype=dtype) * 1.5
        y = torch.where(torch.rand(*shape, generator=g) > 0.5, 1.0, -1.0).to(dtype)
        return {"input": f, "target": y}

    return make


def hinge_reference(t, p, reduction):
    return _reduce(torch.clamp(1 - t["target"] * t["input"], min=0), reduction)


def squared_hinge_reference(t, p, reduction):
    return _reduce(torch.clamp(1 - t["target"] * t["input"], min=0) ** 2, reduction)


def exponential_reference(t, p, reduction):
    return _reduce(torch.exp(-t["target"] * t["input"]), reduction)


# -- zero-one -------------------------------------------------------------------------------------


def _votes(shape, ties=False):
    """Scores (N, C, *) (small integers when ``ties``: equal maxima are common) and targets (N, *)."""

    def make(g, dtype):
        draw = torch.randint(0, 3, shape, generator=g).to(dtype) if ties else None
        x = torch.randn(*shape, generator=g, dtype=dtype) if draw is None else draw
        return {"input": x, "target": torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)}

    return make


def zero_one_reference(t, p, reduction):
    """The first class (lowest index) whose score is the largest, against the target."""
    x, y = t["input"], t["target"]
    index = torch.arange(x.shape[1]).view(1, -1, *[1] * (x.ndim - 2))
    is_max = x == x.amax(dim=1, keepdim=True)
    predicted = torch.where(is_max, index, x.shape[1]).amin(dim=1)
    return _reduce((predicted != y).to(x.dtype), reduction)


def _zero_one(id, make, **kw):
    return Case(id, "zero_one", {}, make, zero_one_reference, grad_roles=(), gradcheck=False, **kw)


CASES = [
    _poly1("poly1-default", {}, class_targets((6, 5))),
    _poly1("poly1-epsilon2", {"epsilon": 2.0}, class_targets((5, 4))),
    _poly1("poly1-epsilon-minus1", {"epsilon": -1.0}, class_targets((5, 3))),
    _poly1("poly1-epsilon0-is-ce", {"epsilon": 0.0}, class_targets((4, 3, 5))),
    _poly1("poly1-spatial", {"epsilon": 0.5}, class_targets((2, 4, 3, 5))),
    _poly1("poly1-weight", {"weight": [0.5, 2.0, 1.0, 0.25]}, class_targets((6, 4))),
    _poly1("poly1-ignore-default", {}, class_targets((4, 3, 5), ignore=-100, hits=6), nested=("target",)),
    _poly1(
        "poly1-weight-ignore-class",
        {"weight": [1.0, 2.0, 0.5], "ignore_index": 1, "epsilon": 1.5},
        class_targets((3, 3, 6)),
    ),
    _focal("binary_focal-default", {}, _probabilities((4, 5))),
    _focal("binary_focal-alpha-gamma", {"alpha": 0.6, "gamma": 1.0}, _probabilities((3, 2, 4))),
    _focal("binary_focal-gamma0-is-weighted-bce", {"gamma": 0.0, "alpha": 0.5}, _probabilities((12,))),
    _focal("binary_focal-gamma-half", {"gamma": 0.5}, _probabilities((5, 4)), nested=("input", "target")),
    _focal(
        "binary_focal-soft",
        {"alpha": 0.25, "gamma": 2.0},
        _probabilities((4, 6), soft=True),
        grad_roles=("input", "target"),
    ),
    # eps 0.05 clips about a tenth of uniform probabilities: their gradient is 0 there
    _focal("binary_focal-clipped", {"eps": 0.05}, _probabilities((6, 5), low=0.0), grad_roles=("input", "target")),
    Case("hinge-default", "hinge", {}, _scores((4, 5)), hinge_reference),
    Case("hinge-spatial-nested", "hinge", {}, _scores((2, 3, 4)), hinge_reference, nested=("input", "target")),
    Case("squared_hinge-default", "squared_hinge", {}, _scores((4, 5)), squared_hinge_reference),
    Case("squared_hinge-1d", "squared_hinge", {}, _scores((16,)), squared_hinge_reference),
    Case("exponential-default", "exponential", {}, _scores((4, 5)), exponential_reference),
    Case("exponential-spatial", "exponential", {}, _scores((2, 2, 3, 3)), exponential_reference),
    _zero_one("zero_one-default", _votes((8, 5))),
    _zero_one("zero_one-ties", _votes((10, 4), ties=True)),
    _zero_one("zero_one-spatial", _votes((2, 3, 4, 5)), nested=("target",)),
    _zero_one("zero_one-spatial-ties", _votes((3, 3, 6), ties=True)),
]
