"""Computing a group of compatible jobs in one ``reduction="none"`` call.

Requests whose loss, params, dtype, gradient roles and non-batch dimensions agree are concatenated
along their batch dimension; each request's value, dataset aggregate (S, W) and per-sample values
are reduced from its own rows (reduce.py), and one backward pass over the sum of the values gives
every request its gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..losses import shared
from ..losses.prepare import Job
from .reduce import Reduced, reduce_elementwise

_CPU = torch.device("cpu")


@dataclass
class Outcome:
    value: float | None
    elementwise: np.ndarray | None
    grads: dict[str, np.ndarray]
    batch_size: int
    # (S, W): over any split of a data set into requests, sum(S) / sum(W) is the loss's mean over
    # the whole set (value == S / W for mean and batchmean, value == S for sum); None where the
    # value cannot be split so (losses that reduce the whole request) and for reduction none
    aggregate: tuple[float, float] | None = None
    per_sample: np.ndarray | None = None  # each sample's value under the reduction, shape (N,)
    terms: list[Outcome] | None = None  # a composite's terms, each as a request alone


def group_key(job: Job, solo_elements: int = 2**20) -> tuple | None:
    """Jobs with equal keys may share a compute call; None means the job runs alone (large jobs
    gain nothing from batching: it would only add a concatenation and the slicing)."""
    if job.elements > solo_elements:
        return None
    memo = job.plan.memo if job.plan is not None else {}
    if "group" not in memo:  # the same for every job of a plan: worked out once
        memo["group"] = _group_key(job)
    return memo["group"]


def _group_key(job: Job) -> tuple | None:
    if not job.loss.batchable(job.params, job.arrays):
        return None
    dims: list[tuple[str, tuple[int | str, ...]] | None] = []
    for r in job.loss.roles:
        arr = job.arrays.get(r.name)
        if arr is None:
            dims.append(None)
            continue
        if r.batch_dim is None or arr.ndim <= r.batch_dim:
            return None
        shape: list[int | str] = list(arr.shape)
        for d in r.ragged_dims:
            shape[d] = "ragged"
        del shape[r.batch_dim]
        dims.append((str(arr.dtype), tuple(shape)))
    return (job.loss.name, job.params.model_dump_json(), job.dtype, job.grad_roles, tuple(dims))


def batch_len(job: Job) -> int:
    first = job.loss.roles[0]
    return job.arrays[first.name].shape[first.batch_dim or 0]


def run_group(jobs: list[Job], device: torch.device) -> list[Outcome]:
    """Compute ``jobs`` (all of one group key) together."""
    head = jobs[0]
    sizes = [batch_len(j) for j in jobs] if len(jobs) > 1 else [None]
    inputs = {}
    for r in head.loss.roles:
        if r.name in head.arrays:
            parts = [j.arrays[r.name] for j in jobs]
            arr = parts[0] if len(parts) == 1 else concat(parts, r.batch_dim or 0, r.ragged_dims)
            inputs[r.name] = to_device(arr, head, device)
    leaves = [inputs[r] for r in head.grad_roles]
    memo = head.shared if len(jobs) == 1 and not leaves else None  # a request's losses share values alone
    with torch.enable_grad() if leaves else torch.inference_mode():
        for leaf in leaves:
            leaf.requires_grad_(True)
        if memo is None:
            el, reduced = reduce_group(jobs, inputs, sizes)
        else:
            with shared.memo(memo):
                el, reduced = reduce_group(jobs, inputs, sizes)
        grads = torch.autograd.grad(reduced.totals.sum(), leaves) if leaves else []
    return _outcomes(jobs, sizes, el, reduced, dict(zip(head.grad_roles, grads, strict=True)))


def reduce_group(jobs: list[Job], inputs: dict[str, torch.Tensor], sizes: list) -> tuple[torch.Tensor, Reduced]:
    """One forward call over the group's (concatenated) inputs: the elementwise values, and each
    request's value (for reduction none, the sum of its elementwise values, which is what its
    gradient is taken of), (S, W) and per-sample values from its own rows (see reduce.py)."""
    head = jobs[0]
    el = head.loss.forward(inputs, head.params)
    return el, reduce_elementwise(el, inputs, jobs, sizes)


def term_totals(job: Job, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Outcome]:
    """One term of a composite, computed as a request alone: its value as a tensor of shape (1,)
    in the autograd graph, and its outcome (the value, aggregate and per-sample values a request
    alone gets)."""
    _, reduced = reduce_group([job], inputs, [None])
    (summary,) = summaries([job], [None], reduced)
    return reduced.totals, Outcome(summary[0], None, {}, 1, summary[1], summary[2])


def summaries(jobs: list[Job], sizes: list, reduced: Reduced) -> list[tuple]:
    """Per job, (value, aggregate, per-sample values) on the host: one copy for the whole group."""
    totals = reduced.totals.detach()
    if reduced.sums is None or reduced.weights is None:
        host = [_on(totals, _CPU).tolist(), [None] * len(jobs), [None] * len(jobs)]
    elif totals.device.type == "cpu":
        host = [totals.tolist(), reduced.sums.tolist(), reduced.weights.tolist()]
    else:  # one transfer from the device
        host = _on(torch.stack([totals.to(torch.float64), reduced.sums, reduced.weights]), _CPU).tolist()
    if reduced.samples is None:  # the usual group: no per-sample values to cut
        return [
            (None, None, None) if job.reduction == "none" else (value, None if s is None else (s, w), None)
            for job, value, s, w in zip(jobs, *host, strict=True)
        ]
    samples = _on(reduced.samples, _CPU)
    out: list[tuple] = []
    offset = 0
    for job, n, value, s, w in zip(jobs, sizes, *host, strict=True):
        per_sample = None
        if job.return_per_sample:
            per_sample = _numpy(samples if n is None else samples.narrow(0, offset, n))
        offset += n or 0
        if job.reduction == "none":
            out.append((None, None, None))
        else:
            out.append((value, None if s is None else (s, w), per_sample))
    return out


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; no call at all when it is there already (on the CPU, the usual case)."""
    return t if t.device == device else t.to(device)


def concat(parts: list[np.ndarray], axis: int, ragged: tuple[int, ...]) -> np.ndarray:
    """Concatenate along ``axis``, zero-padding the ragged dims to the longest part."""
    if ragged:
        longest = {d: max(p.shape[d] for p in parts) for d in ragged}
        parts = [np.pad(p, [(0, longest[d] - p.shape[d]) if d in longest else (0, 0) for d in range(p.ndim)])
                 for p in parts]  # fmt: skip
    return np.concatenate(parts, axis=axis)


def _unpad(t: torch.Tensor, job: Job, role: str) -> torch.Tensor:
    """A batched gradient cut back to the request's own sizes in the ragged dims."""
    r = job.loss.role(role)
    for d in r.ragged_dims if r else ():
        t = t.narrow(d, 0, job.arrays[role].shape[d])
    return t


def _slice(el, tensors, dims, offset, n):
    """A request's own slice of the elementwise values and of its tensors (all when alone)."""
    if n is None:
        return el, tensors
    own_el = None if el is None else el.narrow(0, offset, n)
    return own_el, _Rows(tensors, dims, offset, n)


def _batch_dims(job: Job) -> dict[str, int]:
    return {r.name: r.batch_dim or 0 for r in job.loss.roles}


class _Rows(Mapping):
    """One request's rows of batched tensors, narrowed only when its reduction asks for them."""

    def __init__(self, tensors: dict[str, torch.Tensor], dims: dict[str, int], offset: int, n: int) -> None:
        self._tensors, self._dims, self._offset, self._n = tensors, dims, offset, n

    def __getitem__(self, role: str) -> torch.Tensor:
        return self._tensors[role].narrow(self._dims[role], self._offset, self._n)

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def to_device(arr: np.ndarray, job: Job, device: torch.device) -> torch.Tensor:
    """The compute dtype on the device; host memory pinned first so the copy can overlap."""
    t = torch.from_numpy(arr)
    if t.is_floating_point() and t.dtype != job.torch_dtype:
        t = t.to(job.torch_dtype)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t


def _outcomes(jobs, sizes, el, reduced, grads) -> list[Outcome]:
    """Copy the results to the host once for the whole group, then cut them per request."""
    per_job = summaries(jobs, sizes, reduced)
    el_host = _on(el.detach(), _CPU) if any(j.return_elementwise for j in jobs) else None
    grads_host = {k: _on(g.detach(), _CPU) for k, g in grads.items()}
    k = len(jobs)
    if el_host is None and not grads_host:  # values only (most small requests): nothing to cut
        return [Outcome(value, None, {}, k, aggregate, per_sample) for value, aggregate, per_sample in per_job]
    dims = _batch_dims(jobs[0])
    out, offset = [], 0
    for job, n, (value, aggregate, per_sample) in zip(jobs, sizes, per_job, strict=True):
        own_el, own_grads = _slice(el_host, grads_host, dims, offset, n)
        elementwise = _numpy(own_el) if job.return_elementwise else None
        grads = {k: _numpy(_unpad(own_grads[k], job, k)) for k in grads_host}
        out.append(Outcome(value, elementwise, grads, k, aggregate, per_sample))
        offset += n or 0
    return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor, wherever it is, as a host array (bfloat16 as float32, which holds it exactly)."""
    return _numpy(_on(t.detach(), _CPU))


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()
