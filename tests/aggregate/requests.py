"""Requests of a reference case's data set as the HTTP API takes them, and numbers as it writes them."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..reference.case import Case

AGGREGATED = ("mean", "sum", "batchmean")  # the reductions that carry an aggregate


def body(case: Case, tensors: dict[str, torch.Tensor], params: dict, reduction: str, per_sample: bool = False) -> dict:
    """The request of ``tensors`` (floats in their own dtype) with the case's loss and ``params``."""
    inputs = {}
    for role, t in tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        inputs[role] = {"shape": list(t.shape), "dtype": dtype, "data": t.reshape(-1).tolist()}
    loss = {"name": case.loss, "params": params, "reduction": reduction}
    return {"loss": loss, "inputs": inputs, "return_per_sample": per_sample}


def number(v: float | str | None) -> float:
    """A JSON number of the response ("NaN", "Infinity" and "-Infinity" are written as strings)."""
    assert v is not None
    return float(v)


def array(t: dict) -> np.ndarray:
    """A response tensor in its JSON form."""
    return np.array([float(v) for v in t["data"]], dtype=np.float64).reshape(t["shape"])


def aggregate(answer: dict) -> tuple[float, float]:
    agg = answer["aggregate"]
    return number(agg["sum"]), number(agg["weight"])


def same(a: float, b: float) -> bool:
    """Equal numbers (NaN equals NaN; 0.0 equals -0.0)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def close(a: float, b: float, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
    return same(a, b) or abs(a - b) <= atol + rtol * abs(b)
