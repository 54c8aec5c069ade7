"""A request's aggregate and per-sample values never depend on its batch-mates.

Every configuration of the reference table whose value splits into samples, two draws each, in
float32 and float64, with each aggregated reduction: each request is sent alone, then all of them
at once through the same app (the engine batches those that agree on loss, params, dtype and
shapes); the aggregate and the per-sample values of each batched answer equal the lone ones bit for
bit, but for the PyTorch kernels that round an element by its place in a buffer (an ulp, see
tests/engine/test_half_precision.py).
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import torch

from ..conftest import alone_then_together
from ..engine.test_half_precision import KERNEL_POSITION_DEPENDENT
from ..reference.case import reductions_of
from .requests import AGGREGATED, aggregate, array, body
from .test_aggregates import DECOMPOSABLE

ULPS = 4
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def _answers(bodies: list[dict], order: list[int]) -> tuple[list[dict], list[dict]]:
    alone, together = asyncio.run(alone_then_together(bodies, order))
    for r in [*alone, *together]:
        assert r.status_code == 200, r.text
    return [r.json() for r in alone], [r.json() for r in together]


def _differences(alone: dict, batched: dict, tolerance: float) -> list[str]:
    if tolerance == 0:  # bitwise: the same JSON numbers (shortest round-trip forms) in the same dtype
        return [
            f"{part}: {alone[part]} alone, {batched[part]} batched"
            for part in ("value", "aggregate", "per_sample")
            if alone[part] != batched[part]
        ]
    pairs = [(np.array(aggregate(alone)), np.array(aggregate(batched)), "aggregate")]
    pairs.append((array(alone["per_sample"]), array(batched["per_sample"]), "per_sample"))
    out = []
    for a, b, part in pairs:
        scale = max(1.0, float(np.nanmax(np.abs(a))))
        if not np.allclose(a, b, rtol=0, atol=tolerance * scale, equal_nan=True):
            out.append(f"{part}: {a} alone, {b} batched")
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_aggregates_and_per_sample_values_equal_the_lone_ones(dtype):
    bodies, labels = [], []
    for i, case in enumerate(DECOMPOSABLE):
        reductions = [r for r in reductions_of(case) if r in AGGREGATED]
        for seed in (1, 2):
            tensors = case.make(torch.Generator().manual_seed(seed), getattr(torch, dtype))
            reduction = reductions[(i + seed) % len(reductions)]
            bodies.append(body(case, tensors, case.params, reduction, per_sample=True))
            labels.append(f"{case.id} seed {seed} {reduction}")
    order = list(range(len(bodies)))
    random.Random(dtype).shuffle(order)
    alone, together = _answers(bodies, order)
    assert all(a["meta"]["batch_size"] == 1 for a in alone)
    assert max(b["meta"]["batch_size"] for b in together) > 1, "no request was batched"
    failures = []
    for label, a, b in zip(labels, alone, together, strict=True):
        tolerant = (a["loss"], dtype) in KERNEL_POSITION_DEPENDENT
        diff = _differences(a, b, ULPS * EPS[dtype] if tolerant else 0)
        if diff:
            failures.append(f"{label} (batch of {b['meta']['batch_size']}): " + "; ".join(diff))
    assert not failures, "\n".join(failures[:20])
