"""Computing a composite: every term's value from the same tensors, one backward pass for the
gradient of their weighted sum. A composite runs alone (its terms are not batched with other
requests)."""

from __future__ import annotations

import numpy as np
import torch

from ..losses.composite import CompositeJob
from .compute import Outcome, term_totals, to_device


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
    out = {r: _host(by_role[r]) for r in job.grad_roles if r in by_role}
    per_sample = None
    samples = [o.per_sample for o in outcomes if o.per_sample is not None]
    if job.return_per_sample and len(samples) == len(outcomes):
        weighted = np.zeros(samples[0].shape, dtype=np.float64)
        for w, sample in zip(job.weights, samples, strict=True):
            weighted += w * sample.astype(np.float64)
        per_sample = weighted.astype(samples[0].dtype)
    return Outcome(value, None, out, 1, None, per_sample, terms=outcomes)


def _host(t: torch.Tensor):
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()
