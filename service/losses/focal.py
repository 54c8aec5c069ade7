"""Focal losses: multi-class softmax focal and torchvision's binary sigmoid focal."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from . import shared
from .base import Checked, Inputs, Loss, Params, param_tensor
from .checks import class_indices, in_range, param_length
from .contract import INTEGER, role

Gamma = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ClassWeight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FocalParams(Params):
    gamma: Gamma = Field(2.0, description="focusing exponent on (1 - p_t); 0 gives cross entropy")
    alpha: list[ClassWeight] | None = Field(
        None, description="one weight per class (C values), applied to each element's target class"
    )
    ignore_index: int = Field(-100, description="target value whose elements give 0 and are left out of the mean")


class SigmoidFocalParams(Params):
    alpha: float | None = Field(
        0.25,
        ge=-1,
        le=1,
        allow_inf_nan=False,
        description="weight of the positives in [0, 1] (negatives get 1 - alpha); -1 or null disables it",
    )
    gamma: Gamma = Field(2.0, description="focusing exponent on (1 - p_t)")


def _focusing(miss: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma, with 1 - p_t kept off 0 by the dtype's smallest normal number: where p_t
    rounds to 1 the gradient is then its true limit 0, not 0 * inf = NaN (0 < gamma < 1), and the
    value moves only there, by at most tiny^gamma times an elementwise loss that is ~0 anyway."""
    return miss.clamp_min(torch.finfo(miss.dtype).tiny) ** gamma


def _kept(t: Inputs, p: FocalParams) -> Tensor:
    return t["target"] != p.ignore_index


def _focal(t: Inputs, p: FocalParams) -> Tensor:
    x, kept = t["input"], _kept(t, p)
    target = torch.where(kept, t["target"], 0)
    log_pt = shared.log_softmax(x, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -_focusing(-log_pt.expm1(), p.gamma) * log_pt  # -expm1: 1 - p_t, accurate as p_t -> 1
    if p.alpha is not None:
        loss = loss * param_tensor(p.alpha, x)[target]
    return loss.masked_fill(~kept, 0)


def _focal_weights(el: Tensor, t: Inputs, p: FocalParams) -> Tensor:
    """The mean is over the non-ignored elements."""
    return _kept(t, p).to(el.dtype)


def _sigmoid_focal(t: Inputs, p: SigmoidFocalParams) -> Tensor:
    x, y = t["input"], t["target"]
    prob = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = prob * y + (1 - prob) * (1 - y)
    loss = ce * _focusing(1 - p_t, p.gamma)
    if p.alpha is not None and p.alpha >= 0:
        loss = loss * (p.alpha * y + (1 - p.alpha) * (1 - y))
    return loss


def _check_focal(c: Checked) -> list[ErrorItem]:
    classes = c.binding.size("C")
    return class_indices(c.arrays["target"], classes, "target", c.params.ignore_index) + param_length(
        c.params.alpha, classes, "C", "alpha"
    )


def _check_sigmoid_focal(c: Checked) -> list[ErrorItem]:
    errors = in_range(c.arrays["target"], 0, 1, "target")
    alpha = c.params.alpha
    if alpha is not None and alpha < 0 and alpha != -1:
        msg = f"expected a value in [0, 1], or -1 or null to disable; got {alpha:g}"
        errors.append(ErrorItem(("loss", "params", "alpha"), msg))
    return errors


LOSSES = [
    Loss(
        name="focal",
        summary=(
            "Multi-class focal loss -alpha[t] (1 - p_t)^gamma log p_t, p_t the softmax probability of the "
            "target class (Lin et al. 2017); mean over the elements not ignored."
        ),
        category="classification",
        reference="formula",
        roles=(
            role("input", "(N, C, *)", description="logits"),
            role(
                "target",
                "(N, *)",
                kind=INTEGER,
                differentiable=False,
                description="class indices in [0, C), or ignore_index",
            ),
        ),
        forward=_focal,
        mean_weights=_focal_weights,
        elementwise_shape="(N, *)",
        params=FocalParams,
        aliases=("FocalLoss", "focal_loss", "softmax_focal"),
        validate=(_check_focal,),
    ),
    Loss(
        name="sigmoid_focal",
        summary=(
            "Binary focal loss on logits, BCE (1 - p_t)^gamma weighted by alpha / 1 - alpha "
            "(torchvision ops.sigmoid_focal_loss)."
        ),
        category="classification",
        reference="torchvision",
        roles=(
            role("input", "(*)", description="logits"),
            role("target", "(*)", description="same shape as the input; labels or probabilities in [0, 1]"),
        ),
        forward=_sigmoid_focal,
        elementwise_shape="(*)",
        params=SigmoidFocalParams,
        aliases=("sigmoid_focal_loss", "SigmoidFocalLoss"),
        validate=(_check_sigmoid_focal,),
    ),
]
