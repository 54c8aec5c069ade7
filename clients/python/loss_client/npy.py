"""Tensors to and from the service's wire forms: .npy files, base64 .npy, and JSON tensors."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import numpy.typing as npt

# numpy has no bfloat16: the service writes such tensors as float32 (exactly) with dtype "bfloat16".
WIRE_AS = {"bfloat16": "float32"}


def to_npy(array: npt.ArrayLike) -> bytes:
    """``array`` as the bytes of a .npy file (never pickled)."""
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    """The array in the bytes of a .npy file (never unpickled)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_tensor(tensor: Any) -> np.ndarray | None:
    """A response tensor: ``{"shape", "dtype", "npy"}``, ``{"shape", "dtype", "data"}`` (non-finite
    values as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``), or ``None``."""
    if tensor is None:
        return None
    if "npy" in tensor:
        return from_npy(base64.b64decode(tensor["npy"], validate=True))
    dtype = np.dtype(WIRE_AS.get(tensor["dtype"], tensor["dtype"]))
    data = np.asarray(tensor["data"], dtype=np.float64 if dtype.kind == "f" else dtype)
    return data.astype(dtype).reshape(tensor["shape"])


def to_float(value: Any) -> float | None:
    """A JSON scalar: a number, ``None``, or one of the strings written for non-finite values."""
    return None if value is None else float(value)
