"""Reference cases: dice_ce against MONAI's own ``DiceCELoss`` (a test-only dependency).

Class indices go to MONAI as ``(N, 1, *)`` with ``to_onehot_y`` (its Dice one-hot encodes them, its
cross entropy squeezes the channel); the class weights as a tensor of the input's dtype.
"""

import torch
from monai.losses import DiceCELoss

from .case import Case
from .cases_dice import scores


def monai_dice_ce(t, p, reduction):
    x, y = t["input"], t["target"]
    kw = dict(p)
    if kw.get("weight") is not None:
        kw["weight"] = torch.as_tensor(kw["weight"], dtype=x.dtype)
    if not y.is_floating_point():
        kw["to_onehot_y"] = True
        if y.ndim == x.ndim - 1:
            y = y.unsqueeze(1)
    return DiceCELoss(reduction=reduction, **kw)(x, y)


def _dice_ce(id, params, shape, target, **kw):
    return Case(id, "dice_ce", params, scores(shape, target), monai_dice_ce, reductions=("mean", "sum"), **kw)


CASES = [
    _dice_ce("dice_ce-softmax-index", {"softmax": True}, (2, 3, 4, 4), "index"),
    _dice_ce("dice_ce-softmax-index1", {"softmax": True, "lambda_dice": 0.7, "lambda_ce": 0.3}, (2, 3, 4, 5), "index1"),
    _dice_ce(
        "dice_ce-weight-no-background",
        {"softmax": True, "include_background": False, "weight": [0.3, 1.7, 1.0], "label_smoothing": 0.1},
        (3, 3, 4, 3),
        "index",
    ),
    _dice_ce(
        "dice_ce-onehot-jaccard", {"softmax": True, "jaccard": True, "squared_pred": True}, (2, 4, 3, 3), "onehot"
    ),
    _dice_ce("dice_ce-soft-target", {"softmax": True, "lambda_ce": 2.0}, (2, 3, 5), "soft"),
    _dice_ce("dice_ce-batch", {"sigmoid": True, "batch": True, "weight": [1.0, 2.0, 0.5]}, (2, 3, 3, 3), "index"),
    _dice_ce("dice_ce-one-class", {"sigmoid": True, "weight": [2.0]}, (3, 1, 4, 4), "mask"),
]
