"""Responses: tensors as flat JSON arrays or base64 .npy, written with orjson."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pybase64

from .npy import npy_header

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def scalar(value: float | None) -> float | str | None:
    """JSON has no NaN or infinities: they are written as the strings "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NONFINITE[value]


class Base64:
    """Base64 text kept as bytes, in pieces: ``dump_parts`` puts them in the JSON as they are,
    instead of having them decoded to a str and scanned again by the JSON writer, or joined
    (tens of MB for large gradients)."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces


def b64_npy(arr: np.ndarray) -> Base64:
    """The base64 text of ``arr`` as an .npy file, without the file ever being assembled: the
    header and the first bytes of the data that bring it to a multiple of 3 bytes are encoded
    together, and the rest of the data straight from the array's memory (base64 of a
    concatenation is the concatenation of the pieces' base64 when the first ends on 3 bytes)."""
    arr = np.asarray(arr, order="C")  # (not ascontiguousarray: it makes a 0-d array 1-d)
    data = arr.reshape(-1).view(np.uint8).data  # its memoryview (numpy types ndarray as a Buffer from 3.12 only)
    head = npy_header(arr)
    k = min((-len(head)) % 3, len(data))
    pieces = [pybase64.b64encode(head + data[:k].tobytes())]
    if len(data) > k:
        pieces.append(pybase64.b64encode(data[k:]))
    return Base64(pieces)


def tensor(arr: np.ndarray, dtype: str, encoding: str) -> dict:
    out: dict = {"shape": list(arr.shape), "dtype": dtype}
    if encoding == "npy":
        out["npy"] = b64_npy(arr)
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        out["data"] = [scalar(v) for v in arr.reshape(-1).tolist()]
    else:
        out["data"] = np.ascontiguousarray(arr).reshape(-1)
    return out


def dumps(content: dict) -> bytes:
    return b"".join(dump_parts(content))


def dump_parts(content: dict) -> list[bytes]:
    """The JSON text of ``content`` in pieces that, joined, make the whole: large base64 pieces
    are left as they are, so that a 35 MB gradient is written to the socket without first being
    copied into one 35 MB string."""
    blobs: list[Base64] = []

    def placeholder(obj: object) -> str:
        if not isinstance(obj, Base64):
            raise TypeError(f"cannot write {type(obj).__name__} as JSON")
        blobs.append(obj)
        return _MARK + str(len(blobs) - 1)

    text = orjson.dumps(content, default=placeholder, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return [text]
    parts, rest = [], text
    for i, blob in enumerate(blobs):  # base64 needs no JSON escaping: it goes in as it is
        head, _, rest = rest.partition(f'"{_MARK}{i}"'.encode())
        parts += [head + b'"', *blob.pieces, b'"']
    parts.append(rest)
    return parts


_MARK = "__loss_service_base64_"  # responses hold only the service's own strings: no clash
