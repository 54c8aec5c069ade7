"""Overlap segmentation losses beyond Dice: tversky, focal_tversky, generalized_dice, jaccard, mcc.

All take MONAI's input ``(N, C, *)`` and target (one-hot / probabilities ``(N, C, *)``, or class
indices ``(N, *)`` / ``(N, 1, *)``) with the options ``include_background``, ``sigmoid`` and
``softmax`` (see ``segmentation.py``), and score each sample and class from sums over the spatial
dimensions (over the batch too with ``batch=true``: then a request's value spans all its samples,
and it is never batched with another request).

float16 and bfloat16 requests are computed in float32 and their values rounded to the dtype: the
sums these formulas divide and multiply overflow float16 on small images (MCC multiplies four of
them: 32^4 > 65504 on an 8 x 8 image), and generalized_dice's weights 1 / volume^2 underflow it
(MONAI computes those in float32 too). jaccard is dice's formula and computes as dice does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from .base import Inputs, Loss, Params
from .dice import soft_dice
from .segmentation import (
    INPUT,
    check_options,
    check_probabilities,
    check_spatial,
    check_target,
    check_weight,
    prepared,
    sum_dims,
    target_role,
)

NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
HALF = (torch.float16, torch.bfloat16)


class SegmentationParams(Params):
    include_background: bool = Field(True, description="false leaves class 0 (the background) out; needs C > 1")
    sigmoid: bool = Field(False, description="apply a sigmoid to the input first")
    softmax: bool = Field(False, description="apply a softmax over the classes to the input first; needs C > 1")


_SMOOTH_NR = "added to the numerator"
_SMOOTH_DR = "added to the denominator"
_BATCH = "pool the sums over the batch before dividing: one value per class"


class TverskyParams(SegmentationParams):
    alpha: NonNegative = Field(0.5, description="weight of the false positives")
    beta: NonNegative = Field(0.5, description="weight of the false negatives")
    smooth_nr: NonNegative = Field(1e-5, description=_SMOOTH_NR)
    smooth_dr: NonNegative = Field(1e-5, description=_SMOOTH_DR)
    batch: bool = Field(False, description=_BATCH)


class FocalTverskyParams(TverskyParams):
    gamma: float = Field(0.75, gt=0, allow_inf_nan=False, description="exponent on 1 - TI (the Tversky index)")


class GeneralizedDiceParams(SegmentationParams):
    w_type: Literal["square", "simple", "uniform"] = Field(
        "square", description="class weight from the target's volume V: 1 / V^2 (square), 1 / V (simple) or 1"
    )
    smooth_nr: NonNegative = Field(1e-5, description=_SMOOTH_NR)
    smooth_dr: NonNegative = Field(1e-5, description=_SMOOTH_DR)
    batch: bool = Field(False, description="pool the weighted sums over the batch: one value for the request")


class JaccardParams(SegmentationParams):
    squared_pred: bool = Field(False, description="square the input and target in the denominator")
    smooth_nr: NonNegative = Field(1e-5, description=_SMOOTH_NR)
    smooth_dr: NonNegative = Field(1e-5, description=_SMOOTH_DR)
    batch: bool = Field(False, description=_BATCH)
    weight: NonNegative | list[NonNegative] | None = Field(
        None,
        description=(
            "class weights: one number for all, or one per scored class (C, or C - 1 without the "
            "background); as in MONAI, no effect when only one class is scored"
        ),
    )


class MCCParams(SegmentationParams):
    smooth_nr: NonNegative = Field(0.0, description=_SMOOTH_NR)
    smooth_dr: NonNegative = Field(1e-5, description="added under the square root of the denominator")
    batch: bool = Field(False, description=_BATCH)


Forward = Callable[[Inputs, Any], Tensor]


def in_float32(forward: Forward) -> Forward:
    """``forward`` computed in float32 for float16/bfloat16 inputs, its values in their dtype."""

    def run(t: Inputs, p: Any) -> Tensor:
        x, y = t["input"], t["target"]
        if x.dtype not in HALF:
            return forward(t, p)
        wide = {"input": x.float(), "target": y.float() if y.is_floating_point() else y}
        return forward(wide, p).to(x.dtype)

    return run


def _tversky_index(t: Inputs, p: TverskyParams) -> Tensor:
    """TI = (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr) per sample and class."""
    x, y = prepared(t, p)
    dims = sum_dims(x, p.batch)
    tp = (x * y).sum(dims)
    fp = (x * (1 - y)).sum(dims)
    fn = ((1 - x) * y).sum(dims)
    return (tp + p.smooth_nr) / (tp + p.alpha * fp + p.beta * fn + p.smooth_dr)


@in_float32
def _tversky(t: Inputs, p: TverskyParams) -> Tensor:
    return 1 - _tversky_index(t, p)


@in_float32
def _focal_tversky(t: Inputs, p: FocalTverskyParams) -> Tensor:
    miss = 1 - _tversky_index(t, p)  # >= 0: the input and target are probabilities, alpha and beta >= 0
    if p.gamma >= 1:
        return miss**p.gamma
    # Below 1 the power's derivative at 0 is infinite, and autograd would give 0 * inf = NaN where
    # nothing is missed (a saturated sigmoid): there the value is 0, and the gradient 0 (a minimum).
    missed = miss > 0
    return torch.where(missed, torch.where(missed, miss, 1) ** p.gamma, 0)


def _class_weights(volume: Tensor, w_type: str, batch: bool) -> Tensor:
    """MONAI's weights from the target volumes V (per sample and class, or per class with batch):
    1 / V^2, 1 / V or 1; a weight that is infinite (an empty class) takes the largest finite weight
    of its sample (of the request with batch), or 0 where every weight is infinite."""
    if w_type == "uniform":
        return torch.ones_like(volume)
    w = (volume * volume if w_type == "square" else volume).reciprocal()
    infinite = w.isinf()
    w = w.masked_fill(infinite, 0)
    largest = w.max() if batch else w.max(1, keepdim=True).values
    return torch.where(infinite, largest, w)


@in_float32
def _generalized_dice(t: Inputs, p: GeneralizedDiceParams) -> Tensor:
    x, y = prepared(t, p)
    dims = sum_dims(x, p.batch)
    volume = y.sum(dims)
    tp, total = (x * y).sum(dims), x.sum(dims) + volume
    w = _class_weights(volume, p.w_type, p.batch)
    classes = 0 if p.batch else 1
    loss = 1 - (2 * (tp * w).sum(classes) + p.smooth_nr) / ((total * w).sum(classes) + p.smooth_dr)
    return loss.reshape(-1)  # (N,), or (1,) with batch


def _jaccard(t: Inputs, p: JaccardParams) -> Tensor:
    return soft_dice(t, p, jaccard=True)


@in_float32
def _mcc(t: Inputs, p: MCCParams) -> Tensor:
    x, y = prepared(t, p)
    dims = sum_dims(x, p.batch)
    tp = (x * y).sum(dims)
    tn = ((1 - x) * (1 - y)).sum(dims)
    fp = (x * (1 - y)).sum(dims)
    fn = ((1 - x) * y).sum(dims)
    # A perfect prediction scores 0 (the formula gives about 1 where TP or TN is 0 too): there the
    # denominator is replaced by 1 before the square root, so that neither the value nor the
    # gradient passes through 0 / 0.
    perfect = (fp == 0) & (fn == 0)
    product = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) + p.smooth_dr
    mcc = (tp * tn - fp * fn + p.smooth_nr) / torch.where(perfect, 1, product).sqrt()
    return torch.where(perfect, 0, 1 - mcc)


_PER_CLASS = "(N, C'); C' = C, or C - 1 without the background"
_CHECKS = (check_spatial, check_options, check_target)

LOSSES = [
    Loss(
        name="tversky",
        summary=(
            "Tversky loss 1 - (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr) per sample and class, "
            "TP = sum(x y), FP = sum(x (1 - y)), FN = sum((1 - x) y) (MONAI TverskyLoss)."
        ),
        category="segmentation",
        reference="MONAI TverskyLoss",
        roles=(INPUT, target_role()),
        forward=_tversky,
        elementwise_shape=_PER_CLASS,
        params=TverskyParams,
        aliases=("TverskyLoss", "tversky_loss"),
        validate=_CHECKS,
        pooled_when=("batch", True),
    ),
    Loss(
        name="focal_tversky",
        summary=(
            "Focal Tversky loss (1 - TI)^gamma per sample and class, TI the Tversky index of tversky "
            "(Abraham & Khan 2019); mean over samples and classes."
        ),
        category="segmentation",
        reference=(
            "Abraham & Khan 2019, A novel focal Tversky loss function with improved attention U-Net for "
            "lesion segmentation"
        ),
        roles=(INPUT, target_role()),
        forward=_focal_tversky,
        elementwise_shape=_PER_CLASS,
        params=FocalTverskyParams,
        aliases=("FocalTverskyLoss", "focal_tversky_loss"),
        validate=(*_CHECKS, check_probabilities),
        pooled_when=("batch", True),
    ),
    Loss(
        name="generalized_dice",
        summary=(
            "Generalized Dice loss 1 - (2 sum_c w_c TP_c + smooth_nr) / (sum_c w_c (|X_c| + |Y_c|) + smooth_dr) "
            "per sample, w_c = 1 / |Y_c|^2, 1 / |Y_c| or 1 (MONAI GeneralizedDiceLoss)."
        ),
        category="segmentation",
        reference="MONAI GeneralizedDiceLoss",
        roles=(INPUT, target_role(differentiable=False)),
        forward=_generalized_dice,
        elementwise_shape="(N,)",
        params=GeneralizedDiceParams,
        aliases=("GeneralizedDiceLoss", "generalized_dice_loss"),
        validate=_CHECKS,
        pooled_when=("batch", True),
    ),
    Loss(
        name="jaccard",
        summary=(
            "Soft Jaccard (IoU) loss 1 - (2 |X.Y| + smooth_nr) / (2 (|X| + |Y| - |X.Y|) + smooth_dr) per sample "
            "and class (MONAI DiceLoss with jaccard=True)."
        ),
        category="segmentation",
        reference="MONAI DiceLoss(jaccard=True)",
        roles=(INPUT, target_role()),
        forward=_jaccard,
        elementwise_shape=_PER_CLASS,
        params=JaccardParams,
        aliases=("JaccardLoss", "jaccard_loss", "soft_jaccard"),
        validate=(check_spatial, check_options, check_weight, check_target),
        pooled_when=("batch", True),
    ),
    Loss(
        name="mcc",
        summary=(
            "Matthews correlation loss 1 - (TP TN - FP FN + smooth_nr) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN) "
            "+ smooth_dr) per sample and class, 0 where FP = FN = 0 (MONAI MCCLoss)."
        ),
        category="segmentation",
        reference="MONAI MCCLoss",
        roles=(INPUT, target_role()),
        forward=_mcc,
        elementwise_shape=_PER_CLASS,
        params=MCCParams,
        aliases=("MCCLoss", "mcc_loss"),
        validate=(*_CHECKS, check_probabilities),
        pooled_when=("batch", True),
    ),
]
