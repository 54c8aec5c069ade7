"""What the overlap segmentation losses share (dice, jaccard, tversky, focal_tversky,
generalized_dice, mcc): MONAI's conventions for an input ``(N, C, *)`` of scores and a target that
is one-hot / probabilities ``(N, C, *)`` or class indices ``(N, *)`` / ``(N, 1, *)``, the options
``include_background``, ``sigmoid`` and ``softmax``, and the checks that go with them."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..arrays import first_value, position
from ..errors import ErrorItem
from . import shared
from .base import Checked, Inputs
from .checks import class_indices, in_range, param_length
from .contract import FLOAT, INTEGER, Role, fmt_shape, form, role


class Options(Protocol):
    """The params every overlap loss has (pydantic fields satisfy these read-only attributes)."""

    @property
    def include_background(self) -> bool: ...
    @property
    def sigmoid(self) -> bool: ...
    @property
    def softmax(self) -> bool: ...


INPUT = role("input", "(N, C, *)", description="scores or probabilities (logits with sigmoid or softmax)")


def target_role(differentiable: bool = True) -> Role:
    """The target: float one-hot / probabilities of the input's shape, or integer class indices."""
    gradient = "differentiable" if differentiable else "no gradient"
    return role(
        "target",
        form("(N, C, *)", FLOAT, "float one-hot or probabilities in [0, 1]"),
        form("(N, *)", INTEGER, "integer class indices"),
        form("(N, 1, *)", INTEGER, "integer class indices"),
        differentiable=differentiable,
        description=f"one-hot / probabilities ({gradient}), or class indices in [0, C), one-hot encoded",
    )


def one_hot(target: Tensor, like: Tensor) -> Tensor:
    """Class indices (N, *) or (N, 1, *) -> (N, C, *) in the input's dtype (MONAI's to_onehot_y)."""
    indices = target.reshape(like.shape[:1] + like.shape[2:])
    return F.one_hot(indices, like.shape[1]).movedim(-1, 1).to(like.dtype)


def prepared(t: Inputs, p: Options) -> tuple[Tensor, Tensor]:
    """The input after its activation and the one-hot target, the background dropped if asked."""
    x, y = t["input"], t["target"]
    if not y.is_floating_point():
        y = one_hot(y, x)
    if p.sigmoid:
        x = torch.sigmoid(x)
    if p.softmax:
        x = _softmax(x)
    if not p.include_background:
        x, y = x[:, 1:], y[:, 1:]
    return x, y


def _softmax(x: Tensor) -> Tensor:
    """The softmax over the classes; in float32 and float64 as the exp of the log-softmax, which
    the request's other losses (cross_entropy, focal) share (service.losses.shared). (float16 and
    bfloat16 keep torch.softmax, which works in float32: a log-softmax rounded to them first would
    cost the probabilities several ulps.)"""
    if x.dtype in (torch.float32, torch.float64):
        return shared.log_softmax(x, 1).exp()
    return torch.softmax(x, dim=1)


def sum_dims(x: Tensor, batch: bool) -> list[int]:
    """The dimensions a per-class sum runs over: the spatial ones, and the batch with batch=true."""
    return ([0] if batch else []) + list(range(2, x.ndim))


def scored(c: Checked) -> tuple[int, str]:
    """How many classes are scored, and the letter naming that count."""
    classes = c.binding.size("C")
    return (classes, "C") if c.params.include_background else (classes - 1, "C - 1")


def check_spatial(c: Checked) -> list[ErrorItem]:
    if c.binding.dims["*"]:
        return []
    shape = fmt_shape(c.arrays["input"].shape)
    return [ErrorItem(("inputs", "input"), f"expected at least one spatial dimension after (N, C); got {shape}")]


def check_options(c: Checked) -> list[ErrorItem]:
    p, classes = c.params, c.binding.size("C")
    errors = []
    if p.sigmoid and p.softmax:
        errors.append(ErrorItem(("loss", "params", "softmax"), "softmax and sigmoid cannot both be true"))
    elif p.softmax and classes == 1:
        errors.append(ErrorItem(("loss", "params", "softmax"), "softmax needs C > 1 classes; got C = 1"))
    if not p.include_background and classes == 1:
        msg = "include_background=false drops class 0 and needs C > 1 classes; got C = 1"
        errors.append(ErrorItem(("loss", "params", "include_background"), msg))
    return errors


def check_weight(c: Checked) -> list[ErrorItem]:
    """A list ``weight`` has one value per scored class."""
    count, letter = scored(c)
    if not isinstance(c.params.weight, list) or count == 0:
        return []
    return param_length(c.params.weight, count, letter, "weight")


def check_target(c: Checked) -> list[ErrorItem]:
    target, classes = c.arrays["target"], c.binding.size("C")
    if c.binding.forms["target"].kind == FLOAT:
        return in_range(target, 0, 1, "target")
    if classes == 1:
        msg = "class-index targets need C > 1 classes; with C = 1 send a float mask of the input's shape"
        return [ErrorItem(("inputs", "target"), msg)]
    return class_indices(target, classes, "target")


def check_probabilities(c: Checked) -> list[ErrorItem]:
    """Without sigmoid or softmax the input is taken as probabilities: for the losses whose formula
    has no value outside [0, 1] (a square root or a fractional power of a negative number)."""
    p, x = c.params, c.arrays["input"]
    if p.sigmoid or p.softmax:
        return []
    bad = (x < 0) | (x > 1)
    if not bad.any():
        return []
    msg = (
        f"expected probabilities in [0, 1] (no sigmoid or softmax is applied); got {first_value(x, bad)} "
        f"at position {position(x, bad)}"
    )
    return [ErrorItem(("inputs", "input"), msg)]
