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

    reduce.derived = True  # type: ignore[attr-defined]
    return reduce


# sample_terms(el, inputs, params, reduction) -> (S, W): per sample (each row of ``el``, its first
# dim; a 0-d ``el`` is one row), float64 tensors of shape (N,) such that the loss's value is
# sum(S) / sum(W) for mean and batchmean and sum(S) for sum, and each sample's own value is
# S_i / W_i (S_i for sum). Summed over any split of a data set into requests, sum(S) / sum(W) is
# the loss's mean over the whole set: the dataset aggregate. ``reduction`` is mean, sum or batchmean.
SampleTerms = Callable[[Tensor, Inputs, Any, str], "tuple[Tensor, Tensor]"]


def rows(t: Tensor) -> int:
    """How many samples (rows: the first dim) ``t`` holds; a 0-d tensor is one."""
    return t.shape[0] if t.dim() else 1


def row_sums(t: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Per row, the sum of everything in it, in ``dtype``, shape (N,): ``t`` itself when it is 1-D.
    Each row is summed on its own, so that a row's sum never depends on the rows around it."""
    if t.dim() <= 1:
        t = t.reshape(-1)
        return t if t.dtype == dtype else t.to(dtype)
    return t.reshape(t.shape[0], -1).sum(1, dtype=dtype)


def row_counts(t: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Per row, how many elements it holds, shape (N,)."""
    n = rows(t)
    return torch.full((n,), t.numel() // n, dtype=dtype, device=t.device)


def terms_by_weights(mean_weights: MeanWeights) -> SampleTerms:
    """The sample terms of a loss whose mean is sum(el) / sum(weights): each row's sum of its
    values and of its weights (its element count where the weights are None)."""

    def terms(el: Tensor, inputs: Inputs, params: Any, reduction: str) -> tuple[Tensor, Tensor]:
        weights = mean_weights(el, inputs, params)
        return row_sums(el), row_counts(el) if weights is None else row_sums(weights)

    return terms


def reduce_by_terms(sample_terms: SampleTerms) -> Callable[[Tensor, Inputs, Any, str], Tensor]:
    """The reduction sum(S) / sum(W) (mean, batchmean) or sum(S) (sum) of a loss that declares
    its sample terms, in float64, the value in ``el``'s dtype."""

    def reduce(el: Tensor, inputs: Inputs, params: Any, reduction: str) -> Tensor:
        s, w = sample_terms(el, inputs, params, reduction)
        total = s.sum() if reduction == "sum" else s.sum() / w.sum()
        return total.to(el.dtype)

    reduce.derived = True  # type: ignore[attr-defined]
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
    # The reduction of a loss that is not decomposable. A decomposable loss declares how its value
    # splits into samples instead (``mean_weights`` or ``sample_terms``), and this is derived.
    reduce: Callable[[Tensor, Inputs, Any, str], Tensor] = mean_or_sum
    # For a loss whose sum is sum(el) and whose mean is sum(el) / sum(w): the per-element weights
    # w (None for the element count). Then ``reduce`` and ``sample_terms`` are derived from it, and
    # in half precision the engine sums each request's values as PyTorch does. A loss that declares
    # neither this nor ``sample_terms`` takes the element count.
    mean_weights: MeanWeights | None = None
    # For any other decomposable loss (batchmean, CTC's division by each target length): its
    # per-sample terms (S, W) (see SampleTerms), from which its values, per-sample values and
    # dataset aggregates are computed.
    sample_terms: SampleTerms | None = None
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
            if self.sample_terms is not None:
                raise ValueError(f"{self.name}: a loss that is not decomposable has no sample terms")
            object.__setattr__(self, "batchable", _never)
            return
        self._derive_reduction()

    def _derive_reduction(self) -> None:
        """A decomposable loss's ``reduce`` and ``sample_terms`` from what it declares."""
        if self.reduce is not mean_or_sum and not getattr(self.reduce, "derived", False):
            raise ValueError(
                f"{self.name}: a decomposable loss declares mean_weights or sample_terms (how its value splits "
                "into samples), not reduce"
            )
        if self.sample_terms is not None and getattr(self.sample_terms, "derived_from", None) is None:
            if self.mean_weights is not None:
                raise ValueError(f"{self.name}: declare mean_weights or sample_terms, not both")
            object.__setattr__(self, "reduce", reduce_by_terms(self.sample_terms))
            return
        weights = self.mean_weights or element_count
        object.__setattr__(self, "mean_weights", weights)
        if weights is not element_count:
            object.__setattr__(self, "reduce", reduce_by_weights(weights))
        terms = terms_by_weights(weights)
        terms.derived_from = self.mean_weights  # type: ignore[attr-defined]
        object.__setattr__(self, "sample_terms", terms)

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
