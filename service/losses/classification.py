"""Classification and likelihood losses: cross_entropy, nll, bce, bce_with_logits, kl_div,
poisson_nll, gaussian_nll."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PlainValidator, WithJsonSchema
from torch import Tensor

from ..errors import ErrorItem
from . import shared
from .base import Checked, Inputs, Loss, Params, Validator, param_tensor, row_counts, row_sums, rows
from .checks import (
    at_least,
    class_indices,
    in_range,
    param_broadcasts,
    per_class,
    probabilities,
)
from .contract import INTEGER, Role, form, role

Finite = Annotated[float, Field(allow_inf_nan=False)]
Eps = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]


def _nested(value: Any) -> Any:
    """A finite number or (nested) lists of them, as floats."""
    if isinstance(value, list):
        return [_nested(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError("expected a finite number or nested lists of finite numbers")


# One error for any misfit (a recursive union would report one per branch); shapes are checked later.
Nested = Annotated[
    Any,
    PlainValidator(lambda v: None if v is None else _nested(v)),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "array"}, {"type": "null"}]}),
]

# --- params -------------------------------------------------------------------------------------


class NLLParams(Params):
    weight: list[Finite] | None = Field(None, description="a rescaling weight per class (C values)")
    ignore_index: Int64 = Field(-100, description="a target value that is ignored and adds no weight")


class CrossEntropyParams(NLLParams):
    label_smoothing: float = Field(
        0.0, ge=0, le=1, description="mixes the target with the uniform distribution over C classes"
    )


class BCEParams(Params):
    weight: Nested = Field(None, description="a rescaling weight broadcastable to the input")


class BCEWithLogitsParams(BCEParams):
    pos_weight: Nested = Field(
        None, description="a weight of positive examples broadcastable to the input, e.g. one per class"
    )


class KLDivParams(Params):
    log_target: bool = Field(False, description="whether the target is given as log-probabilities")


class PoissonNLLParams(Params):
    log_input: bool = Field(
        True, description="loss exp(input) - target * input instead of input - target * log(input + eps)"
    )
    full: bool = Field(False, description="add the Stirling approximation term for targets above 1")
    eps: Eps = Field(1e-8, description="added to the input inside the log when log_input is false")


class GaussianNLLParams(Params):
    full: bool = Field(False, description="add the constant 0.5 * log(2 pi)")
    eps: Eps = Field(1e-6, description="var is clamped to at least eps, for stability")


# --- helpers ------------------------------------------------------------------------------------


def _class_weights(el: Tensor, t: Inputs, p: NLLParams) -> Tensor | None:
    """Class indices: the mean divides by sum(weight[target]) over non-ignored targets;
    probabilities: by the element count."""
    target = t["target"]
    if target.is_floating_point():
        return None
    kept = target != p.ignore_index
    weight = param_tensor(p.weight, el)
    return kept.to(el.dtype) if weight is None else weight[target.masked_fill(~kept, 0)] * kept


def _kl_terms(el: Tensor, t: Inputs, p: KLDivParams, reduction: str) -> tuple[Tensor, Tensor]:
    """Each sample's sum, over its element count (mean: PyTorch's mean over every element) or over
    1 (batchmean: the sum over N, the input's first dim; a 0-d input's sum)."""
    count = torch.ones(rows(el), dtype=torch.float64, device=el.device) if reduction == "batchmean" else row_counts(el)
    return row_sums(el), count


def _spans_no_batch(*names: str) -> Callable[[Any, dict[str, np.ndarray]], bool]:
    """Batchable unless a tensor param spans the input's first dim (same rank, first size over 1):
    such a weight would not broadcast to requests concatenated along it."""

    def batchable(p: Params, arrays: dict[str, np.ndarray]) -> bool:
        rank = arrays["input"].ndim
        values = [getattr(p, n) for n in names]
        return all(v is None or np.ndim(v) < rank or np.shape(v)[0] == 1 for v in values)

    return batchable


# --- checks -------------------------------------------------------------------------------------


def _class_target(c: Checked) -> list[ErrorItem]:
    target = c.arrays["target"]
    if c.binding.forms["target"].kind == INTEGER:
        return class_indices(target, c.binding.size("C"), "target", c.params.ignore_index)
    errors = in_range(target, 0, 1, "target")
    if c.params.ignore_index != -100:  # PyTorch ignores no class of a probability target, and refuses it
        errors.append(
            ErrorItem(
                ("loss", "params", "ignore_index"),
                "applies to class-index targets only; with class probabilities as the target leave it at "
                f"-100; got {c.params.ignore_index}",
            )
        )
    return errors


def _nonnegative(name: str, when: Callable[[Any], bool] = lambda p: True) -> Validator:
    """``name`` >= 0, for params where ``when(params)`` holds."""
    return lambda c: at_least(c.arrays[name], 0, name) if when(c.params) else []


def _broadcasts_to_input(name: str) -> Validator:
    """The param broadcasts to the input's shape without growing it (torch multiplies in place)."""

    def check(c: Checked) -> list[ErrorItem]:
        return param_broadcasts(getattr(c.params, name), tuple(c.arrays["input"].shape), name)

    return check


# --- forwards -----------------------------------------------------------------------------------


def _cross_entropy(t: Inputs, p: CrossEntropyParams) -> Tensor:
    x, target = t["input"], t["target"]
    if shared.active() and p.label_smoothing == 0 and not target.is_floating_point():
        # what F.cross_entropy computes for class indices (bitwise), with the log-softmax shared
        # with the request's other losses (service.losses.shared)
        weight = param_tensor(p.weight, x)
        return F.nll_loss(shared.log_softmax(x, 1), target, weight, ignore_index=p.ignore_index, reduction="none")
    return F.cross_entropy(
        x,
        t["target"],
        param_tensor(p.weight, x),
        ignore_index=p.ignore_index,
        reduction="none",
        label_smoothing=p.label_smoothing,
    )


def _nll(t: Inputs, p: NLLParams) -> Tensor:
    x = t["input"]
    return F.nll_loss(x, t["target"], param_tensor(p.weight, x), ignore_index=p.ignore_index, reduction="none")


def _bce(t: Inputs, p: BCEParams) -> Tensor:
    x = t["input"]
    return F.binary_cross_entropy(x, t["target"], param_tensor(p.weight, x), reduction="none")


def _bce_with_logits(t: Inputs, p: BCEWithLogitsParams) -> Tensor:
    x = t["input"]
    return F.binary_cross_entropy_with_logits(
        x, t["target"], param_tensor(p.weight, x), reduction="none", pos_weight=param_tensor(p.pos_weight, x)
    )


def _kl_div(t: Inputs, p: KLDivParams) -> Tensor:
    return F.kl_div(t["input"], t["target"], reduction="none", log_target=p.log_target)


def _poisson_nll(t: Inputs, p: PoissonNLLParams) -> Tensor:
    return F.poisson_nll_loss(t["input"], t["target"], log_input=p.log_input, full=p.full, eps=p.eps, reduction="none")


def _gaussian_nll(t: Inputs, p: GaussianNLLParams) -> Tensor:
    return F.gaussian_nll_loss(t["input"], t["target"], t["var"], full=p.full, eps=p.eps, reduction="none")


# --- roles --------------------------------------------------------------------------------------

LOGITS = role("input", "(N, C, *)", description="unnormalized scores (logits) per class")
LOG_PROBS = role("input", "(N, C, *)", description="log-probabilities per class, e.g. from log_softmax")
CLASS_INDICES = role(
    "target", "(N, *)", kind=INTEGER, differentiable=False, description="class indices in [0, C) or ignore_index"
)
CLASS_TARGET = role(
    "target",
    form("(N, *)", INTEGER, "class indices"),
    form("(N, C, *)", note="class probabilities"),
    description="class indices in [0, C) or ignore_index, or class probabilities in [0, 1] (these get a gradient)",
)


def _pair(input_desc: str, target_desc: str) -> tuple[Role, Role]:
    target = role("target", "(*)", description=f"{target_desc}, same shape as the input")
    return role("input", "(*)", description=input_desc), target


GAUSSIAN = (
    role("input", "(N, *, D)", description="expectations of the Gaussian; D is the last dimension"),
    role("target", "(N, *, D)", description="samples, same shape as the input"),
    role(
        "var",
        form("(N, *, D)", note="one variance per element"),
        form("(N, *, 1)", note="one variance shared over the last dimension"),
        form("(N, *)", note="one variance shared over the last dimension"),
        description="variances >= 0 (clamped to eps)",
    ),
)

LOSSES = [
    Loss(
        name="cross_entropy",
        summary="Cross entropy -sum_c w_c y_c log softmax(x)_c against class indices or probabilities, "
        "with label smoothing (PyTorch CrossEntropyLoss).",
        category="classification",
        reference="pytorch",
        roles=(LOGITS, CLASS_TARGET),
        forward=_cross_entropy,
        elementwise_shape="(N, *)",
        params=CrossEntropyParams,
        mean_weights=_class_weights,
        aliases=("CrossEntropyLoss",),
        validate=(_class_target, per_class("weight")),
    ),
    Loss(
        name="nll",
        summary="Negative log likelihood -weight[y] * input[y] of log-probabilities (PyTorch NLLLoss).",
        category="classification",
        reference="pytorch",
        roles=(LOG_PROBS, CLASS_INDICES),
        forward=_nll,
        elementwise_shape="(N, *)",
        params=NLLParams,
        mean_weights=_class_weights,
        aliases=("NLLLoss", "nll_loss"),
        validate=(_class_target, per_class("weight")),
    ),
    Loss(
        name="bce",
        summary="Binary cross entropy -weight * (y log x + (1 - y) log(1 - x)) of probabilities, logs clamped "
        "at -100 (PyTorch BCELoss).",
        category="classification",
        reference="pytorch",
        roles=_pair("probabilities in [0, 1]", "probabilities in [0, 1]"),
        forward=_bce,
        elementwise_shape="(*)",
        params=BCEParams,
        aliases=("BCELoss", "binary_cross_entropy"),
        validate=(probabilities("input"), probabilities("target"), _broadcasts_to_input("weight")),
        batchable=_spans_no_batch("weight"),
    ),
    Loss(
        name="bce_with_logits",
        summary="Binary cross entropy of logits: -weight * (pos_weight * y log s(x) + (1 - y) log(1 - s(x))), "
        "s the sigmoid (PyTorch BCEWithLogitsLoss).",
        category="classification",
        reference="pytorch",
        roles=_pair("logits", "probabilities in [0, 1]"),
        forward=_bce_with_logits,
        elementwise_shape="(*)",
        params=BCEWithLogitsParams,
        aliases=("BCEWithLogitsLoss", "binary_cross_entropy_with_logits"),
        validate=(probabilities("target"), _broadcasts_to_input("weight"), _broadcasts_to_input("pos_weight")),
        batchable=_spans_no_batch("weight", "pos_weight"),
    ),
    Loss(
        name="kl_div",
        summary="Kullback-Leibler divergence y (log y - x) of log-probabilities x; 'batchmean' is sum / N "
        "(PyTorch KLDivLoss).",
        category="probabilistic",
        reference="pytorch",
        roles=_pair("log-probabilities", "probabilities (log-probabilities if log_target)"),
        forward=_kl_div,
        elementwise_shape="(*)",
        params=KLDivParams,
        sample_terms=_kl_terms,
        reductions=("mean", "sum", "none", "batchmean"),
        aliases=("KLDivLoss",),
        validate=(_nonnegative("target", when=lambda p: not p.log_target),),
    ),
    Loss(
        name="poisson_nll",
        summary="Poisson negative log likelihood exp(x) - y x (or x - y log(x + eps)), plus Stirling's term "
        "if full (PyTorch PoissonNLLLoss).",
        category="probabilistic",
        reference="pytorch",
        roles=_pair("log-rates (rates >= 0 if not log_input)", "counts (>= 0 if full)"),
        forward=_poisson_nll,
        elementwise_shape="(*)",
        params=PoissonNLLParams,
        aliases=("PoissonNLLLoss", "poisson_nll_loss"),
        validate=(
            _nonnegative("input", when=lambda p: not p.log_input),
            _nonnegative("target", when=lambda p: p.full),
        ),
    ),
    Loss(
        name="gaussian_nll",
        summary="Gaussian negative log likelihood 0.5 (log v + (x - y)^2 / v), v = max(var, eps), "
        "plus 0.5 log(2 pi) if full (PyTorch GaussianNLLLoss).",
        category="probabilistic",
        reference="pytorch",
        roles=GAUSSIAN,
        forward=_gaussian_nll,
        elementwise_shape="(N, *, D)",
        params=GaussianNLLParams,
        aliases=("GaussianNLLLoss", "gaussian_nll_loss"),
        validate=(_nonnegative("var"),),
    ),
]
