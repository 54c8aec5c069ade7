"""Classic classification losses: poly1, binary focal on probabilities, the hinge family
(hinge, squared_hinge, exponential) and the 0-1 loss (the error rate)."""

from __future__ import annotations

import functools
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, NoParams, Params, param_tensor
from .checks import class_indices, one_of, per_class, probabilities
from .classification import NLLParams
from .contract import INTEGER, role

Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Gamma = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Poly1Params(NLLParams):
    epsilon: float = Field(
        1.0,
        ge=-1,
        allow_inf_nan=False,
        description="the coefficient added to the first polynomial term (1 - p_t) of cross entropy; >= -1",
    )


class BinaryFocalParams(Params):
    alpha: Unit = Field(0.25, description="weight of the positive term; the negative term gets 1 - alpha")
    gamma: Gamma = Field(2.0, description="focusing exponent on (1 - p) for positives and p for negatives")
    eps: float = Field(
        1e-8, gt=0, lt=0.5, allow_inf_nan=False, description="p is clipped to [eps, 1 - eps] before the logs"
    )


# -- poly1 ----------------------------------------------------------------------------------------


def _kept(t: Inputs, p: NLLParams) -> Tensor:
    return t["target"] != p.ignore_index


def _poly1(t: Inputs, p: Poly1Params) -> Tensor:
    x, kept = t["input"], _kept(t, p)
    target = torch.where(kept, t["target"], 0)
    log_pt = F.log_softmax(x, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    ce = -log_pt
    if p.weight is not None:
        ce = ce * param_tensor(p.weight, x)[target]
    # 1 - p_t as -expm1(log p_t): accurate as p_t -> 1, where 1 - exp(log p_t) cancels
    return (ce - p.epsilon * log_pt.expm1()).masked_fill(~kept, 0)


def _poly1_weights(el: Tensor, t: Inputs, p: Poly1Params) -> Tensor:
    """cross_entropy's weighted mean: divided by the sum of weight[target] over the elements kept."""
    kept = _kept(t, p)
    if p.weight is None:
        return kept.to(el.dtype)
    return param_tensor(p.weight, el)[t["target"].masked_fill(~kept, 0)] * kept


def _check_poly1(c: Checked) -> list[ErrorItem]:
    return class_indices(c.arrays["target"], c.binding.size("C"), "target", c.params.ignore_index)


# -- binary focal ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # eps is the client's: a bounded cache
def _clip_bounds(eps: float, dtype: torch.dtype) -> tuple[float, float]:
    """[eps, 1 - eps] as values of ``dtype``: each bound rounded to the nearest value of the dtype,
    except that the interval stays inside (0, 1): 1 - eps that rounds to 1 (float32 and below for
    eps 1e-8) becomes the largest value below 1, and eps below the dtype's smallest normal number
    (float16 for 1e-8) becomes that number, so that both logs and their gradients stay finite."""
    low = torch.tensor(max(eps, torch.finfo(dtype).tiny), dtype=dtype)
    high = torch.tensor(1 - eps, dtype=dtype)
    if high.item() == 1:
        high = torch.nextafter(high, torch.zeros_like(high))
    return low.item(), high.item()


def _binary_focal(t: Inputs, p: BinaryFocalParams) -> Tensor:
    x, y = t["input"], t["target"]
    low, high = _clip_bounds(p.eps, x.dtype)
    pos = x.clamp(low, high)
    # 1 - clip(p) is clip(1 - p), taken from 1 - p, which is exact where p is near 1 (p >= 1/2):
    # so at p = 1 in float32, log(1 - p) is log(eps), as the formula in exact arithmetic gives.
    neg = (1 - x).clamp(low, high)
    return -p.alpha * y * neg.pow(p.gamma) * pos.log() - (1 - p.alpha) * (1 - y) * pos.pow(p.gamma) * neg.log()


# -- the hinge family -----------------------------------------------------------------------------


def _margins(t: Inputs) -> Tensor:
    """y f, the signed margin of each score."""
    return t["target"] * t["input"]


def _hinge(t: Inputs, p: Params) -> Tensor:
    return F.relu(1 - _margins(t))


def _squared_hinge(t: Inputs, p: Params) -> Tensor:
    return F.relu(1 - _margins(t)).square()


def _exponential(t: Inputs, p: Params) -> Tensor:
    return torch.exp(-_margins(t))


def _labels(c: Checked) -> list[ErrorItem]:
    return one_of(c.arrays["target"], (1, -1), "target")


# -- zero-one -------------------------------------------------------------------------------------


def _zero_one(t: Inputs, p: Params) -> Tensor:
    x = t["input"]
    return (x.argmax(dim=1) != t["target"]).to(x.dtype)  # argmax: the first of equal maxima


def _check_zero_one(c: Checked) -> list[ErrorItem]:
    return class_indices(c.arrays["target"], c.binding.size("C"), "target")


# -- roles ----------------------------------------------------------------------------------------

SCORES = role("input", "(*)", description="real-valued scores f(x) (logits, margins)")
LABELS = role("target", "(*)", differentiable=False, description="labels 1 or -1, same shape as the input")
CLASS_INDICES = role(
    "target", "(N, *)", kind=INTEGER, differentiable=False, description="class indices in [0, C) or ignore_index"
)


def _margin_loss(name: str, summary: str, forward, aliases: tuple[str, ...]) -> Loss:
    return Loss(
        name=name,
        summary=summary,
        category="margin",
        reference="formula",
        roles=(SCORES, LABELS),
        forward=forward,
        elementwise_shape="(*)",
        params=NoParams,
        aliases=aliases,
        validate=(_labels,),
    )


LOSSES = [
    Loss(
        name="poly1",
        summary=(
            "Poly-1 loss w[t] (-log p_t) + epsilon (1 - p_t), p_t the softmax probability of the target class, "
            "the class weight w on the cross-entropy term only, the mean cross_entropy's (divided by the sum of "
            "w[t] over the elements not ignored) (Leng et al. 2022)."
        ),
        category="classification",
        reference="Leng et al. 2022, PolyLoss (Poly-1)",
        roles=(role("input", "(N, C, *)", description="unnormalized scores (logits) per class"), CLASS_INDICES),
        forward=_poly1,
        elementwise_shape="(N, *)",
        params=Poly1Params,
        mean_weights=_poly1_weights,
        aliases=("Poly1Loss", "poly1_loss", "poly1_cross_entropy", "PolyLoss"),
        validate=(_check_poly1, per_class("weight")),
    ),
    Loss(
        name="binary_focal",
        summary=(
            "Binary focal loss on probabilities, -alpha y (1 - p)^gamma log p - (1 - alpha) (1 - y) p^gamma "
            "log(1 - p), p clipped to [eps, 1 - eps] (Lin et al. 2017)."
        ),
        category="classification",
        reference="formula",
        roles=(
            role("input", "(*)", description="probabilities in [0, 1]"),
            role("target", "(*)", description="labels 0 or 1 (or probabilities in [0, 1]), same shape as the input"),
        ),
        forward=_binary_focal,
        elementwise_shape="(*)",
        params=BinaryFocalParams,
        aliases=("BinaryFocalLoss", "binary_focal_loss"),
        validate=(probabilities("input"), probabilities("target")),
    ),
    _margin_loss(
        "hinge",
        "Hinge loss max(0, 1 - y f) of scores f against labels y = 1 or -1 (the SVM loss).",
        _hinge,
        ("HingeLoss", "hinge_loss"),
    ),
    _margin_loss(
        "squared_hinge",
        "Squared hinge loss max(0, 1 - y f)^2 of scores f against labels y = 1 or -1.",
        _squared_hinge,
        ("SquaredHingeLoss", "squared_hinge_loss"),
    ),
    _margin_loss(
        "exponential",
        "Exponential loss exp(-y f) of scores f against labels y = 1 or -1 (AdaBoost's loss).",
        _exponential,
        ("ExponentialLoss", "exponential_loss"),
    ),
    Loss(
        name="zero_one",
        summary=("0-1 loss 1[argmax_c input != target], ties going to the first maximum; its mean is the error rate."),
        category="classification",
        reference="formula",
        roles=(
            role(
                "input",
                "(N, C, *)",
                differentiable=False,
                description="scores per class (no gradient: piecewise constant)",
            ),
            role("target", "(N, *)", kind=INTEGER, differentiable=False, description="class indices in [0, C)"),
        ),
        forward=_zero_one,
        elementwise_shape="(N, *)",
        aliases=("ZeroOneLoss", "zero_one_loss", "error_rate", "misclassification"),
        validate=(_check_zero_one,),
    ),
]
