"""Small helpers to describe arrays in error messages: shapes and first offending positions."""

from __future__ import annotations

import numpy as np


def fmt_shape(shape: tuple[int, ...]) -> str:
    """``(2, 3)``, ``(5,)`` or ``()``, as Python writes tuples."""
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def position(arr: np.ndarray, bad: np.ndarray) -> str:
    """The first position where ``bad`` holds, as ``(i, j, ...)``."""
    flat = int(np.argmax(bad.reshape(-1)))
    return fmt_shape(tuple(int(i) for i in np.unravel_index(flat, arr.shape)))


def first_value(arr: np.ndarray, bad: np.ndarray) -> object:
    """The value at the first position where ``bad`` holds."""
    return arr.reshape(-1)[int(np.argmax(bad.reshape(-1)))].item()


FLOAT_MAX = {
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": 3.3895313892515355e38,  # torch.finfo(torch.bfloat16).max
    "float32": float(np.finfo(np.float32).max),
    "float64": float(np.finfo(np.float64).max),
}


def overflows(arr: np.ndarray, dtype: str) -> np.ndarray | None:
    """Where finite values lie beyond what the float dtype ``dtype`` can hold; None if nowhere.
    (Two reductions on the common path; the mask is built only when something overflows.)"""
    limit = FLOAT_MAX[dtype]
    if arr.size == 0 or (arr.dtype.kind == "f" and float(np.finfo(arr.dtype).max) <= limit):
        return None  # nothing this array holds can overflow
    if arr.dtype.kind == "b":
        return None
    with np.errstate(invalid="ignore"):  # NaN compares false: it never counts as an overflow
        if not (float(arr.max()) > limit or float(arr.min()) < -limit):
            return None
        return np.isfinite(arr) & (np.abs(arr.astype(np.float64, copy=False)) > limit)
