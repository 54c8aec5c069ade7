"""What a loss is: roles, params, an elementwise forward and a per-request reduction.

Every loss is computed with ``reduction="none"`` (``forward``) and then reduced by its own exact
formula (``reduce``), so that the engine can batch several requests into one forward call and
still reduce each request from its own slice.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin, overload

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from torch import Tensor

from ..errors import ErrorItem
from .contract import Binding, Role

Inputs = dict[str, Tensor]

REFERENCES = {  # short keys for the usual references; any other text names its reference itself
    "pytorch": "PyTorch",
    "monai": "MONAI",
    "torchvision": "torchvision",
    "formula": "the formula in the summary",
}


def reference_text(reference: str) -> str:
    """What the catalog says a loss follows: a library (and function), or a paper."""
    return REFERENCES.get(reference, reference)


class Params(BaseModel):
    """Base of every loss's hyper-parameters: unknown names are refused, and types are strict (as
    the served schema says: ``"yes"`` is not a boolean nor ``"2"`` a number), but for JSON writers
    that print every number as a float: an integral float is taken where an integer is expected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_floats(cls, value: Any, info: ValidationInfo) -> Any:
        integral = isinstance(value, float) and value.is_integer() and info.field_name is not None
        if integral and _takes_int(cls.model_fields[info.field_name].annotation):  # type: ignore[index]
            return int(value)
        return value


def _takes_int(tp: Any) -> bool:
    """Whether the annotation ``tp`` admits an integer (int, an int Literal, or a union with one)."""
    if tp is int:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _takes_int(get_args(tp)[0])
    if origin is Literal:
        return any(type(a) is int for a in get_args(tp))
    if origin is Union or origin is types.UnionType:
        return any(_takes_int(a) for a in get_args(tp))
    return False


class NoParams(Params):
    pass


@dataclass(eq=False, slots=True)
class Checked:
    """A request's tensors after shape and dtype checks, as numpy arrays, for value checks. (Not
    frozen: made for every request, and a frozen dataclass costs more to make.)"""

    arrays: dict[str, np.ndarray]
    params: Any
    binding: Binding


Validator = Callable[[Checked], list[ErrorItem]]


@overload
def param_tensor(values: None, like: Tensor) -> None: ...
@overload
def param_tensor(values: float | list[Any], like: Tensor) -> Tensor: ...
def param_tensor(values: object, like: Tensor) -> Tensor | None:
    """A list hyper-parameter (class weights, alpha...) as a tensor of ``like``'s dtype and device."""
    return None if values is None else torch.as_tensor(values, dtype=like.dtype, device=like.device)


def mean_or_sum(el: Tensor, inputs: Inputs, params: Any, reduction: str) -> Tensor:
    """The plain reduction: mean or sum over every element."""
    return el.sum() if reduction == "sum" else el.mean()


def weighted_mean(el: Tensor, weights: Tensor, reduction: str) -> Tensor:
    """Sum, or sum divided by the weights' sum (PyTorch's weighted mean for class weights)."""
    total = el.sum()
    return total if reduction == "sum" else total / weights.sum()


MeanWeights = Callable[[Tensor, Inputs, Any], "Tensor | None"]


def element_count(el: Tensor, inputs: Inputs, params: Any) -> None:
    """The plain mean's weights: every element counts once (None stands for that)."""
    return


def reduce_by_weights(mean_weights: MeanWeights) -> Callable[[Tensor, Inputs, Any, str], Tensor]:
    """The reduction ``sum(el)`` / ``sum(el) / sum(weights)`` of a loss that declares its weights."""

    def reduce(el: Tensor, inputs: Inputs, params: Any, reduction: str) -> Tensor:
        if reduction == "sum":
            return el.sum()
        weights = mean_weights(el, inputs, params)
        return el.mean() if weights is None else weighted_mean(el, weights, reduction)

    return reduce


@dataclass(frozen=True)
class Loss:
    name: str
    summary: str
    category: str
    reference: str  # a key of REFERENCES, or the library function or paper itself
    roles: tuple[Role, ...]
    forward: Callable[[Inputs, Any], Tensor]
    elementwise_shape: str
    params: type[Params] = NoParams
    reduce: Callable[[Tensor, Inputs, Any, str], Tensor] = mean_or_sum
    # For a loss whose sum is sum(el) and whose mean is sum(el) / sum(w): the per-element weights
    # w (None for the element count). Then ``reduce`` is derived from it, and the engine reduces
    # a whole batch in a few tensor operations instead of a few per request. Losses with other
    # reductions (batchmean, CTC's length division, ...) give ``reduce`` and leave this None.
    mean_weights: MeanWeights | None = None
    reductions: tuple[str, ...] = ("mean", "sum", "none")
    aliases: tuple[str, ...] = ()
    validate: tuple[Validator, ...] = ()
    # batchable(params, arrays): False when a request's values would change if other requests' rows
    # were concatenated to its own (dice with batch=True, a weight that spans the batch dim).
    batchable: Callable[[Any, dict[str, np.ndarray]], bool] = field(default=lambda params, arrays: True)
    # False for a loss whose value is not a mean of per-element terms (Lovasz over a whole batch,
    # contrastive losses comparing every sample with every other): ``forward`` gives whatever its
    # ``reduce`` needs, there are no elementwise values and no reduction "none", and a request is
    # never batched with another.
    decomposable: bool = True
    # (param, value) that makes a decomposable loss reduce the whole request, as a loss that is not
    # decomposable does: dice's batch=True (sums pooled over the batch), Lovasz's per_image=False.
    pooled_when: tuple[str, Any] | None = None
    # A named composite (dice_ce): its params expand into terms (see losses.composite), computed
    # as a weighted sum of catalog losses; ``forward`` is never called. expand(params, reduction,
    # tensors) -> (terms, tensors as the terms take them).
    expand: Callable[[Any, str, dict], tuple[list, dict]] | None = None

    def __post_init__(self) -> None:
        if self.pooled_when is not None:
            per_request, (param, value) = self.batchable, self.pooled_when
            object.__setattr__(
                self, "batchable", lambda p, arrays: getattr(p, param) != value and per_request(p, arrays)
            )
        if not self.decomposable:
            if "none" in self.reductions or self.mean_weights is not None:
                raise ValueError(
                    f"{self.name}: a loss that is not decomposable has no reduction 'none' or mean weights"
                )
            object.__setattr__(self, "batchable", _never)
            return
        if self.mean_weights is not None:
            object.__setattr__(self, "reduce", reduce_by_weights(self.mean_weights))
        elif self.reduce is mean_or_sum:
            object.__setattr__(self, "mean_weights", element_count)

    def whole(self, params: Any) -> bool:
        """Whether, with ``params``, the value reduces the whole request (no elementwise values, no
        reduction none, never batched)."""
        if not self.decomposable:
            return True
        return self.pooled_when is not None and getattr(params, self.pooled_when[0]) == self.pooled_when[1]

    @property
    def whole_when(self) -> str | None:
        """The catalog's note of what makes a decomposable loss reduce the whole request."""
        if self.pooled_when is None:
            return None
        param, value = self.pooled_when
        return f"{param}={str(value).lower() if isinstance(value, bool) else value}"

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)


def _never(params: Any, arrays: dict[str, np.ndarray]) -> bool:
    return False
