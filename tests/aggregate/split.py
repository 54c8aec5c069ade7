"""A reference case's data set cut into requests: rows along each role's batch dimension, and the
params that span the batch (bce's per-element weight) cut with them."""

from __future__ import annotations

import numpy as np
import torch

from service.losses import default_registry

from ..reference.case import Case

REGISTRY = default_registry()


def batch_dims(case: Case) -> dict[str, int | None]:
    """Each role's batch dimension (None for a role the whole batch shares: arcface's weight)."""
    return {r.name: r.batch_dim for r in REGISTRY.get(case.loss).roles}


def batch_size(case: Case, tensors: dict[str, torch.Tensor]) -> int:
    """N: the samples of the data set, along the first role's batch dimension."""
    first = REGISTRY.get(case.loss).roles[0]
    return tensors[first.name].shape[first.batch_dim or 0]


def rows(case: Case, tensors: dict[str, torch.Tensor], start: int, stop: int) -> tuple[dict, dict]:
    """Samples ``start`` to ``stop`` of the data set: its tensors and params (a list param with the
    input's rank and N rows spans the batch, and is cut too)."""
    dims = batch_dims(case)
    part = {k: t if dims[k] is None else t.narrow(dims[k], start, stop - start) for k, t in tensors.items()}
    first = REGISTRY.get(case.loss).roles[0].name
    rank, n = tensors[first].dim(), batch_size(case, tensors)
    params = {}
    for name, value in case.params.items():
        spans = isinstance(value, list) and n > 1 and np.ndim(value) == rank and np.shape(value)[0] == n
        params[name] = value[start:stop] if spans else value
    return part, params


def samples(case: Case, tensors: dict[str, torch.Tensor]) -> list[tuple[dict, dict]]:
    """Each sample of the data set alone: its tensors and params."""
    return [rows(case, tensors, i, i + 1) for i in range(batch_size(case, tensors))]
