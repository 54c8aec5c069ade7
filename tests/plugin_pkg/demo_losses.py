"""Two losses of a plugin distribution, exposed by its entry point ``demo = "demo_losses:LOSSES"``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from service.plugins import Inputs, Loss, Params, role


class PseudoHuberLoss(nn.Module):
    """Pseudo-Huber loss delta^2 (sqrt(1 + ((x - y) / delta)^2) - 1), elementwise."""

    def __init__(self, delta: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.delta, self.reduction = delta, reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        el = self.delta**2 * (torch.sqrt(1 + ((input - target) / self.delta) ** 2) - 1)
        if self.reduction == "none":
            return el
        return el.sum() if self.reduction == "sum" else el.mean()


class LogRatioParams(Params):
    eps: float = Field(1e-6, gt=0, description="added to both sides before the ratio")


def _log_ratio(t: Inputs, p: LogRatioParams) -> torch.Tensor:
    return torch.log((t["input"] + p.eps) / (t["target"] + p.eps)).abs()


LOG_RATIO = Loss(
    name="log_ratio",
    summary="|log((x + eps) / (y + eps))| for positive values, built with the plugin API's Loss.",
    category="regression",
    reference="formula",
    roles=(role("input", "(*)"), role("target", "(*)", differentiable=False)),
    forward=_log_ratio,
    elementwise_shape="(*)",
    params=LogRatioParams,
)

LOSSES = [PseudoHuberLoss, LOG_RATIO]
