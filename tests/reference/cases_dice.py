"""Reference cases: dice against MONAI's own ``DiceLoss`` (a test-only dependency).

MONAI details the reference works around, so that it compares values rather than quirks (each
would cost float64 inputs about 1e-8 relative):

- ``weight`` given as a list or number becomes a float32 tensor (``torch.as_tensor``), so it is
  passed as a tensor of the input's dtype;
- ``to_onehot_y=True`` one-hot encodes into float32 whatever the input's dtype, and with
  ``squared_pred`` the target's norm is then taken in float32; so class indices are one-hot encoded
  here by the very function ``to_onehot_y`` calls (``monai.networks.one_hot``), in the input's dtype;
- that function only takes ``(N, 1, *)`` indices, so ``(N, *)`` indices get their channel added.
"""

import torch
from monai.losses import DiceLoss
from monai.networks import one_hot

from .case import Case


def scores(shape, target, probabilities=False, classes=None):
    """Logits (or probabilities) (N, C, *) and a target: indices "index" (N, *) or "index1" (N, 1, *),
    or floats (N, C, *): "onehot", "mask" (independent 0/1 per class) or "soft" (probabilities).
    ``classes``: the classes the indices are drawn from (default all C): fewer leaves classes empty."""

    def make(g, dtype):
        draw = torch.rand if probabilities else torch.randn
        x = draw(*shape, generator=g, dtype=dtype)
        n, c, spatial = shape[0], shape[1], shape[2:]
        indices = torch.randint(0, classes or c, (n, *spatial), generator=g)
        if target == "index":
            y = indices
        elif target == "index1":
            y = indices.unsqueeze(1)
        elif target == "onehot":
            y = torch.nn.functional.one_hot(indices, c).movedim(-1, 1).to(dtype)
        elif target == "mask":
            y = (torch.rand(*shape, generator=g) > 0.5).to(dtype)
        else:
            y = torch.softmax(torch.randn(*shape, generator=g, dtype=dtype), dim=1)
        return {"input": x, "target": y}

    return make


def monai_dice(t, p, reduction):
    x, y = t["input"], t["target"]
    kw = dict(p)
    if kw.get("weight") is not None:
        kw["weight"] = torch.as_tensor(kw["weight"], dtype=x.dtype)
    if not y.is_floating_point():
        y = one_hot(y.unsqueeze(1) if y.ndim == x.ndim - 1 else y, x.shape[1], dtype=x.dtype)
    out = DiceLoss(reduction=reduction, **kw)(x, y)
    if reduction != "none":
        return out
    return out.reshape(-1) if p.get("batch") else out.reshape(x.shape[0], -1)


def _dice(id, params, shape, target, **kw):
    if target in ("onehot", "soft", "mask"):
        kw.setdefault("grad_roles", ("input", "target"))
    probabilities = not (params.get("sigmoid") or params.get("softmax"))
    return Case(id, "dice", params, scores(shape, target, probabilities), monai_dice, **kw)


CASES = [
    _dice("dice-softmax-index", {"softmax": True}, (2, 3, 4, 4), "index"),
    _dice("dice-softmax-index1", {"softmax": True}, (2, 3, 4, 5), "index1"),
    _dice("dice-softmax-index-nested", {"softmax": True}, (2, 3, 3, 3), "index", nested=("target",)),
    _dice("dice-sigmoid-onehot-3d", {"sigmoid": True}, (2, 3, 3, 4, 2), "onehot"),
    _dice("dice-no-background", {"softmax": True, "include_background": False}, (3, 4, 5, 3), "index"),
    _dice("dice-squared", {"softmax": True, "squared_pred": True}, (2, 3, 4, 4), "index1"),
    _dice("dice-jaccard", {"sigmoid": True, "jaccard": True}, (2, 3, 5, 4), "onehot"),
    _dice(
        "dice-jaccard-squared",
        {"softmax": True, "jaccard": True, "squared_pred": True, "smooth_nr": 0.0, "smooth_dr": 1e-3},
        (2, 4, 6),
        "index",
    ),
    _dice("dice-batch", {"softmax": True, "batch": True}, (3, 3, 4, 4), "index"),
    _dice(
        "dice-batch-no-background-3d",
        {"sigmoid": True, "batch": True, "include_background": False},
        (2, 3, 2, 3, 4),
        "index1",
    ),
    _dice("dice-weight-scalar", {"softmax": True, "weight": 0.5}, (2, 3, 4, 4), "index"),
    _dice("dice-weight-list", {"softmax": True, "weight": [0.2, 0.5, 0.3]}, (2, 3, 4, 4), "index"),
    _dice(
        "dice-weight-no-background",
        {"softmax": True, "include_background": False, "weight": [0.3, 1.7]},
        (2, 3, 4, 3),
        "onehot",
    ),
    _dice(
        "dice-weight-batch-jaccard",
        {"sigmoid": True, "batch": True, "jaccard": True, "weight": [1.0, 2.0, 0.5]},
        (2, 3, 3, 3),
        "onehot",
    ),
    _dice("dice-soft-target", {"softmax": True}, (2, 4, 5, 5), "soft"),
    _dice("dice-probabilities-1d", {"smooth_nr": 1e-3, "smooth_dr": 1e-3}, (3, 2, 7), "soft"),
    _dice("dice-binary-sigmoid", {"sigmoid": True, "weight": 2.0}, (3, 1, 4, 4), "mask"),
]
