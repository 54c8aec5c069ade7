"""Batched answers equal lone answers, in every float dtype.

Each request is sent alone first (nothing else in flight: ``meta.batch_size`` 1), then all of them
at once through the same app (the engine concatenates those that agree on loss, params, dtype,
gradient roles and non-batch dimensions into one compute call); every answer must equal the lone
one: the same status, and for a 200 the same value, elementwise values and gradients: bitwise in
every dtype, but to a few units in the last place (``ULPS``) for the PyTorch kernels that round an
element by its place in the buffer (``allowed_ulps``). The
requests are the reference table's cases (``tests/reference``: valid inputs for every
configuration of every catalog loss), each with two seeds (different values, one batching group)
and some sent several times over (identical requests side by side).
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ..conftest import alone_then_together
from ..engine.test_half_precision import KERNEL_POSITION_DEPENDENT, POSITION_DEPENDENT
from ..reference.case import reductions_of, whole
from ..reference.tables import CASES
from .conftest import examples
from .strategies import LOSSES, check_answer, tensor_out

TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
EPS = {name: torch.finfo(dtype).eps for name, dtype in TORCH.items()}
# The allowed difference, in units of the dtype's epsilon relative to the values' scale: none,
# bitwise equal in every dtype (a request's answer must not depend on its batch-mates), but for the
# PyTorch kernels that round an element by where it falls in a buffer (SIMD body or scalar tail):
# the tables of tests/engine/test_half_precision.py, which say why for each.
ULPS = 4


def allowed_ulps(loss: str, dtype: str, what: str) -> int:
    if (loss, dtype) in KERNEL_POSITION_DEPENDENT:
        return ULPS
    if (loss, dtype) in POSITION_DEPENDENT and what.startswith("grad"):
        return ULPS
    return 0


def test_every_catalog_loss_has_cases():
    """The batching properties cover the catalog only as far as the reference table does."""
    missing = sorted(set(LOSSES) - {c.loss for c in CASES})
    assert not missing, f"losses without a reference case (add one in tests/reference): {missing}"


def body_for(case, seed: int, dtype: str, reduction: str, encoding: str = "json") -> dict:
    tensors = case.make(torch.Generator().manual_seed(seed), torch.float64)
    inputs = {}
    for role, t in tensors.items():
        if t.is_floating_point():  # rounded to the dtype first: alone or batched, the same numbers
            data, name = t.to(TORCH[dtype]).double().reshape(-1).tolist(), dtype
        else:
            data, name = t.reshape(-1).tolist(), "int64"
        inputs[role] = {"data": data, "shape": list(t.shape), "dtype": name}
    reduction = reduction if reduction in reductions_of(case) else reductions_of(case)[0]
    return {
        "loss": {"name": case.loss, "params": case.params, "reduction": reduction},
        "inputs": inputs,
        "return_elementwise": not whole(case),  # a whole-request loss has none
        "return_grad": list(case.grad_roles),
        "response_encoding": encoding,
    }


def _tensor(t: dict | None) -> np.ndarray | None:
    return None if t is None else tensor_out(t)


def _value(v) -> float | None:
    return None if v is None else float(v)


def differences(a: dict, b: dict, dtype: str) -> list[str]:
    """Where answer ``b`` (batched) differs from ``a`` (alone)."""
    out = []
    for key in ("loss", "reduction"):
        if a[key] != b[key]:
            out.append(f"{key}: {a[key]!r} alone, {b[key]!r} batched")
    pairs = [("value", np.array(_value(a["value"])), np.array(_value(b["value"])))]
    if a["elementwise"] is not None or b["elementwise"] is not None:
        pairs.append(("elementwise", _tensor(a["elementwise"]), _tensor(b["elementwise"])))
    for role in sorted(set(a["grad"] or {}) | set(b["grad"] or {})):
        pairs.append((f"grad[{role}]", _tensor((a["grad"] or {}).get(role)), _tensor((b["grad"] or {}).get(role))))
    for what, x, y in pairs:
        if x is None or y is None or x.dtype == object or y.dtype == object:
            if not (x is None and y is None) and not (x.dtype == object and y.dtype == object and x == y):
                out.append(f"{what}: {x} alone, {y} batched")
            continue
        if x.shape != y.shape:
            out.append(f"{what}: shape {x.shape} alone, {y.shape} batched")
            continue
        scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(x), x, 0)), initial=0)))
        tol = allowed_ulps(a["loss"], dtype, what) * EPS[dtype] * scale
        same = (x == y) | (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= tol)
        if not same.all():
            i = np.unravel_index(np.argmax(~same), x.shape) if x.ndim else ()
            worst = float(np.nanmax(np.abs(x - y)))
            out.append(
                f"{what}: {int((~same).sum())} of {x.size} differ by up to {worst:.3g} (tolerance {tol:.3g}); "
                f"at {tuple(int(j) for j in i)}: {x[i]!r} alone, {y[i]!r} batched"
            )
    return out


def check_batched(
    bodies: list[dict], labels: list[str], dtype: str, order: list[int], need_batching: bool = True
) -> None:
    """Send ``bodies`` alone, then together in ``order``; ``labels`` name them in failures (the
    reference case, the seed: ``body_for`` remakes the body)."""
    alone, together = asyncio.run(alone_then_together(bodies, order))
    sizes = []
    failures = []
    for label, a, b in zip(labels, alone, together, strict=True):
        check_answer(a)
        check_answer(b)
        if a.status_code != b.status_code:
            failures.append(f"{label}: status {a.status_code} alone, {b.status_code} batched: {b.text[:200]}")
            continue
        if a.status_code != 200:
            continue
        ja, jb = a.json(), b.json()
        assert ja["meta"]["batch_size"] == 1, ja["meta"]
        sizes.append(jb["meta"]["batch_size"])
        diff = differences(ja, jb, ja["meta"]["dtype"])
        if diff:
            failures.append(f"{label} (batch of {jb['meta']['batch_size']}): " + "; ".join(diff))
    if need_batching:
        assert max(sizes, default=1) > 1, "no request was batched: the property was not exercised"
    assert not failures, f"{len(failures)} of {len(bodies)} batched answers differ from the lone ones:\n" + "\n".join(
        failures[:25]
    )


@pytest.mark.parametrize("dtype", list(TORCH))
def test_batched_equals_alone_over_the_reference_table(dtype):
    """Every reference case, two seeds each, every fifth one three times over, in one burst."""
    rng = random.Random(dtype)
    reductions = ["mean", "sum", "none"]
    bodies, labels = [], []
    for i, case in enumerate(CASES):
        for seed in (1, 2):
            reduction = reductions[(i + seed) % 3]
            bodies.append(body_for(case, seed, dtype, reduction))
            labels.append(f"body_for({case.id!r}, seed={seed}, {dtype!r}, {reduction!r}) {case.params}")
        if i % 5 == 0:
            bodies += [bodies[-1]] * 2
            labels += [labels[-1]] * 2
    order = list(range(len(bodies)))
    rng.shuffle(order)
    check_batched(bodies, labels, dtype, order)


@hsettings(max_examples=examples(0.1))
@given(
    dtype=st.sampled_from(list(TORCH)),
    picks=st.lists(
        st.tuples(
            st.sampled_from(range(len(CASES))),
            st.integers(0, 3),
            st.sampled_from(["mean", "sum", "none"]),
            st.integers(1, 4),
            st.sampled_from(["json", "npy"]),
        ),
        min_size=2,
        max_size=12,
    ),
    shuffle=st.randoms(use_true_random=False),
)
def test_batched_equals_alone_random_mixes(dtype, picks, shuffle):
    """A drawn mix: cases, seeds, reductions, encodings, each sent 1-4 times, in a drawn order."""
    bodies, labels = [], []
    for index, seed, reduction, copies, encoding in picks:
        case = CASES[index]
        bodies += [body_for(case, seed, dtype, reduction, encoding)] * copies
        labels += [f"body_for({case.id!r}, seed={seed}, {dtype!r}, {reduction!r}, {encoding!r}) {case.params}"] * copies
    order = list(range(len(bodies)))
    shuffle.shuffle(order)
    check_batched(bodies, labels, dtype, order, need_batching=False)
