"""The one dtype vocabulary: every dtype the service takes, with its names in each wire format.

Every protocol, codec and check looks dtypes up here: the contract's name (``float32``), the
numpy storage (bfloat16, which numpy lacks, is held as float32 until it becomes a torch tensor),
the torch dtype, the .npy type (kind and item size) and the Open Inference Protocol's datatype
(``FP32``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DType:
    name: str  # the contract's name
    storage: np.dtype  # how a tensor of this dtype is held before it becomes a torch tensor
    torch: torch.dtype
    v2: str  # the Open Inference Protocol's datatype
    npy: bool  # whether an .npy file holds it as itself (bfloat16 has no .npy type)

    @property
    def is_float(self) -> bool:
        return self.torch.is_floating_point

    @property
    def itemsize(self) -> int:
        """Bytes per element on the wire (the Open Inference Protocol's binary form, torch)."""
        return self.torch.itemsize

    @property
    def max(self) -> float:
        """The largest finite value of a float dtype."""
        return float(torch.finfo(self.torch).max)


def _d(name: str, storage: str, v2: str, npy: bool = True) -> DType:
    return DType(name, np.dtype(storage), getattr(torch, name), v2, npy)


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _d("float16", "float16", "FP16"),
        _d("bfloat16", "float32", "BF16", npy=False),
        _d("float32", "float32", "FP32"),
        _d("float64", "float64", "FP64"),
        _d("int8", "int8", "INT8"),
        _d("int16", "int16", "INT16"),
        _d("int32", "int32", "INT32"),
        _d("int64", "int64", "INT64"),
        _d("uint8", "uint8", "UINT8"),
        _d("bool", "bool", "BOOL"),
    )
}
FLOAT_DTYPES = tuple(name for name, d in DTYPES.items() if d.is_float)
BY_V2 = {d.v2: d for d in DTYPES.values()}
# numpy kind and item size -> our dtype: how an .npy file's type is read
BY_NPY = {(d.storage.kind, d.storage.itemsize): d for d in DTYPES.values() if d.npy}
FLOAT_MAX = {name: DTYPES[name].max for name in FLOAT_DTYPES}


def of_array(arr: np.ndarray) -> DType | None:
    """Our dtype of a numpy array's own type (None for a type we do not take)."""
    return BY_NPY.get((arr.dtype.kind, arr.dtype.itemsize))
