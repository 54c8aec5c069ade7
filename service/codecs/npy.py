"""The .npy format (versions 1-3), read without pickle and without allocating before the checks."""

from __future__ import annotations

import ast
import math
import struct
from typing import TypeGuard

import numpy as np

from ..arrays import check_shape, short
from ..dtypes import BY_NPY
from ..errors import InvalidInput, Loc, MalformedRequest

MAGIC = b"\x93NUMPY"
# A header is a short dict literal (np.save pads it to 64 bytes); numpy itself reads at most 10000
# bytes of one unless told the file is trusted. Never hand ast more than this.
MAX_HEADER_BYTES = 64 * 1024


def read_npy(buf: bytes | bytearray, loc: Loc, max_elements: int) -> tuple[np.ndarray, str]:
    """Parse an .npy file into a writable, native-order, C-contiguous array and its dtype name
    (a view of ``buf`` when it is a writable buffer already in that layout, else a copy)."""
    header, offset = _header(buf, loc)
    shape = header.get("shape")
    fortran = header.get("fortran_order")
    if "descr" not in header or not isinstance(fortran, bool) or not _is_shape(shape):
        raise MalformedRequest.at(loc, "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'")
    dtype, name = _dtype(header["descr"], loc)
    check_shape(shape, loc, max_elements)  # before numpy sees the shape
    count = math.prod(shape)
    need = count * dtype.itemsize
    have = len(buf) - offset
    if have != need:
        raise MalformedRequest.at(
            loc, f"malformed .npy: shape {tuple(shape)} of {dtype.str} needs {need} bytes of data; got {have}"
        )
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    if arr.flags.writeable and arr.flags.c_contiguous and dtype.isnative:
        return arr, name
    # a writable, native-order, C-ordered copy (a view of bytes is read-only; 0-d stays 0-d)
    return np.array(arr, dtype=dtype.newbyteorder("="), order="C"), name


def _header(buf: bytes | bytearray, loc: Loc) -> tuple[dict, int]:
    if len(buf) < 10 or buf[:6] != MAGIC:
        raise MalformedRequest.at(loc, "malformed .npy: missing the \\x93NUMPY magic string")
    major = buf[6]
    if major == 1:
        (size,), start = struct.unpack("<H", buf[8:10]), 10
    elif major in (2, 3) and len(buf) >= 12:
        (size,), start = struct.unpack("<I", buf[8:12]), 12
    else:
        raise MalformedRequest.at(loc, f"malformed .npy: unsupported format version {major}")
    if size > MAX_HEADER_BYTES:
        raise MalformedRequest.at(loc, f"malformed .npy: header of {size} bytes; the limit is {MAX_HEADER_BYTES}")
    if len(buf) < start + size:
        raise MalformedRequest.at(loc, "malformed .npy: truncated header")
    try:
        text = buf[start : start + size].decode("utf8" if major == 3 else "latin1")
        header = ast.literal_eval(text)  # literals only: never unpickles or evaluates code
    except (ValueError, TypeError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        # TypeError: a dict or set literal with an unhashable key, {[1]: 2}
        raise MalformedRequest.at(loc, "malformed .npy header") from None
    if not isinstance(header, dict):
        raise MalformedRequest.at(loc, "malformed .npy header")
    return header, start + size


def _dtype(descr: object, loc: Loc) -> tuple[np.dtype, str]:
    supported = ", ".join(d.name for d in BY_NPY.values())
    if not isinstance(descr, str):
        raise InvalidInput.at(
            loc, f"unsupported .npy dtype {short(descr, 80)} (structured); expected one of {supported}"
        )
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError):  # SyntaxError: numpy parses '01' or ',' as a comma-string
        raise MalformedRequest.at(loc, f"malformed .npy: unknown dtype {short(descr, 80)}") from None
    ours = BY_NPY.get((dtype.kind, dtype.itemsize))
    if ours is None or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidInput.at(loc, f"unsupported .npy dtype {short(descr, 80)}; expected one of {supported}")
    return dtype, ours.name


def _is_shape(shape: object) -> TypeGuard[tuple[int, ...]]:
    return isinstance(shape, tuple) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)


def npy_header(arr: np.ndarray) -> bytes:
    """The .npy (version 1.0) header of a C-contiguous array, padded to a multiple of 64 bytes."""
    header = f"{{'descr': '{arr.dtype.str}', 'fortran_order': False, 'shape': {tuple(arr.shape)!r}, }}"
    pad = 64 - (len(MAGIC) + 4 + len(header) + 1) % 64
    head = header + " " * pad + "\n"
    return MAGIC + b"\x01\x00" + struct.pack("<H", len(head)) + head.encode("latin1")


def write_npy(arr: np.ndarray) -> bytes:
    """An .npy (version 1.0) file of an array (written C-contiguous)."""
    arr = np.asarray(arr, order="C")
    return b"".join((npy_header(arr), arr.reshape(-1).view(np.uint8).data))  # the data copied once
