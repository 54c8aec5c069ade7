"""The seed template, as API.md gives it: ``LOSS_SERVICE_PLUGINS=examples.plugins.template:MyLoss``.

``MyLoss`` returns a scalar: it is served as ``my_loss`` (aliases ``MyLoss``, ``myloss``) with the
param ``param1`` (default 0.0), the roles ``predict`` and ``label``, its value under the reduction
``mean`` and gradients from autograd; it runs alone.

``SquaredError`` takes ``reduction`` as PyTorch's losses do: the service computes it with
``reduction="none"`` and reduces the elementwise values itself (mean, sum or none), so concurrent
requests share one call: ``LOSS_SERVICE_PLUGINS=examples.plugins.template:SquaredError``.
"""

import torch
from torch import nn


class MyLoss(nn.Module):
    def __init__(self, param1: float = 0.0):  # hyper-parameters, typed, with defaults
        super().__init__()
        self.param1 = param1

    def forward(self, predict, label):  # roles, by parameter name
        return torch.mean(torch.pow(predict - label, 2))


class SquaredError(nn.Module):
    """Scaled squared error scale * (predict - label)^2, elementwise (a template that takes reduction)."""

    def __init__(self, scale: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.scale = scale
        self.reduction = reduction

    def forward(self, predict, label):
        el = self.scale * torch.pow(predict - label, 2)
        if self.reduction == "none":
            return el
        return el.sum() if self.reduction == "sum" else el.mean()
