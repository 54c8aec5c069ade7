"""Robust regression losses: kornia's Charbonnier, Cauchy, Geman-McClure and Welsch losses (Barron's
general loss at scale 1), log-cosh, and the quantile (pinball) loss.

Each is written so that no intermediate overflows where the loss itself is finite (a residual of
1e20 in float32 gives its loss, not inf - inf or inf / inf) and no gradient is NaN where the loss
is smooth. As kornia does for its four, the robust losses evaluate float16 and bfloat16 residuals
in float32 (gradients included) and return the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params
from .checks import param_length
from .contract import role

SAME = (
    role("input", "(*)", description="predictions"),
    role("target", "(*)", description="same shape as the input"),
)
HALF = (torch.float16, torch.bfloat16)
LOG2 = math.log(2.0)
CAUCHY_FAR = 2.0**8  # beyond it log1p(d^2 / 2) is taken as 2 log|d| - log 2 + log1p(2 / d^2): no d^2


def _residual_loss(fn: Callable[[Tensor], Tensor]) -> Callable[[Inputs, Params], Tensor]:
    """The forward of a loss of the residual ``input - target``, in float32 for half precision."""

    def forward(t: Inputs, p: Params) -> Tensor:
        x, y = t["input"], t["target"]
        if x.dtype in HALF:
            return fn(x.float() - y.float()).to(x.dtype)
        return fn(x - y)

    return forward


def _charbonnier(d: Tensor) -> Tensor:
    """sqrt(d^2 + 1) - 1 = d^2 / (sqrt(d^2 + 1) + 1), as d * (d / (hypot(d, 1) + 1)): no
    cancellation near 0, no overflow of d^2 far from it."""
    return d * (d / (torch.hypot(d, torch.ones_like(d)) + 1))


def _cauchy(d: Tensor) -> Tensor:
    """log(d^2 / 2 + 1)."""
    far = d.abs() > CAUCHY_FAR
    near_d = torch.where(far, 0, d)  # each branch sees only its own residuals: no inf, no NaN gradient
    far_d = torch.where(far, d, CAUCHY_FAR).abs()
    near = torch.log1p(0.5 * near_d.square())
    return torch.where(far, 2 * far_d.log() - LOG2 + torch.log1p(2 / far_d.square()), near)


def _geman_mcclure(d: Tensor) -> Tensor:
    """2 d^2 / (d^2 + 4) = 2 (u / hypot(u, 1))^2 with u = d / 2 (exact): bounded, no overflow."""
    u = d / 2
    return 2 * (u / torch.hypot(u, torch.ones_like(u))).square()


def _welsch(d: Tensor) -> Tensor:
    """1 - exp(-d^2 / 2), as -expm1: accurate near 0, 1 where d^2 overflows."""
    return -torch.expm1(-0.5 * d.square())


def _log_cosh(d: Tensor) -> Tensor:
    """log(cosh(d)): log1p(2 sinh(d / 2)^2) for |d| <= 1 (accurate near 0), and
    |d| + log1p(exp(-2 |d|)) - log 2 beyond (cosh would overflow). The gradient is tanh(d)."""
    a = d.abs()
    near = a <= 1
    near_d = torch.where(near, d, 0)  # sinh of a large d would overflow: a NaN gradient through where
    small = torch.log1p(2 * torch.sinh(near_d / 2).square())
    large = a + F.softplus(-2 * a) - LOG2
    return torch.where(near, small, large)


# -- quantile ---------------------------------------------------------------------------------------

Quantile = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class QuantileParams(Params):
    quantiles: list[Quantile] = Field(
        [0.5],
        min_length=1,
        description="the quantile levels q in (0, 1), one per prediction in the input's last dimension (Q values)",
    )


def _quantile(t: Inputs, p: QuantileParams) -> Tensor:
    x, y = t["input"], t["target"]
    q = torch.tensor(p.quantiles, dtype=x.dtype, device=x.device)
    below = torch.tensor([v - 1 for v in p.quantiles], dtype=x.dtype, device=x.device)  # q - 1, rounded once
    e = y.unsqueeze(-1) - x
    # max(q e, (q - 1) e) is q e where e >= 0, (q - 1) e below: one rounding, and at e = 0 the value
    # +0 and the one-sided derivative q (torch.maximum would pick either zero and halve the gradient)
    return e * torch.where(e >= 0, q, below)


def _check_quantiles(c: Checked) -> list[ErrorItem]:
    return param_length(c.params.quantiles, c.binding.size("Q"), "Q", "quantiles")


# -- the catalog ------------------------------------------------------------------------------------

KORNIA = "kornia.losses.{}_loss"
SCALE = "at scale c = 1 (no scale parameter: divide input and target by c for another)"


def _kornia(name: str, cls: str, formula: str, fn: Callable[[Tensor], Tensor], alpha: str, *aliases: str) -> Loss:
    return Loss(
        name=name,
        summary=f"{formula}, Barron's general robust loss with alpha = {alpha} {SCALE} (kornia {cls}).",
        category="regression",
        reference=KORNIA.format(name),
        roles=SAME,
        forward=_residual_loss(fn),
        elementwise_shape="(*)",
        aliases=(cls, f"{name}_loss", *aliases),
    )


LOSSES = [
    _kornia("charbonnier", "CharbonnierLoss", "Charbonnier (L1-L2) loss sqrt((x - y)^2 + 1) - 1", _charbonnier, "1"),
    _kornia("cauchy", "CauchyLoss", "Cauchy (Lorentzian) loss log((x - y)^2 / 2 + 1)", _cauchy, "0", "lorentzian"),
    _kornia(
        "geman_mcclure",
        "GemanMcclureLoss",
        "Geman-McClure loss 2 (x - y)^2 / ((x - y)^2 + 4)",
        _geman_mcclure,
        "-2",
    ),
    _kornia("welsch", "WelschLoss", "Welsch (Leclerc) loss 1 - exp(-(x - y)^2 / 2)", _welsch, "-infinity", "leclerc"),
    Loss(
        name="log_cosh",
        summary="Log-cosh loss log(cosh(x - y)), computed stably for large differences (the formula).",
        category="regression",
        reference="formula",
        roles=SAME,
        forward=_residual_loss(_log_cosh),
        elementwise_shape="(*)",
        aliases=("LogCoshLoss", "log_cosh_loss"),
    ),
    Loss(
        name="quantile",
        summary=(
            "Quantile (pinball) loss max(q (y - x_q), (q - 1) (y - x_q)) for each quantile level q and its "
            "prediction x_q in the input's last dimension (Koenker and Bassett 1978)."
        ),
        category="regression",
        reference="formula",
        roles=(
            role("input", "(N, *, Q)", description="one prediction per quantile level, in the last dimension"),
            role("target", "(N, *)", description="the observed values"),
        ),
        forward=_quantile,
        elementwise_shape="(N, *, Q)",
        params=QuantileParams,
        aliases=("QuantileLoss", "quantile_loss", "pinball", "pinball_loss"),
        validate=(_check_quantiles,),
    ),
]
