"""Pointwise regression losses: l1, mse, smooth_l1, huber."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from .base import Inputs, Loss, Params
from .contract import role

SAME = (role("input", "(*)"), role("target", "(*)", description="same shape as the input"))


class SmoothL1Params(Params):
    beta: float = Field(1.0, ge=0, description="where the loss turns from quadratic to linear")


class HuberParams(Params):
    delta: float = Field(1.0, gt=0, description="where the loss turns from quadratic to linear")


def _l1(t: Inputs, p: Params):
    return F.l1_loss(t["input"], t["target"], reduction="none")


def _mse(t: Inputs, p: Params):
    return F.mse_loss(t["input"], t["target"], reduction="none")


def _smooth_l1(t: Inputs, p: SmoothL1Params):
    return F.smooth_l1_loss(t["input"], t["target"], reduction="none", beta=p.beta)


def _huber(t: Inputs, p: HuberParams):
    return F.huber_loss(t["input"], t["target"], reduction="none", delta=p.delta)


LOSSES = [
    Loss(
        name="l1",
        summary="Mean absolute error |x - y| (PyTorch L1Loss).",
        category="regression",
        reference="pytorch",
        roles=SAME,
        forward=_l1,
        elementwise_shape="(*)",
        aliases=("L1Loss", "l1_loss", "mae"),
    ),
    Loss(
        name="mse",
        summary="Mean squared error (x - y)^2 (PyTorch MSELoss).",
        category="regression",
        reference="pytorch",
        roles=SAME,
        forward=_mse,
        elementwise_shape="(*)",
        aliases=("MSELoss", "mse_loss"),
    ),
    Loss(
        name="smooth_l1",
        summary="Smooth L1: 0.5 (x - y)^2 / beta below beta, |x - y| - 0.5 beta above (PyTorch SmoothL1Loss).",
        category="regression",
        reference="pytorch",
        roles=SAME,
        forward=_smooth_l1,
        params=SmoothL1Params,
        elementwise_shape="(*)",
        aliases=("SmoothL1Loss", "smooth_l1_loss"),
    ),
    Loss(
        name="huber",
        summary="Huber: 0.5 (x - y)^2 below delta, delta (|x - y| - 0.5 delta) above (PyTorch HuberLoss).",
        category="regression",
        reference="pytorch",
        roles=SAME,
        forward=_huber,
        params=HuberParams,
        elementwise_shape="(*)",
        aliases=("HuberLoss", "huber_loss"),
    ),
]
