"""Small helpers about arrays: the limits every tensor's shape is held to, whatever form it came
in, and descriptions for error messages (shapes, first offending positions and values)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .dtypes import FLOAT_MAX
from .errors import InvalidInput, Loc, TooLarge

# No loss needs more than a handful of dimensions ((N, C, D, H, W) at most, batched). numpy stops
# at 64, and CUDA's elementwise kernels at 25 (ROCm's at 16): a tensor with more would fail in
# compute (a 500) rather than be refused here.
MAX_DIMS = 16


def check_shape(shape: Sequence[int], loc: Loc, max_elements: int, shape_loc: Loc | None = None) -> None:
    """Refuse a shape (non-negative Python ints, as every form's check leaves it) over the limits,
    before any array of it is made: too many dimensions (422), too many elements (413), or an
    empty shape whose other dimensions are too large for numpy to make it (422). Counts are Python
    ints, so no shape can overflow them. ``shape_loc`` is where the shape was stated, if not at
    ``loc``."""
    where = loc if shape_loc is None else shape_loc
    if len(shape) > MAX_DIMS:
        raise InvalidInput.at(where, f"expected at most {MAX_DIMS} dimensions; got {len(shape)}")
    count = math.prod(shape)
    if count > max_elements:
        raise TooLarge.at(loc, f"tensor has {number(count)} elements; the limit is {max_elements}")
    if count == 0:
        extent = math.prod(d for d in shape if d)
        if extent > max_elements:
            raise InvalidInput.at(
                where,
                f"tensor is empty, but its nonzero dimensions multiply to {number(extent)}; "
                f"the limit is {max_elements}",
            )


def check_range(arr: np.ndarray, name: str, loc: Loc) -> None:
    """Refuse (422) any value of ``arr`` (numbers, integral where floats) that the integer or bool
    dtype ``name`` cannot hold, before a cast that would wrap it (uint64 2**64-1 to int64 -1)."""
    target = np.dtype(name)
    if arr.dtype.kind in "biu" and np.can_cast(arr.dtype, target):
        return  # nothing this array holds can be out of range
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        arr = arr.astype(np.float64)  # compared with int64's bounds, a float16 would overflow (a warning)
    if target.kind == "b":
        bad = (arr != 0) & (arr != 1)
    else:
        info = np.iinfo(target)  # ``>= max + 1``: float(2**63 - 1) is 2**63, which int64 cannot hold
        bad = (arr < info.min) | (arr >= info.max + 1)
    if bad.any():
        raise InvalidInput.at(
            loc, f"value {first_value(arr, bad)} out of range for {name} at position {position(arr, bad)}"
        )
    if arr.dtype.kind == "f" and target.itemsize == 8:
        # Beyond 2**53 a float is not the integer that was written: JSON's -9223372036854775809
        # (outside int64) is parsed as a float, and rounds to int64's -2**63.
        bad = np.abs(arr) > 2**53
        if bad.any():
            raise InvalidInput.at(
                loc,
                f"integer value {first_value(arr, bad)} at position {position(arr, bad)} is beyond 2^53 "
                "and cannot be given as a float",
            )


def number(n: int) -> str:
    """An integer for a message: in full below 2**128, else ``over 10^k`` (Python will not write an
    int of over 4300 digits, and the dimensions of a client's .npy header may multiply to one)."""
    if n.bit_length() <= 128:
        return str(n)
    return f"over 10^{int((n.bit_length() - 1) * math.log10(2))}"  # n >= 2**(bits-1) > 10**k


def short(value: object, limit: int = 40) -> str:
    """A client's value for a message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
