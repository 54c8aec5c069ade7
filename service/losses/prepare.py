"""From a parsed request to a checked job: loss, params, roles, shapes, dtypes, values.

Everything a client can get wrong is found here, before torch is called.
"""

from __future__ import annotations

import difflib
import functools
import reprlib
import threading
import types
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

import numpy as np
import orjson
import torch
from pydantic import Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from ..arrays import check_range, first_value, fmt_shape, overflows, position
from ..codecs.tensors import Decoded
from ..dtypes import DTYPES, FLOAT_DTYPES
from ..errors import ECHO_CHARS, MAX_ERRORS, ErrorItem, InvalidInput, clip, collect, pydantic_message, unknown_keys
from .base import Checked, Loss, Params
from .contract import FLOAT, Binding, check_shapes
from .registry import Registry


class Work:
    """What the engine and the budget read of a job, whatever it computes: its arrays (by role)
    and its compute dtype."""

    __slots__ = ()
    arrays: dict[str, np.ndarray]
    dtype: str

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def elements(self) -> int:
        return sum(a.size for a in self.arrays.values())

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype].torch


@dataclass(eq=False, slots=True)
class Job(Work):
    """One request, checked and ready for the engine. (Made once per request and never changed; not a
    frozen dataclass, whose ``__init__`` costs about 1.3 us more, measured.)"""

    loss: Loss
    params: Any
    reduction: str
    arrays: dict[str, np.ndarray]  # float roles in the compute dtype's storage, integer roles int64
    dtype: str  # compute dtype of the float roles: float16, bfloat16, float32 or float64
    grad_roles: tuple[str, ...]
    return_elementwise: bool
    plan: Plan | None = field(default=None, repr=False, compare=False)  # shared by like requests
    return_per_sample: bool = False  # each sample's value under the reduction, shape (N,)
    shared: dict | None = field(default=None, repr=False)  # the memo of a request's losses (losses.shared)

    @property
    def name(self) -> str:
        return self.loss.name


def prepare(
    registry: Registry,
    name: str,
    raw_params: dict,
    reduction: str,
    tensors: dict[str, Decoded],
    return_grad: bool | list[str],
    return_elementwise: bool,
    *,
    some_grads: bool = False,
    return_per_sample: bool = False,
) -> Job:
    """``some_grads``: the roles of ``return_grad`` that the loss cannot differentiate are left out
    (a request with several losses asks for every loss at once), where alone they are a 422."""
    loss = registry.get(name)
    plan = _plan(loss, raw_params, reduction, tensors, return_grad, some_grads)
    if return_elementwise and loss.whole(plan.params):
        raise InvalidInput.at(("return_elementwise",), f"{loss.name} has no elementwise values: {_whole(loss)}")
    if return_per_sample:
        _per_sample(loss, plan.params, reduction, tensors)
    arrays = {}
    for role, decoded in tensors.items():
        arrays[role] = _convert(role, decoded, plan.kinds[role], plan.dtype)
    checked = Checked(arrays, plan.params, plan.binding)
    collect([e for check in loss.validate for e in check(checked)])
    grads = plan.grads if plan.grads is not None else _grad_roles(loss, return_grad, plan.kinds, some_grads)  # raises
    elementwise = return_elementwise or reduction == "none"
    return Job(loss, plan.params, reduction, arrays, plan.dtype, grads, elementwise, plan, return_per_sample)


@dataclass(frozen=True)
class Plan:
    """What a request's loss, params, reduction, shapes and stated dtypes decide (everything but
    the values): worked out once and reused for the requests that agree in all of these, as a
    client sending batch after batch does."""

    loss: Loss
    params: Params
    binding: Binding
    kinds: dict[str, str]
    dtype: str
    grads: tuple[str, ...] | None  # None: the gradient roles asked for are wrong (raised later)
    memo: dict = field(default_factory=dict, compare=False)  # what the engine derives from it (group key)


class PlanCache(dict):
    """The plans, by what decides them: a dict (a hit is one ``get``) whose entries are kept within
    ``max_bytes`` (each entry's bytes as ``put`` is told them) and ``max_entries``, the oldest
    dropped first. Its keys hold the client's params, so its size must not be the client's choice."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        super().__init__()
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.nbytes = 0
        self._sizes: dict[Hashable, int] = {}
        self._lock = threading.Lock()  # plans are made on the event loop and in the thread pool

    def put(self, key: Hashable, value: Plan, nbytes: int) -> None:
        if nbytes > self.max_bytes // 4:  # a plan this large is worked out again each time
            return
        with self._lock:
            self._drop(key)
            while self and (self.nbytes + nbytes > self.max_bytes or len(self) >= self.max_entries):
                self._drop(next(iter(self)))
            self[key] = value
            self._sizes[key] = nbytes
            self.nbytes += nbytes

    def _drop(self, key: Hashable) -> None:
        if self.pop(key, None) is not None:
            self.nbytes -= self._sizes.pop(key)

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._sizes.clear()
            self.nbytes = 0


PLAN_BYTES = 32 << 20  # the plans' budget; a plan over a quarter of it is not kept (a list param of ~130k values)
PLANS_KEPT = 1024
_PLANS = PlanCache(PLAN_BYTES, PLANS_KEPT)


def _plan_bytes(key: tuple, params: Params) -> int:
    """About the memory a plan holds: its key (the params' JSON), each value of a list param (a float
    object, its slot, and its text in the engine's group key), and a few kilobytes of the rest."""
    values = 0
    stack = list(params.__dict__.values())
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            if v and isinstance(v[0], (list, tuple)):
                stack.extend(v)
            else:
                values += len(v)
    return 4096 + len(key[1]) + 64 * values


def _plan(
    loss: Loss,
    raw_params: dict,
    reduction: str,
    tensors: dict[str, Decoded],
    return_grad: bool | list[str],
    some_grads: bool = False,
) -> Plan:
    # more unknown names than are reported: no work per name (the length first: model_fields costs 1 us)
    if len(raw_params) > MAX_ERRORS and len(raw_params) > len(fields := loss.params.model_fields) + MAX_ERRORS:
        raise unknown_keys(raw_params, fields, ("loss", "params"), functools.partial(_unknown_param, loss))
    try:
        key = (
            id(loss), orjson.dumps(raw_params), reduction,
            tuple((role, t.dtype, t.array.shape) for role, t in tensors.items()),
            return_grad if isinstance(return_grad, bool) else tuple(return_grad), some_grads,
        )  # fmt: skip
    except TypeError:  # not JSON data: no caching
        key = None
    plan = _PLANS.get(key) if key is not None else None
    if plan is not None and plan.loss is loss:
        return plan
    errors = _reduction(loss, reduction)
    params, param_errors = parse_params(loss, raw_params)
    if params is not None and reduction == "none" and loss.decomposable and loss.whole(params):
        accepted = ", ".join(r for r in loss.reductions if r != "none")
        msg = f"{loss.name} does not accept reduction 'none': {_whole(loss)}; expected one of {accepted}"
        errors.append(ErrorItem(("loss", "reduction"), msg))
    errors += param_errors + _roles(loss, tensors)
    collect(errors)
    assert params is not None  # parse_params gave errors, which collect raised, where it gave no params
    binding = check_shapes(loss.roles, {k: v.array.shape for k, v in tensors.items()})
    kinds = {r: f.kind for r, f in binding.forms.items()}
    try:
        grads = _grad_roles(loss, return_grad, kinds, some_grads)
    except InvalidInput:
        grads = None
    dtype = _compute_dtype(tensors, kinds)
    collect(_params_in_range(params, dtype))
    plan = Plan(loss, params, binding, kinds, dtype, grads)
    if key is not None and grads is not None:
        _PLANS.put(key, plan, _plan_bytes(key, params))
    return plan


def _per_sample(loss: Loss, params: Params, reduction: str, tensors: dict[str, Decoded]) -> None:
    """Per-sample values exist for a decomposable loss under a reduction, with a batch dimension."""
    loc = ("return_per_sample",)
    if loss.whole(params):
        raise InvalidInput.at(loc, f"{loss.name} has no per-sample values: {_whole(loss)}")
    if reduction == "none":
        accepted = ", ".join(r for r in loss.reductions if r != "none")
        msg = (
            f"needs one of the reductions {accepted} (each sample's value under it); got 'none', whose "
            "elementwise values are returned instead"
        )
        raise InvalidInput.at(loc, msg)
    first, dim = loss.roles[0], loss.roles[0].batch_dim or 0
    shape = tensors[first.name].array.shape if first.name in tensors else None
    if shape is not None and len(shape) <= dim:
        msg = f"needs a batch dimension N (dim {dim} of inputs.{first.name}); got shape {fmt_shape(shape)}"
        raise InvalidInput.at(loc, msg)


def _whole(loss: Loss) -> str:
    """Why a loss (with its params) has no elementwise values nor reduction none."""
    if not loss.decomposable:
        return "it is not decomposable (its value reduces the whole request)"
    return f"with {loss.whole_when} its value reduces the whole request"


def _params_in_range(params: Params, dtype: str) -> list[ErrorItem]:
    """Every float param (and list of them) within what the compute dtype can hold: torch refuses
    to turn 1e39 into a float32 scalar (a RuntimeError), or the value silently becomes infinite."""
    largest = DTYPES[dtype].max
    errors = []
    for name, value in params:
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            if isinstance(v, float) and not -largest <= v <= largest:
                loc = ("loss", "params", name, i) if values is value else ("loss", "params", name)
                errors.append(
                    ErrorItem(loc, f"{v!r} is beyond the range of {dtype}, the compute dtype (±{largest:.6g})")
                )
                break
    return errors


def _reduction(loss: Loss, reduction: str) -> list[ErrorItem]:
    if reduction in loss.reductions:
        return []
    accepted = ", ".join(loss.reductions)
    why = f": {_whole(loss)}" if reduction == "none" and not loss.decomposable else ""
    return [
        ErrorItem(
            ("loss", "reduction"),
            f"{loss.name} does not accept reduction {reduction!r}{why}; expected one of {accepted}",
        )
    ]


def parse_params(loss: Loss, raw: dict) -> tuple[Params | None, list[ErrorItem]]:
    try:
        return _fail_fast(loss.params).model_validate(raw), []
    except ValidationError as exc:
        return None, [_param_error(loss, e) for e in exc.errors(include_url=False)]


@functools.cache  # one per loss's params class: the catalog's, not the client's
def _fail_fast(model: type[Params]) -> type[Params]:
    """``model``, but each list param stops at its first wrong value: a list of a million strings is
    one error, found at the first, where pydantic would make a million (seconds, and a huge answer)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = _stop_at_first(info.annotation)
        if annotation is not info.annotation:
            fields[name] = (annotation, info)
    if not fields:
        return model
    return create_model(model.__name__, __base__=model, __module__=model.__module__, **fields)


def _stop_at_first(tp: Any) -> Any:
    """``tp`` with each list, tuple or set in it (also inside a union) validated fail-fast."""
    origin = get_origin(tp)
    if origin in (list, tuple, set, frozenset):
        return Annotated[tp, Field(fail_fast=True)]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        new = tuple(_stop_at_first(a) for a in args)
        return tp if all(a is b for a, b in zip(args, new, strict=True)) else Union[new]  # noqa: UP007
    return tp


def _param_error(loss: Loss, e: ErrorDetails) -> ErrorItem:
    loc = ("loss", "params", *e["loc"])
    if e["type"] == "extra_forbidden":
        return ErrorItem(loc, _unknown_param(loss, str(e["loc"][0])))
    return ErrorItem(loc, f"{pydantic_message(e)}; got {_short(e.get('input'))}")


def _unknown_param(loss: Loss, name: str) -> str:
    known = list(loss.params.model_fields)
    msg = f"unknown parameter {clip(name)} for {loss.name}"
    close = difflib.get_close_matches(name, known, n=1) if len(name) <= ECHO_CHARS else []
    if close:
        msg += f"; did you mean {close[0]!r}?"
    else:
        msg += "; expected " + (", ".join(known) if known else "no parameters")
    return msg


_REPR = reprlib.Repr()  # a bounded repr: no text of a 10 MB string or a long list is ever made
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8


def _short(value: object) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _roles(loss: Loss, tensors: dict[str, Decoded]) -> list[ErrorItem]:
    names = [r.name for r in loss.roles]
    errors = [
        ErrorItem(("inputs", k), f"unknown role {clip(k)} for {loss.name}; expected {', '.join(names)}")
        for k in tensors
        if k not in names
    ]
    errors += [
        ErrorItem(("inputs", r.name), f"missing required role {r.name!r} with shape {r.shape}")
        for r in loss.roles
        if not r.optional and r.name not in tensors
    ]
    return errors


def _compute_dtype(tensors: dict[str, Decoded], kinds: dict[str, str]) -> str:
    """The stated float dtypes of the float roles, promoted as PyTorch would; float32 if none."""
    stated = [DTYPES[t.dtype].torch for r, t in tensors.items() if kinds[r] == FLOAT and t.dtype in FLOAT_DTYPES]
    if not stated:
        return "float32"
    result = stated[0]
    for d in stated[1:]:
        result = torch.promote_types(result, d)
    return str(result).removeprefix("torch.")


def _convert(role: str, t: Decoded, kind: str, dtype: str) -> np.ndarray:
    loc = ("inputs", role)
    arr = t.array
    if arr.size == 0:  # PyTorch's reductions of empty tensors give NaN or uninitialised memory
        raise InvalidInput.at(loc, f"expected at least one element; got shape {fmt_shape(arr.shape)}")
    if kind == FLOAT:
        if t.dtype is not None and t.dtype not in FLOAT_DTYPES:
            raise InvalidInput.at(loc, f"expected a float tensor ({', '.join(FLOAT_DTYPES)}); got {t.dtype}")
        with np.errstate(over="ignore"):  # a value too large for the dtype becomes inf: found below
            out = arr.astype(DTYPES[dtype].storage, copy=False)
        if np.logical_and.reduce(np.isfinite(out), axis=None) and (
            dtype != "bfloat16" or overflows(out, dtype) is None
        ):
            return out  # the common case: one cast and one pass
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InvalidInput.at(loc, f"non-finite value {first_value(arr, bad)} at position {position(arr, bad)}")
        bad = overflows(arr, dtype)
        assert bad is not None  # arr is finite here, so what its cast made non-finite overflowed
        raise InvalidInput.at(
            loc, f"value {first_value(arr, bad)} out of range for {dtype} at position {position(arr, bad)}"
        )
    if t.dtype == "bool" or arr.dtype.kind == "b":
        raise InvalidInput.at(loc, "expected integers; got bool")
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # a signalling NaN warns in rint: it is reported below
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise InvalidInput.at(
                loc, f"expected integers; got {first_value(arr, bad)} at position {position(arr, bad)}"
            )
    # the values int64 cannot hold (uint64 from JSON integers of 2**63 up would wrap: 2**64-1 to -1),
    # and floats beyond 2**53 (not exact: JSON's integers beyond 64 bits come as floats)
    check_range(arr, "int64", loc)
    return arr.astype(np.int64, copy=False)


def _grad_roles(loss: Loss, wanted: bool | list[str], kinds: dict[str, str], some: bool = False) -> tuple[str, ...]:
    def ok(name: str) -> bool:
        r = loss.role(name)
        return r is not None and r.differentiable and kinds.get(name) == FLOAT

    if wanted is True:
        return tuple(r.name for r in loss.roles if ok(r.name))
    if wanted is False:
        return ()
    if some:
        return tuple(name for name in dict.fromkeys(wanted) if ok(name))
    errors = []
    for i, name in enumerate(wanted):
        if loss.role(name) is None:
            roles = ", ".join(r.name for r in loss.roles)
            errors.append(ErrorItem(("return_grad", i), f"unknown role {clip(name)} for {loss.name}; expected {roles}"))
        elif name not in kinds:
            errors.append(ErrorItem(("return_grad", i), f"role {clip(name)} was not given"))
        elif not ok(name):
            errors.append(ErrorItem(("return_grad", i), f"role {name!r} of {loss.name} is not differentiable"))
    collect(errors)
    return tuple(dict.fromkeys(wanted))
