"""Soft Dice (and Jaccard) loss with MONAI ``DiceLoss`` semantics and parameter names."""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import Field
from torch import Tensor

from .base import Inputs, Loss, Params, param_tensor
from .segmentation import (
    INPUT,
    Options,
    check_options,
    check_spatial,
    check_target,
    check_weight,
    prepared,
    sum_dims,
    target_role,
)

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


class DiceOptions(Options, Protocol):
    """What the soft Dice / Jaccard formula reads of its params (dice's and jaccard's)."""

    @property
    def squared_pred(self) -> bool: ...
    @property
    def smooth_nr(self) -> float: ...
    @property
    def smooth_dr(self) -> float: ...
    @property
    def batch(self) -> bool: ...
    @property
    def weight(self) -> float | list[float] | None: ...


def soft_dice(t: Inputs, p: DiceOptions, jaccard: bool) -> Tensor:
    """1 - (2 |X.Y| + smooth_nr) / (|X| + |Y| + smooth_dr) per sample and class (per class with
    batch), or with jaccard the denominator 2 (|X| + |Y| - |X.Y|) + smooth_dr."""
    x, y = prepared(t, p)
    dims = sum_dims(x, p.batch)
    overlap = (x * y).sum(dims)
    if p.squared_pred:
        x, y = x.square(), y.square()
    total = x.sum(dims) + y.sum(dims)
    if jaccard:
        total = 2 * (total - overlap)
    loss = 1 - (2 * overlap + p.smooth_nr) / (total + p.smooth_dr)
    if p.weight is not None and loss.shape[-1] > 1:
        loss = loss * param_tensor(p.weight, loss)
    return loss


def _dice(t: Inputs, p: DiceParams) -> Tensor:
    return soft_dice(t, p, p.jaccard)


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
            INPUT,
            target_role(),
        ),
        forward=_dice,
        elementwise_shape="(N, C'); C' = C, or C - 1 without the background",
        params=DiceParams,
        aliases=("DiceLoss", "dice_loss"),
        validate=(check_spatial, check_options, check_weight, check_target),
        pooled_when=("batch", True),
    ),
]
