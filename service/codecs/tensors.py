"""The three JSON tensor forms of the contract, decoded into numpy arrays.

1. a nested array (dtype chosen later from the role),
2. ``{"data": [...], "shape": [...], "dtype": "..."}``,
3. ``{"npy": "<base64 .npy>"}``.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass

import numpy as np
import pybase64

from ..arrays import MAX_DIMS, check_range, check_shape, first_value, fmt_shape, overflows, position, short
from ..dtypes import DTYPES
from ..errors import InvalidInput, Loc, MalformedRequest
from .npy import read_npy


@dataclass(eq=False, slots=True)
class Decoded:
    """A tensor as it came: the array, and its dtype name when the client stated one. (Not frozen:
    made for every tensor of every request, and a frozen dataclass costs more to make.)"""

    array: np.ndarray
    dtype: str | None  # None: a nested array, typed later by its role

    @property
    def nbytes(self) -> int:
        return self.array.nbytes


def decode_tensor(value: object, loc: Loc, max_elements: int) -> Decoded:
    if isinstance(value, (list, np.ndarray)):  # an ndarray: a large nested array, parsed by codecs.numeric
        return Decoded(_nested(value, loc, max_elements), None)
    if isinstance(value, dict):
        if "npy" in value:
            return _npy_form(value, loc, max_elements)
        if "data" in value:
            return _data_form(value, loc, max_elements)
        raise InvalidInput.at(loc, "expected a tensor object with 'data' or 'npy'")
    got = "null" if value is None else type(value).__name__
    raise InvalidInput.at(loc, f"expected a nested array, {{data, shape, dtype}} or {{npy}}; got {got}")


def _nested(value: list | np.ndarray, loc: Loc, max_elements: int) -> np.ndarray:
    if isinstance(value, list):  # (an ndarray, from codecs.numeric, is at most 32 deep: checked below)
        depth = _depth(value)
        if depth > MAX_DIMS:  # before numpy, which refuses over 64 as if the array were ragged
            raise InvalidInput.at(loc, f"expected at most {MAX_DIMS} dimensions; got {depth}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInput.at(loc, "expected a rectangular nested array of numbers; got a ragged one") from None
    if arr.dtype.kind not in "biuf":
        raise InvalidInput.at(loc, "expected numbers; got " + ("null" if arr.dtype.kind == "O" else "strings"))
    check_shape(arr.shape, loc, max_elements)
    return arr


def _depth(value: list) -> int:
    """How deep a nested list is, along its first elements (bounded by orjson's nesting limit)."""
    depth = 0
    node: object = value
    while isinstance(node, list):
        depth += 1
        if not node:
            break
        node = node[0]
    return depth


def _npy_form(value: dict, loc: Loc, max_elements: int) -> Decoded:
    _only(value, {"npy"}, loc)
    text = value["npy"]
    if not isinstance(text, str):
        raise InvalidInput.at((*loc, "npy"), "expected a base64 string")
    try:
        raw = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest.at((*loc, "npy"), "malformed base64") from None
    arr, name = read_npy(raw, (*loc, "npy"), max_elements)
    return Decoded(arr, name)


def _data_form(value: dict, loc: Loc, max_elements: int) -> Decoded:
    _only(value, {"data", "shape", "dtype"}, loc)
    name = value.get("dtype")
    if name is not None and not (isinstance(name, str) and name in DTYPES):  # a list or dict is unhashable
        raise InvalidInput.at((*loc, "dtype"), f"unknown dtype {short(name)}; expected one of {', '.join(DTYPES)}")
    shape = value.get("shape")
    if shape is not None:
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidInput.at((*loc, "shape"), "expected a list of non-negative integers")
        check_shape(shape, loc, max_elements, (*loc, "shape"))  # before a single element is read
    data = value["data"]
    if not isinstance(data, (list, np.ndarray)):
        raise InvalidInput.at((*loc, "data"), "expected an array of numbers")
    arr = _nested(data, (*loc, "data"), max_elements)
    if shape is not None:
        arr = _reshape(arr, tuple(shape), loc)
    return Decoded(_cast(arr, name, loc) if name else arr, name)


def _reshape(arr: np.ndarray, shape: tuple[int, ...], loc: Loc) -> np.ndarray:
    if arr.ndim > 1 and arr.shape != shape:
        raise InvalidInput.at(
            (*loc, "data"),
            f"expected shape {fmt_shape(shape)} from 'shape'; got nested data of shape {fmt_shape(arr.shape)}",
        )
    if arr.size != math.prod(shape):
        raise InvalidInput.at(
            (*loc, "data"), f"expected {math.prod(shape)} values for shape {fmt_shape(shape)}; got {arr.size}"
        )
    return arr.reshape(shape)


def _cast(arr: np.ndarray, name: str, loc: Loc) -> np.ndarray:
    """Convert to the stated dtype, refusing values it cannot hold."""
    target = DTYPES[name].storage
    if target.kind == "f":
        bad = overflows(arr, name)
        if bad is not None and bad.any():
            raise InvalidInput.at(
                (*loc, "data"),
                f"value {first_value(arr, bad)} out of range for {name} at position {position(arr, bad)}",
            )
    if target.kind in "iub":
        if arr.dtype.kind == "f":
            bad = arr != np.round(arr)
            if bad.any():
                raise InvalidInput.at(
                    (*loc, "data"),
                    f"expected {name} values; got {first_value(arr, bad)} at position {position(arr, bad)}",
                )
        check_range(arr, name, (*loc, "data"))
    return arr.astype(target, copy=False)


def _only(value: dict, allowed: set[str], loc: Loc) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        raise InvalidInput.at((*loc, extra[0]), f"unknown field; a tensor object takes {', '.join(sorted(allowed))}")
