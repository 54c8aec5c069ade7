"""dice_ce: the named composite lambda_dice * Dice + lambda_ce * cross entropy (MONAI ``DiceCELoss``).

Its params expand into two catalog losses on the same tensors: ``dice`` with the Dice options and
the class weights (without the background's when it is left out), and ``cross_entropy`` with the
same class weights and the label smoothing; with one class (C = 1), ``bce_with_logits`` with the
weight as ``pos_weight``, as MONAI does. Integer class indices of shape (N, 1, *) are taken as
MONAI takes them (the channel squeezed for the cross entropy), and integer one-hot targets of the
input's shape as probabilities.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field
from torch import Tensor

from ..codecs.tensors import Decoded
from ..dtypes import FLOAT_DTYPES
from .base import Inputs, Loss, Params
from .composite import Term
from .dice import DiceParams, Weight
from .segmentation import INPUT, target_role

Lambda = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DiceCEParams(DiceParams):
    """dice's params (the Dice term's options), with class weights for both terms and the terms'
    weights. (``jaccard`` is MONAI's DiceCELoss option too.)"""

    weight: list[Weight] | None = Field(
        None, description="class weights (C values), used by both terms (the Dice term's without the background's)"
    )
    lambda_dice: Lambda = Field(1.0, description="the weight of the Dice term")
    lambda_ce: Lambda = Field(1.0, description="the weight of the cross entropy term")
    label_smoothing: float = Field(0.0, ge=0, le=1, description="cross entropy term: label smoothing")


_DICE_OPTIONS = (
    "include_background", "sigmoid", "softmax", "squared_pred", "jaccard", "smooth_nr", "smooth_dr", "batch",
)  # fmt: skip


def _expand(p: DiceCEParams, reduction: str, tensors: dict[str, Decoded]) -> tuple[list[Term], dict[str, Decoded]]:
    dice: dict[str, Any] = {k: getattr(p, k) for k in _DICE_OPTIONS}
    if p.weight is not None:
        dice["weight"] = p.weight if p.include_background else p.weight[1:]
    x, y = tensors.get("input"), tensors.get("target")
    classes = x.array.shape[1] if x is not None and x.array.ndim >= 2 else None
    if x is not None and y is not None and _integral(y):
        if y.array.ndim == x.array.ndim and y.array.shape[1] == 1 and classes != 1:
            y = Decoded(np.squeeze(y.array, 1), y.dtype)  # (N, 1, *) indices: (N, *)
        elif y.array.shape == x.array.shape:
            y = Decoded(y.array.astype(x.array.dtype), x.dtype)  # integer one-hot: probabilities
        tensors = {**tensors, "target": y}
    if classes == 1:
        pos_weight = {"pos_weight": p.weight} if p.weight is not None else {}
        second = Term("bce_with_logits", pos_weight, reduction, p.lambda_ce)
    else:
        ce: dict[str, Any] = {"label_smoothing": p.label_smoothing}
        if p.weight is not None:
            ce["weight"] = p.weight
        second = Term("cross_entropy", ce, reduction, p.lambda_ce)
    return [Term("dice", dice, reduction, p.lambda_dice), second], tensors


def _integral(t: Decoded) -> bool:
    """Whether a tensor holds integers (a stated integer dtype, or whole numbers with none stated)."""
    if t.dtype is not None:
        return t.dtype not in FLOAT_DTYPES
    return t.array.dtype.kind in "iub"


def _through_terms(t: Inputs, p: Params) -> Tensor:
    raise TypeError("dice_ce is computed through its terms (losses.composite)")


LOSSES = [
    Loss(
        name="dice_ce",
        summary=(
            "lambda_dice * Dice + lambda_ce * cross entropy on the same logits, one gradient for the sum "
            "(MONAI DiceCELoss); reported with each term's value."
        ),
        category="segmentation",
        reference="MONAI DiceCELoss",
        roles=(INPUT, target_role(differentiable=False)),
        forward=_through_terms,
        elementwise_shape="() none: the value is a weighted sum of two reduced losses",
        params=DiceCEParams,
        reductions=("mean", "sum"),
        aliases=("DiceCELoss", "dicece"),
        decomposable=False,
        expand=_expand,
    ),
]
