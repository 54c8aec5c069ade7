"""Value checks shared by losses, on numpy arrays, run before torch sees the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

import numpy as np
from numpy.typing import ArrayLike

from ..arrays import first_value, fmt_shape, position
from ..errors import ErrorItem


def class_indices(arr: np.ndarray, classes: int, role: str, ignore_index: int | None = None) -> list[ErrorItem]:
    """Indices must lie in ``[0, classes)``, ``ignore_index`` aside."""
    if np.minimum.reduce(arr, axis=None) >= 0 and np.maximum.reduce(arr, axis=None) < classes:
        return []  # the common case: two reductions, no temporaries (ufuncs called directly:
        # ndarray.min() goes through a Python wrapper that costs as much as the work here)
    bad = (arr < 0) | (arr >= classes)
    if ignore_index is not None:
        bad &= arr != ignore_index
    if not bad.any():
        return []
    v = first_value(arr, bad)
    msg = f"class index {v} out of range [0, {classes}) at position {position(arr, bad)}"
    return [ErrorItem(("inputs", role), msg)]


def in_range(arr: np.ndarray, low: float, high: float, role: str) -> list[ErrorItem]:
    """Values must lie in the closed interval ``[low, high]``."""
    bad = (arr < low) | (arr > high)
    if not bad.any():
        return []
    msg = f"value {first_value(arr, bad)} out of range [{low:g}, {high:g}] at position {position(arr, bad)}"
    return [ErrorItem(("inputs", role), msg)]


def at_least(arr: np.ndarray, low: float, role: str) -> list[ErrorItem]:
    bad = arr < low
    if not bad.any():
        return []
    msg = f"value {first_value(arr, bad)} is below {low:g} at position {position(arr, bad)}"
    return [ErrorItem(("inputs", role), msg)]


def one_of(arr: np.ndarray, allowed: Sequence[float], role: str) -> list[ErrorItem]:
    """Values must be one of ``allowed`` (e.g. the labels 1 and -1)."""
    bad = ~np.isin(arr, np.asarray(allowed, dtype=arr.dtype))
    if not bad.any():
        return []
    names = " or ".join(f"{a:g}" for a in allowed)
    msg = f"expected {names}; got {first_value(arr, bad)} at position {position(arr, bad)}"
    return [ErrorItem(("inputs", role), msg)]


def param_length(values: Sequence[float] | None, size: int, letter: str, name: str) -> list[ErrorItem]:
    """A per-class parameter list must have one value per class."""
    if values is None or len(values) == size:
        return []
    msg = f"expected {letter} = {size} values; got {len(values)}"
    return [ErrorItem(("loss", "params", name), msg)]


def param_broadcasts(values: object, shape: tuple[int, ...], name: str, against: str = "input") -> list[ErrorItem]:
    """A tensor parameter (nested list) must broadcast to ``shape``."""
    if values is None:
        return []
    try:
        arr = np.asarray(values, dtype=np.float64)
        if np.broadcast_shapes(arr.shape, shape) != shape:  # it must not grow the input
            raise ValueError
    except ValueError:
        got = fmt_shape(np.shape(values)) if _rectangular(values) else "a ragged array"
        msg = f"expected a shape that broadcasts to {against} {fmt_shape(shape)}; got {got}"
        return [ErrorItem(("loss", "params", name), msg)]
    if not np.isfinite(arr).all():
        return [ErrorItem(("loss", "params", name), "expected finite values")]
    return []


def _rectangular(values: object) -> TypeGuard[ArrayLike]:
    try:
        np.asarray(values, dtype=np.float64)
    except ValueError:
        return False
    return True


def probabilities(role: str):
    """A validator: the role's values lie in [0, 1]."""
    return lambda c: in_range(c.arrays[role], 0, 1, role)


def per_class(param: str):
    """A validator: the list param ``param`` has one value per class (C, from the shapes)."""
    return lambda c: param_length(getattr(c.params, param), c.binding.size("C"), "C", param)
