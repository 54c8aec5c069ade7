"""Reference cases: the overlap segmentation losses against MONAI's own modules (``TverskyLoss``,
``GeneralizedDiceLoss``, ``DiceLoss(jaccard=True)``, ``MCCLoss``), and focal_tversky against its
formula (Abraham & Khan 2019, as the issue states it: ``(1 - TI)^gamma``) with TI from MONAI's
``TverskyLoss``.

MONAI details the references work around, so that they compare values rather than quirks (see
also ``cases_dice.py``, whose one-hot encoding, in the input's dtype, is used here too):

- ``GeneralizedDiceLoss`` computes its class weights from the target volumes cast to float32
  (``self.w_func(ground_o.float())``), which costs float64 inputs about 1e-8 relative; the oracle
  below hands ``w_func`` the same volumes in the input's dtype (checked equal to MONAI's once
  rounded to float32), and everything else is MONAI's;
- ``GeneralizedDiceLoss`` cannot give a gradient for its target (it writes into its weights in
  place, and autograd refuses: "modified by an inplace operation"); generalized_dice's target has
  no gradient, so only the input's is compared.
"""

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, GeneralizedDiceLoss, MCCLoss, TverskyLoss
from monai.networks import one_hot

from .case import Case
from .cases_dice import scores


def _perfect(shape):
    """Probabilities that are the one-hot target itself in sample 0 (a perfect prediction: MCC's
    FP = FN = 0), and random in the others."""

    def make(g, dtype):
        n, c = shape[0], shape[1]
        y = F.one_hot(torch.randint(0, c, (n, *shape[2:]), generator=g), c).movedim(-1, 1).to(dtype)
        x = torch.rand(*shape, generator=g, dtype=dtype)
        x[0] = y[0]
        return {"input": x, "target": y}

    return make


def _one_hot(t):
    """The target one-hot encoded as MONAI's to_onehot_y would, in the input's dtype."""
    x, y = t["input"], t["target"]
    if y.is_floating_point():
        return y
    return one_hot(y.unsqueeze(1) if y.ndim == x.ndim - 1 else y, x.shape[1], dtype=x.dtype)


def monai_tversky(t, p, reduction):
    return TverskyLoss(reduction=reduction, **p)(t["input"], _one_hot(t))


def focal_tversky_reference(t, p, reduction):
    """(1 - TI)^gamma per sample and class, 1 - TI being MONAI's Tversky loss; mean over both."""
    kw = {k: v for k, v in p.items() if k != "gamma"}
    el = TverskyLoss(reduction="none", **kw)(t["input"], _one_hot(t)) ** p.get("gamma", 0.75)
    return {"none": el, "sum": el.sum(), "mean": el.mean()}[reduction]


class _GeneralizedDice(GeneralizedDiceLoss):
    """MONAI's GeneralizedDiceLoss with its weights taken of the target volumes in the input's dtype
    (MONAI's own are of the volumes cast to float32)."""

    def __init__(self, volumes, **kw):
        super().__init__(**kw)
        self.volumes = volumes

    def w_func(self, grnd):
        assert torch.equal(self.volumes.float(), grnd), "not the volumes MONAI weighs"
        return super().w_func(self.volumes)


def monai_generalized_dice(t, p, reduction):
    x, y = t["input"], _one_hot(t)
    kept = y if p.get("include_background", True) else y[:, 1:]
    dims = ([0] if p.get("batch") else []) + list(range(2, x.ndim))
    out = _GeneralizedDice(kept.sum(dims), reduction=reduction, **p)(x, y)
    return out.reshape(-1) if reduction == "none" else out


def monai_jaccard(t, p, reduction):
    kw = dict(p)
    if kw.get("weight") is not None:  # MONAI makes a float32 tensor of a list (see cases_dice.py)
        kw["weight"] = torch.as_tensor(kw["weight"], dtype=t["input"].dtype)
    out = DiceLoss(jaccard=True, reduction=reduction, **kw)(t["input"], _one_hot(t))
    if reduction != "none":
        return out
    return out.reshape(-1) if p.get("batch") else out.reshape(out.shape[0], -1)


def monai_mcc(t, p, reduction):
    return MCCLoss(reduction=reduction, **p)(t["input"], _one_hot(t))


ORACLES = {
    "tversky": monai_tversky,
    "focal_tversky": focal_tversky_reference,
    "generalized_dice": monai_generalized_dice,
    "jaccard": monai_jaccard,
    "mcc": monai_mcc,
}


def _case(loss, id, params, shape, target, classes=None, **kw):
    if target in ("onehot", "soft", "mask") and loss != "generalized_dice":
        kw.setdefault("grad_roles", ("input", "target"))
    probabilities = not (params.get("sigmoid") or params.get("softmax"))
    make = scores(shape, target, probabilities, classes)
    return Case(f"{loss}-{id}", loss, params, make, ORACLES[loss], **kw)


CASES = [
    # tversky
    _case("tversky", "softmax-index", {"softmax": True}, (2, 3, 4, 4), "index"),
    _case("tversky", "softmax-index1", {"softmax": True, "alpha": 0.7, "beta": 0.3}, (2, 3, 4, 5), "index1"),
    _case("tversky", "sigmoid-onehot-3d", {"sigmoid": True, "alpha": 0.3, "beta": 0.7}, (2, 3, 3, 4, 2), "onehot"),
    _case(
        "tversky", "no-background", {"softmax": True, "include_background": False, "beta": 2.0}, (3, 4, 5, 3), "index"
    ),
    _case("tversky", "batch", {"softmax": True, "batch": True}, (3, 3, 4, 4), "index"),
    _case(
        "tversky",
        "batch-no-background-sigmoid",
        {"sigmoid": True, "batch": True, "include_background": False, "alpha": 0.2, "beta": 0.8},
        (2, 3, 2, 3, 4),
        "index1",
    ),
    _case(
        "tversky",
        "probabilities-smooth",
        {"alpha": 1.0, "beta": 1.0, "smooth_nr": 0.0, "smooth_dr": 1e-3},
        (3, 2, 7),
        "soft",
    ),
    _case("tversky", "binary-mask", {"sigmoid": True, "alpha": 0.0}, (3, 1, 4, 4), "mask"),
    _case("tversky", "nested", {"softmax": True}, (2, 3, 3, 3), "index", nested=("target",)),
    # focal_tversky
    _case("focal_tversky", "default", {}, (2, 3, 4, 4), "onehot"),
    _case("focal_tversky", "softmax-index", {"softmax": True}, (2, 3, 4, 5), "index"),
    _case("focal_tversky", "gamma2-sigmoid", {"sigmoid": True, "gamma": 2.0}, (2, 3, 3, 4, 2), "onehot"),
    _case("focal_tversky", "gamma1", {"softmax": True, "gamma": 1.0, "alpha": 0.7, "beta": 0.3}, (2, 3, 5), "index1"),
    _case(
        "focal_tversky",
        "gamma-half-no-background",
        {"softmax": True, "gamma": 0.5, "include_background": False, "alpha": 0.3, "beta": 0.7},
        (3, 4, 5, 3),
        "index",
    ),
    _case("focal_tversky", "batch", {"softmax": True, "batch": True, "gamma": 1.5}, (3, 3, 4, 4), "index"),
    _case("focal_tversky", "soft", {"smooth_nr": 1e-3, "smooth_dr": 1e-3}, (3, 2, 7), "soft"),
    _case("focal_tversky", "binary-mask", {"sigmoid": True}, (3, 1, 4, 4), "mask"),
    # generalized_dice
    _case("generalized_dice", "square-softmax-index", {"softmax": True}, (2, 3, 4, 4), "index"),
    _case(
        "generalized_dice", "simple-sigmoid-onehot", {"sigmoid": True, "w_type": "simple"}, (2, 3, 3, 4, 2), "onehot"
    ),
    _case("generalized_dice", "uniform-probabilities-soft", {"w_type": "uniform"}, (3, 2, 7), "soft"),
    _case("generalized_dice", "square-soft", {"smooth_nr": 0.0, "smooth_dr": 1e-3}, (2, 4, 5, 5), "soft"),
    _case("generalized_dice", "empty-class", {"softmax": True}, (3, 4, 3, 3), "index", classes=2),
    _case(
        "generalized_dice", "empty-class-simple", {"softmax": True, "w_type": "simple"}, (2, 3, 4), "index1", classes=2
    ),
    _case("generalized_dice", "batch", {"softmax": True, "batch": True}, (3, 3, 4, 4), "index"),
    _case("generalized_dice", "batch-empty-class", {"softmax": True, "batch": True}, (2, 4, 3, 3), "index", classes=3),
    _case(
        "generalized_dice",
        "batch-simple-no-background",
        {"sigmoid": True, "batch": True, "w_type": "simple", "include_background": False},
        (2, 3, 2, 3, 4),
        "index1",
    ),
    _case(
        "generalized_dice",
        "no-background-uniform",
        {"softmax": True, "include_background": False, "w_type": "uniform"},
        (3, 4, 5, 3),
        "index",
        nested=("target",),
    ),
    _case("generalized_dice", "binary-mask", {"sigmoid": True}, (3, 1, 4, 4), "mask"),
    # jaccard
    _case("jaccard", "softmax-index", {"softmax": True}, (2, 3, 4, 4), "index"),
    _case("jaccard", "sigmoid-onehot-3d", {"sigmoid": True}, (2, 3, 3, 4, 2), "onehot"),
    _case("jaccard", "squared", {"softmax": True, "squared_pred": True}, (2, 3, 4, 4), "index1"),
    _case(
        "jaccard",
        "squared-smooth",
        {"softmax": True, "squared_pred": True, "smooth_nr": 0.0, "smooth_dr": 1e-3},
        (2, 4, 6),
        "index",
    ),
    _case("jaccard", "batch", {"softmax": True, "batch": True}, (3, 3, 4, 4), "index"),
    _case("jaccard", "weight-list", {"softmax": True, "weight": [0.2, 0.5, 0.3]}, (2, 3, 4, 4), "index"),
    _case(
        "jaccard",
        "weight-no-background-batch",
        {"sigmoid": True, "include_background": False, "batch": True, "weight": [0.3, 1.7]},
        (2, 3, 4, 3),
        "onehot",
    ),
    _case("jaccard", "soft", {"smooth_nr": 1e-3, "smooth_dr": 1e-3}, (3, 2, 7), "soft"),
    _case("jaccard", "binary-mask", {"sigmoid": True, "weight": 2.0}, (3, 1, 4, 4), "mask"),
    # mcc
    _case("mcc", "default", {}, (2, 3, 4, 4), "onehot"),
    _case("mcc", "softmax-index", {"softmax": True}, (2, 3, 4, 5), "index"),
    _case("mcc", "sigmoid-mask", {"sigmoid": True}, (3, 1, 4, 4), "mask"),
    _case("mcc", "no-background", {"softmax": True, "include_background": False}, (3, 4, 5, 3), "index1"),
    _case("mcc", "batch", {"softmax": True, "batch": True}, (3, 3, 4, 4), "index"),
    _case(
        "mcc", "batch-sigmoid-smooth", {"sigmoid": True, "batch": True, "smooth_nr": 1e-3}, (2, 3, 2, 3, 4), "onehot"
    ),
    _case("mcc", "soft", {"smooth_dr": 1e-2}, (3, 2, 7), "soft"),
    # A perfect sample scores 0 where the formula gives about 0 (classes present) or 1 (a class
    # absent from both): the loss jumps there, so finite differences have no gradient to check.
    Case(
        "mcc-perfect",
        "mcc",
        {},
        _perfect((2, 3, 2, 2)),
        monai_mcc,
        grad_roles=("input", "target"),
        gradcheck=False,
    ),
]
