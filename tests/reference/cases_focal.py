"""Reference cases: focal (the formula, via one-hot and softmax) and sigmoid_focal (torchvision's
``ops.sigmoid_focal_loss`` written out, as torchvision is not installed here)."""

import torch
import torch.nn.functional as F

from .case import Case


def _reduce(el, reduction, count=None):
    if reduction == "none":
        return el
    if reduction == "sum":
        return el.sum()
    return el.sum() / (el.numel() if count is None else count)


def class_targets(shape, classes=None, ignore=None, hits=0):
    """Logits of ``shape`` = (N, C, *) and int64 targets (N, *) drawn from ``classes`` classes (all
    C by default), ``hits`` of them set to ``ignore``."""

    def make(g, dtype):
        target = torch.randint(0, classes or shape[1], (shape[0], *shape[2:]), generator=g)
        if hits:
            target.view(-1)[torch.randperm(target.numel(), generator=g)[:hits]] = ignore
        return {"input": torch.randn(*shape, generator=g, dtype=dtype) * 2, "target": target}

    return make


def focal_reference(t, p, reduction):
    x, y = t["input"], t["target"]
    kept = y != p.get("ignore_index", -100)
    one_hot = F.one_hot(torch.where(kept, y, 0), x.shape[1]).movedim(-1, 1).to(x.dtype)
    p_t = (torch.softmax(x, dim=1) * one_hot).sum(1)
    el = -((1 - p_t) ** p.get("gamma", 2.0)) * torch.log(p_t)
    if p.get("alpha") is not None:
        alpha = torch.tensor(p["alpha"], dtype=x.dtype).view(1, -1, *[1] * (x.ndim - 2))
        el = el * (alpha * one_hot).sum(1)
    return _reduce(el * kept, reduction, kept.sum())


def _binary(shape, soft):
    def make(g, dtype):
        x = torch.randn(*shape, generator=g, dtype=dtype) * 2
        y = torch.rand(*shape, generator=g, dtype=dtype)
        return {"input": x, "target": y if soft else (y > 0.5).to(dtype)}

    return make


def sigmoid_focal_reference(t, p, reduction):
    x, y = t["input"], t["target"]
    prob = torch.sigmoid(x)
    ce = -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x))
    p_t = prob * y + (1 - prob) * (1 - y)
    el = ce * (1 - p_t) ** p.get("gamma", 2.0)
    alpha = p.get("alpha", 0.25)
    if alpha is not None and alpha >= 0:
        el = el * (alpha * y + (1 - alpha) * (1 - y))
    return _reduce(el, reduction)


def _focal(id, params, make, **kw):
    return Case(id, "focal", params, make, focal_reference, **kw)


def _sigmoid(id, params, make, **kw):
    return Case(id, "sigmoid_focal", params, make, sigmoid_focal_reference, **kw)


CASES = [
    _focal("focal-gamma0", {"gamma": 0.0}, class_targets((6, 5), 5)),
    _focal("focal-gamma2", {}, class_targets((6, 4), 4)),
    _focal("focal-gamma-half", {"gamma": 0.5}, class_targets((5, 3), 3)),
    _focal("focal-alpha", {"gamma": 2.0, "alpha": [0.25, 0.75, 0.5]}, class_targets((2, 3, 4, 4), 3)),
    _focal("focal-ignore-default", {}, class_targets((4, 3, 5), 3, ignore=-100, hits=6), nested=("target",)),
    _focal("focal-ignore-class", {"ignore_index": 1, "alpha": [1.0, 2.0, 0.5, 3.0]}, class_targets((3, 4, 6), 4)),
    _focal("focal-spatial", {"gamma": 1.5}, class_targets((2, 4, 3, 5), 4)),
    _focal("focal-spatial-ignore", {"gamma": 1.5, "ignore_index": 7}, class_targets((2, 4, 3, 5), 4, ignore=7, hits=4)),
    _sigmoid("sigmoid_focal-default", {}, _binary((4, 5), soft=False)),
    _sigmoid("sigmoid_focal-alpha", {"alpha": 0.6, "gamma": 1.0}, _binary((3, 2, 4), soft=False)),
    _sigmoid("sigmoid_focal-alpha-off", {"alpha": -1}, _binary((12,), soft=False), nested=("input", "target")),
    _sigmoid("sigmoid_focal-alpha-null", {"alpha": None, "gamma": 2.0}, _binary((2, 3, 3), soft=False)),
    _sigmoid("sigmoid_focal-gamma0", {"gamma": 0.0}, _binary((5, 4), soft=False)),
    _sigmoid(
        "sigmoid_focal-soft", {"alpha": 0.25, "gamma": 2.0}, _binary((4, 6), soft=True), grad_roles=("input", "target")
    ),
    _sigmoid(
        "sigmoid_focal-soft-gamma0",
        {"gamma": 0.0, "alpha": None},
        _binary((3, 5), soft=True),
        grad_roles=("input", "target"),
    ),
]
