"""Computing composites: every term's value from the same tensors, one backward pass for the
gradient of their weighted sum.

Composites whose terms would batch as single-loss requests do (same losses, params, dtypes,
gradient roles, non-batch dimensions, weights) share a compute call: their tensors are
concatenated once per role, each term reduces every request from its own rows by the arithmetic
it uses alone, and one backward pass gives every request its gradients. Others run alone.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from ..losses.composite import CompositeJob
from .compute import Outcome, batch_len, concat, group_key, reduce_group, summaries, term_totals, to_device, to_numpy


def run_composite(job: CompositeJob, device: torch.device) -> Outcome:
    tensors: dict[int, torch.Tensor] = {}  # one tensor per distinct array (terms share them)
    leaves: dict[str, list[torch.Tensor]] = {}
    grad_roles = set(job.grad_roles)
    with torch.enable_grad() if grad_roles else torch.inference_mode():
        for term in job.terms:
            for role, arr in term.arrays.items():
                if id(arr) not in tensors:
                    t = to_device(arr, term, device)
                    if role in grad_roles and t.is_floating_point():
                        t.requires_grad_(True)
                        leaves.setdefault(role, []).append(t)
                    tensors[id(arr)] = t
        outcomes = []
        total = None
        for term, weight in zip(job.terms, job.weights, strict=True):
            inputs = {role: tensors[id(arr)] for role, arr in term.arrays.items()}
            totals, outcome = term_totals(term, inputs)
            outcomes.append(outcome)
            part = totals[0] * weight
            total = part if total is None else total + part
        assert total is not None
        flat = [t for ts in leaves.values() for t in ts]
        grads = torch.autograd.grad(total, flat, allow_unused=True) if flat else []
    by_role: dict[str, torch.Tensor] = {}  # a role held by two terms as two tensors: the sum of both
    pairs = [(role, t) for role, ts in leaves.items() for t in ts]
    for (role, leaf), grad in zip(pairs, grads, strict=True):
        g = torch.zeros_like(leaf) if grad is None else grad
        by_role[role] = g if role not in by_role else by_role[role] + g
    value = float(total.detach().cpu())
    out = {r: to_numpy(by_role[r]) for r in job.grad_roles if r in by_role}
    return Outcome(value, None, out, 1, None, _weighted(job, outcomes), terms=outcomes)


def composite_key(job: CompositeJob, solo_elements: int) -> tuple | None:
    """Composites with equal keys may share a compute call; None: the composite runs alone. Each
    term must batch as a request of its own would, and each role be one array, batched alike, in
    every term that takes it."""
    if job.elements > solo_elements:
        return None
    keys = []
    for term in job.terms:
        key = group_key(term, sys.maxsize)
        if key is None:
            return None
        keys.append(key)
    for role, arr in job.arrays.items():
        holders = [t for t in job.terms if role in t.arrays]
        if any(t.arrays[role] is not arr for t in holders) or len(_layouts(holders, role)) != 1:
            return None
    return ("composite", tuple(keys), job.weights, job.grad_roles)


def _layouts(terms: list, role: str) -> set[tuple[int, tuple[int, ...]]]:
    """How the terms that take ``role`` batch it: (batch dim, ragged dims)."""
    return {(r.batch_dim or 0, r.ragged_dims) for t in terms for r in t.loss.roles if r.name == role}


def run_composite_group(jobs: list[CompositeJob], device: torch.device) -> list[Outcome]:
    """Compute composites of one ``composite_key`` together."""
    head, k = jobs[0], len(jobs)
    sizes = [batch_len(j.terms[0]) for j in jobs]
    layout = {role: next(iter(_layouts(list(head.terms), role))) for role in head.arrays}
    inputs = {
        role: to_device(concat([j.arrays[role] for j in jobs], *layout[role]), head, device)  # type: ignore[arg-type]
        for role in head.arrays
    }
    leaves = [r for r in head.grad_roles if inputs[r].is_floating_point()]
    with torch.enable_grad() if leaves else torch.inference_mode():
        for role in leaves:
            inputs[role].requires_grad_(True)
        total, reduced_terms = None, []
        for i, weight in enumerate(head.weights):
            term_jobs = [j.terms[i] for j in jobs]
            _, reduced = reduce_group(term_jobs, {r: inputs[r] for r in term_jobs[0].arrays}, sizes)
            reduced_terms.append((term_jobs, reduced))
            part = reduced.totals * weight
            total = part if total is None else total + part
        assert total is not None
        grads = torch.autograd.grad(total.sum(), [inputs[r] for r in leaves]) if leaves else []
    values = total.detach().cpu().tolist()
    terms = [summaries(term_jobs, sizes, reduced) for term_jobs, reduced in reduced_terms]
    host = {role: to_numpy(g) for role, g in zip(leaves, grads, strict=True)}
    out, offset = [], 0
    for j, (job, n) in enumerate(zip(jobs, sizes, strict=True)):
        own = {role: _rows(g, layout[role], offset, n, job.arrays[role].shape) for role, g in host.items()}
        term_outcomes = [Outcome(t[j][0], None, {}, k, t[j][1], t[j][2]) for t in terms]
        out.append(Outcome(values[j], None, own, k, None, _weighted(job, term_outcomes), terms=term_outcomes))
        offset += n
    return out


def _rows(g: np.ndarray, layout: tuple[int, tuple[int, ...]], offset: int, n: int, shape: tuple) -> np.ndarray:
    """A request's own rows of a batched gradient, cut back to its sizes in the ragged dims."""
    dim, ragged = layout
    index: list[slice] = [slice(None)] * g.ndim
    index[dim] = slice(offset, offset + n)
    for d in ragged:
        index[d] = slice(0, shape[d])
    return np.ascontiguousarray(g[tuple(index)])


def _weighted(job: CompositeJob, terms: list[Outcome]) -> np.ndarray | None:
    """The composite's per-sample values, the weighted sum of its terms' (float64, then its dtype)."""
    samples = [o.per_sample for o in terms if o.per_sample is not None]
    if not job.return_per_sample or len(samples) != len(terms):
        return None
    weighted = np.zeros(samples[0].shape, dtype=np.float64)
    for w, sample in zip(job.weights, samples, strict=True):
        weighted += w * sample.astype(np.float64)
    return weighted.astype(samples[0].dtype)
