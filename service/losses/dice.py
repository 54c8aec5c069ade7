"""Soft Dice (and Jaccard) loss with MONAI ``DiceLoss`` semantics and parameter names."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params, param_tensor
from .checks import class_indices, in_range, param_length
from .contract import FLOAT, INTEGER, fmt_shape, form, role

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Smooth = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DiceParams(Params):
    include_background: bool = Field(True, description="false leaves class 0 (the background) out; needs C > 1")
    sigmoid: bool = Field(False, description="apply a sigmoid to the input first")
    softmax: bool = Field(False, description="apply a softmax over the classes to the input first; needs C > 1")
    squared_pred: bool = Field(False, description="square the input and target in the denominator")
    jaccard: bool = Field(False, description="the Jaccard index (soft IoU) instead of Dice")
    smooth_nr: Smooth = Field(1e-5, description="added to the numerator")
    smooth_dr: Smooth = Field(1e-5, description="added to the denominator")
    batch: bool = Field(False, description="pool the sums over the batch before dividing: one value per class")
    weight: Weight | list[Weight] | None = Field(
        None,
        description=(
            "class weights: one number for all, or one per scored class (C, or C - 1 without the "
            "background); as in MONAI, no effect when only one class is scored"
        ),
    )


def _one_hot(target: Tensor, like: Tensor) -> Tensor:
    """Class indices (N, *) or (N, 1, *) -> (N, C, *) in the input's dtype (MONAI's to_onehot_y)."""
    indices = target.reshape(like.shape[:1] + like.shape[2:])
    return F.one_hot(indices, like.shape[1]).movedim(-1, 1).to(like.dtype)


def _prepare(t: Inputs, p: DiceParams) -> tuple[Tensor, Tensor]:
    x, y = t["input"], t["target"]
    if not y.is_floating_point():
        y = _one_hot(y, x)
    if p.sigmoid:
        x = torch.sigmoid(x)
    if p.softmax:
        x = torch.softmax(x, dim=1)
    if not p.include_background:
        x, y = x[:, 1:], y[:, 1:]
    return x, y


def _dice(t: Inputs, p: DiceParams) -> Tensor:
    x, y = _prepare(t, p)
    dims = ([0] if p.batch else []) + list(range(2, x.ndim))
    overlap = (x * y).sum(dims)
    if p.squared_pred:
        x, y = x.square(), y.square()
    total = x.sum(dims) + y.sum(dims)
    if p.jaccard:
        total = 2 * (total - overlap)
    loss = 1 - (2 * overlap + p.smooth_nr) / (total + p.smooth_dr)
    if p.weight is not None and loss.shape[-1] > 1:
        loss = loss * param_tensor(p.weight, loss)
    return loss


def _scored(c: Checked) -> tuple[int, str]:
    """How many classes are scored, and the letter naming that count."""
    classes = c.binding.size("C")
    return (classes, "C") if c.params.include_background else (classes - 1, "C - 1")


def _check_options(c: Checked) -> list[ErrorItem]:
    p, classes = c.params, c.binding.size("C")
    errors = []
    if p.sigmoid and p.softmax:
        errors.append(ErrorItem(("loss", "params", "softmax"), "softmax and sigmoid cannot both be true"))
    elif p.softmax and classes == 1:
        errors.append(ErrorItem(("loss", "params", "softmax"), "softmax needs C > 1 classes; got C = 1"))
    if not p.include_background and classes == 1:
        msg = "include_background=false drops class 0 and needs C > 1 classes; got C = 1"
        errors.append(ErrorItem(("loss", "params", "include_background"), msg))
    return errors


def _check_weight(c: Checked) -> list[ErrorItem]:
    scored, letter = _scored(c)
    if not isinstance(c.params.weight, list) or scored == 0:
        return []
    return param_length(c.params.weight, scored, letter, "weight")


def _check_input(c: Checked) -> list[ErrorItem]:
    if c.binding.dims["*"]:
        return []
    shape = fmt_shape(c.arrays["input"].shape)
    return [ErrorItem(("inputs", "input"), f"expected at least one spatial dimension after (N, C); got {shape}")]


def _check_target(c: Checked) -> list[ErrorItem]:
    target, classes = c.arrays["target"], c.binding.size("C")
    if c.binding.forms["target"].kind == FLOAT:
        return in_range(target, 0, 1, "target")
    if classes == 1:
        msg = "class-index targets need C > 1 classes; with C = 1 send a float mask of the input's shape"
        return [ErrorItem(("inputs", "target"), msg)]
    return class_indices(target, classes, "target")


LOSSES = [
    Loss(
        name="dice",
        summary=(
            "Soft Dice loss 1 - (2 |X.Y| + smooth_nr) / (|X| + |Y| + smooth_dr) per sample and class, "
            "or the Jaccard loss (MONAI DiceLoss)."
        ),
        category="segmentation",
        reference="monai",
        roles=(
            role("input", "(N, C, *)", description="scores or probabilities (logits with sigmoid or softmax)"),
            role(
                "target",
                form("(N, C, *)", FLOAT, "float one-hot or probabilities in [0, 1]"),
                form("(N, *)", INTEGER, "integer class indices"),
                form("(N, 1, *)", INTEGER, "integer class indices"),
                description="one-hot / probabilities (differentiable), or class indices in [0, C), one-hot encoded",
            ),
        ),
        forward=_dice,
        elementwise_shape="(N, C'), or (C',) with batch=true; C' = C, or C - 1 without the background",
        params=DiceParams,
        aliases=("DiceLoss", "dice_loss"),
        validate=(_check_input, _check_options, _check_weight, _check_target),
        batchable=lambda p, arrays: not p.batch,
    ),
]
