"""Responses: tensors as flat JSON arrays or base64 .npy, written with orjson."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pybase64

from .npy import write_npy

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def scalar(value: float | None) -> float | str | None:
    """JSON has no NaN or infinities: they are written as the strings "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NONFINITE[value]


class Base64:
    """Base64 text kept as bytes: ``dumps`` splices it into the JSON instead of having it
    decoded to a str and scanned again by the JSON writer (tens of MB for large gradients)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def tensor(arr: np.ndarray, dtype: str, encoding: str) -> dict:
    out: dict = {"shape": list(arr.shape), "dtype": dtype}
    if encoding == "npy":
        out["npy"] = Base64(pybase64.b64encode(write_npy(arr)))
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        out["data"] = [scalar(v) for v in arr.reshape(-1).tolist()]
    else:
        out["data"] = np.ascontiguousarray(arr).reshape(-1)
    return out


def dumps(content: dict) -> bytes:
    blobs: list[bytes] = []

    def placeholder(obj: object) -> str:
        if not isinstance(obj, Base64):
            raise TypeError(f"cannot write {type(obj).__name__} as JSON")
        blobs.append(obj.data)
        return _MARK + str(len(blobs) - 1)

    text = orjson.dumps(content, default=placeholder, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return text
    parts, rest = [], text
    for i, blob in enumerate(blobs):  # base64 needs no JSON escaping: it goes in as it is
        head, _, rest = rest.partition(f'"{_MARK}{i}"'.encode())
        parts += [head, b'"', blob, b'"']
    parts.append(rest)
    return b"".join(parts)


_MARK = "__loss_service_base64_"  # responses hold only the service's own strings: no clash
