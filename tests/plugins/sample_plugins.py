"""Plugins the tests serve (``tests.plugins.sample_plugins:Name``), and ones no service can serve."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from service.plugins import INTEGER, Checked, ErrorItem, Inputs, Loss, Params, loss_plugin, param_tensor, role


class Fragile(nn.Module):
    """Absolute error that raises (with a detail no client may see) on a negative label."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, predict, label):
        if bool((label < 0).any()):
            raise RuntimeError("negative label in /srv/secret/fragile.py, token=hunter2")
        return (predict - label).abs()


class Typed(nn.Module):
    """Every kind of hyper-parameter a template may take; forward uses each of them."""

    def __init__(
        self,
        scale: float = 1.0,
        power: int = 2,
        absolute: bool = False,
        mode: Literal["sum", "max"] = "sum",
        offset: float | None = None,
        weights: list[float] | None = None,
        pair: tuple[float, float] = (0.0, 1.0),
        floor: Annotated[float, Field(ge=0, description="added to every term")] = 0.0,
        untyped=0.5,
    ):
        super().__init__()
        self.scale, self.power, self.absolute, self.mode = scale, power, absolute, mode
        self.offset, self.weights, self.pair, self.floor, self.untyped = offset, weights, pair, floor, untyped

    def forward(self, predict, label):
        r = predict - label + (self.offset or 0.0)
        r = r.abs() if self.absolute else r
        terms = self.scale * r.pow(self.power) + self.floor + self.untyped * self.pair[0] + self.pair[1]
        if self.weights is not None:
            terms = terms * torch.as_tensor(self.weights, dtype=terms.dtype)
        return terms.sum() if self.mode == "sum" else terms.max()


def _class_indices(checked: Checked) -> list[ErrorItem]:
    target, classes = checked.arrays["target"], checked.binding.size("C")
    bad = (target < 0) | (target >= classes)
    if not bad.any():
        return []
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    return [ErrorItem(("inputs", "target"), f"class index {int(target[at])} out of range [0, {classes}) at {at}")]


def _class_weights(el, inputs: Inputs, params) -> torch.Tensor | None:
    weight = param_tensor(params.weight, el)
    return None if weight is None else weight[inputs["target"]]


@loss_plugin(
    name="weighted_ce",
    aliases=("WCE",),
    summary="Cross entropy with class weights, declared with the richer plugin API.",
    category="classification",
    reference="PyTorch CrossEntropyLoss(weight=...)",
    roles=[role("logits", "(N, C)"), role("target", "(N)", kind=INTEGER, differentiable=False)],
    elementwise_shape="(N)",
    validate=[_class_indices],
    mean_weights=_class_weights,
)
class WeightedCE(nn.Module):
    def __init__(self, weight: list[float] | None = None, reduction: str = "mean"):
        super().__init__()
        self.weight, self.reduction = weight, reduction

    def forward(self, logits, target):
        weight = None if self.weight is None else torch.as_tensor(self.weight, dtype=logits.dtype)
        return F.cross_entropy(logits, target, weight=weight, reduction=self.reduction)


class CubeParams(Params):
    scale: float = Field(1.0, gt=0, description="multiplies every term")


CUBE_ERROR = Loss(
    name="cube_error",
    summary="scale * |x - y|^3, a Loss built with the plugin API and served as it is.",
    category="regression",
    reference="the formula in the summary",
    roles=(role("input", "(*)"), role("target", "(*)")),
    forward=lambda t, p: p.scale * (t["input"] - t["target"]).abs().pow(3),
    elementwise_shape="(*)",
    params=CubeParams,
)


# --- unusable -------------------------------------------------------------------------------


class NoDefault(nn.Module):
    def __init__(self, alpha: float):
        super().__init__()

    def forward(self, input, target):
        return (input - target).mean()


class StarArgs(nn.Module):
    def __init__(self, *args, beta: float = 1.0):
        super().__init__()

    def forward(self, input, target):
        return (input - target).mean()


class TensorParam(nn.Module):
    def __init__(self, weight: torch.Tensor | None = None):
        super().__init__()

    def forward(self, input, target):
        return (input - target).mean()


class NoRoles(nn.Module):
    def forward(self):
        return torch.zeros(())


class StarForward(nn.Module):
    def forward(self, input, **extra):
        return input.mean()


class NoneDefault(nn.Module):
    def __init__(self, margin=None):
        super().__init__()

    def forward(self, input, target):
        return (input - target).mean()


class WrongDefault(nn.Module):
    def __init__(self, margin: float = "wide"):  # type: ignore[assignment]
        super().__init__()

    def forward(self, input, target):
        return (input - target).mean()


class MSELoss(nn.Module):
    """Its name, mse_loss, is looked up as the built-in mse."""

    def forward(self, input, target):
        return ((input - target) ** 2).mean()


@loss_plugin(roles=[role("weights", "(N)")])
class UnknownRole(nn.Module):
    def forward(self, input, target):
        return (input - target).mean()


@loss_plugin(mean_weights=_class_weights)
class WeightsWithoutReduction(nn.Module):
    def forward(self, input, target):
        return (input - target).mean()


def not_a_module(input, target):
    return (input - target).mean()


AN_INSTANCE = MSELoss()


@loss_plugin(name="my-loss")
class SpelledLikeMyLoss(nn.Module):
    def forward(self, predict, label):
        return (predict - label).mean()


class Counted(nn.Module):
    """Counts its instances; keeps a buffer made in __init__ that takes part in the gradient."""

    made = 0

    def __init__(self, scale: float = 1.0, reduction: str = "mean"):
        super().__init__()
        Counted.made += 1
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, input, target):
        return self.scale * (input - target) ** 2


class MyMSE(nn.MSELoss):
    """PyTorch's own MSELoss, subclassed: its __init__ takes size_average, reduce and reduction."""


class NoInit(nn.Module):
    def forward(self, input, target):
        return (input - target).abs().max()


class RowsLost(nn.Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, input, target):
        return (input - target).sum()


class NotScalar(nn.Module):
    def forward(self, input, target):
        return input - target


class PrivateParam(nn.Module):
    def __init__(self, _cache: float = 0.0, json: bool = False):
        super().__init__()
        self.json = json

    def forward(self, input, target):
        return (input - target).mean()


class ShadowingParam(nn.Module):
    """Its param is named like a pydantic method."""

    def __init__(self, json: bool = False):
        super().__init__()
        self.json = json

    def forward(self, input, target):
        return (input - target).abs().mean() if self.json else (input - target).mean()


class OptionalFirst(nn.Module):
    def forward(self, weight=None, input=None):
        return input.mean()


class OptionalWeight(nn.Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, input, target, weight=None):
        el = (input - target) ** 2
        return el if weight is None else el * weight
