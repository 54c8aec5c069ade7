"""Responses: tensors as flat JSON arrays or base64 .npy, written with orjson."""

from __future__ import annotations

import base64
import math

import numpy as np
import orjson

from .npy import write_npy

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def scalar(value: float | None) -> float | str | None:
    """JSON has no NaN or infinities: they are written as the strings "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NONFINITE[value]


def tensor(arr: np.ndarray, dtype: str, encoding: str) -> dict:
    out: dict = {"shape": list(arr.shape), "dtype": dtype}
    if encoding == "npy":
        out["npy"] = base64.b64encode(write_npy(arr)).decode("ascii")
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        out["data"] = [scalar(v) for v in arr.reshape(-1).tolist()]
    else:
        out["data"] = np.ascontiguousarray(arr).reshape(-1)
    return out


def dumps(content: dict) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
