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
