"""Computing a group of compatible jobs in one ``reduction="none"`` call.

Requests whose loss, params, dtype, gradient roles and non-batch dimensions agree are concatenated
along their batch dimension; each request's value is reduced from its own slice by the loss's own
formula, and one backward pass over the sum of the values gives every request its gradients.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..losses.prepare import Job

_CPU = torch.device("cpu")
_HALF = (torch.float16, torch.bfloat16)  # reduced in float32 (_reduce_half)


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
            arr = parts[0] if len(parts) == 1 else _concat(parts, r.batch_dim or 0, r.ragged_dims)
            inputs[r.name] = to_device(arr, head, device)
    leaves = [inputs[r] for r in head.grad_roles]
    with torch.enable_grad() if leaves else torch.inference_mode():
        for leaf in leaves:
            leaf.requires_grad_(True)
        el, totals = reduce_group(jobs, inputs, sizes)
        grads = torch.autograd.grad(totals.sum(), leaves) if leaves else []
    host_totals = _on(totals.detach(), _CPU).tolist()
    values = [None if j.reduction == "none" else v for j, v in zip(jobs, host_totals, strict=True)]
    return _outcomes(jobs, sizes, el, values, dict(zip(head.grad_roles, grads, strict=True)))


def reduce_group(jobs: list[Job], inputs: dict[str, torch.Tensor], sizes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward call over the group's (concatenated) inputs: the elementwise values, and each
    request's value from its own rows (for reduction none, the sum of its elementwise values,
    which is what its gradient is taken of)."""
    head = jobs[0]
    el = head.loss.forward(inputs, head.params)
    if el.dtype in _HALF and head.loss.mean_weights is not None:
        totals = _reduce_half(el, inputs, jobs, sizes)
    elif head.loss.mean_weights is not None and (len(jobs) > 1 or _batchable(head)):
        totals = _reduce_together(el, inputs, jobs, sizes)  # alone too: the same arithmetic as in a group
    else:
        totals = _reduce_each(el, inputs, jobs, sizes)
    return el, totals


def term_totals(job: Job, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Outcome]:
    """One term of a composite, computed as a request alone: its value as a tensor of shape (1,)
    in the autograd graph, and its outcome (the value, and what else a request alone gets)."""
    _, totals = reduce_group([job], inputs, [None])
    return totals, Outcome(float(totals.detach()[0]), None, {}, 1)


def _batchable(job: Job) -> bool:
    """Whether the job could share a compute call, whatever its size (its elementwise values have
    its rows first)."""
    return group_key(job, solo_elements=sys.maxsize) is not None


def _reduce_each(el, inputs, jobs, sizes) -> torch.Tensor:
    """Each request's value from its own slice by its loss's ``reduce`` (the sum of its
    elementwise values for reduction none, which is what its gradient is taken of)."""
    dims = _batch_dims(jobs[0])
    totals, offset = [], 0
    for job, n in zip(jobs, sizes, strict=True):
        el_i, own = _slice(el, inputs, dims, offset, n)
        totals.append(el_i.sum() if job.reduction == "none" else job.loss.reduce(el_i, own, job.params, job.reduction))
        offset += n or 0
    return torch.stack(totals)


def _reduce_together(el, inputs, jobs, sizes) -> torch.Tensor:
    """The same values as ``_reduce_each`` for a loss with ``mean_weights``, in a few tensor
    operations for the whole group: per request, sum(el) over its rows, divided (for mean) by
    the sum of its weights over its rows (or its element count).

    Used alone too, so that a request's value never depends on its batch-mates, to the last bit:
    each row is summed on its own, and a request's row sums are added in row order (index_add),
    which is the same arithmetic whichever rows come before and after."""
    head = jobs[0]
    k = len(jobs)
    if sizes == [None]:  # alone
        sizes = [batch_len(head)]
    owner = _on(torch.from_numpy(np.repeat(np.arange(k), sizes)), el.device)
    # float64 sums (rows summed in float64, then added per request): as exact as PyTorch's own
    # float32 reductions, where float32 added row after row would drift by about 1e-6 on long requests
    sums = torch.zeros(k, dtype=torch.float64, device=el.device).index_add(0, owner, _row_sums(el))
    weights = head.loss.mean_weights(el, inputs, head.params)
    if weights is None:
        per_row = el[0].numel()
        counts = torch.tensor([n * per_row for n in sizes], dtype=torch.float64, device=el.device)
    else:
        counts = torch.zeros(k, dtype=torch.float64, device=el.device).index_add(0, owner, _row_sums(weights))
    wants_mean = [j.reduction == "mean" for j in jobs]
    if all(wants_mean):  # the usual group: one division (each tensor operation costs a GIL round trip)
        totals = sums / counts
    elif not any(wants_mean):
        totals = sums
    else:
        means = torch.tensor(wants_mean, device=el.device)
        # divide only where the mean is wanted, so that a zero count elsewhere puts no NaN in a gradient
        totals = torch.where(means, sums / torch.where(means, counts, torch.ones_like(counts)), sums)
    return totals if el.dtype == torch.float64 else totals.to(el.dtype)


def _reduce_half(el, inputs, jobs, sizes) -> torch.Tensor:
    """float16/bfloat16, for a loss with ``mean_weights``: each request's value as PyTorch's own
    ``sum`` and ``mean`` give it for that request alone: one float32 sum of its values, divided (for
    mean) by its element count or the float32 sum of its weights, rounded to the dtype once.
    (Summed in the dtype, a sum overflows or drops low bits, depending on what else is in the batch.)

    Each request's values are summed as a tensor of their own, which is the order PyTorch sums
    them in: row sums added up are in another order, and now and then round to another value. The
    gradient is autograd's for that mean: 1/count in float32, cast to the dtype, as PyTorch's
    ``mean`` gives it. A few tensor operations per request, where ``_reduce_together`` takes a few
    per group: the float32 and float64 paths do not come here."""
    head = jobs[0]
    wants_mean = any(j.reduction == "mean" for j in jobs)
    weights = head.loss.mean_weights(el, inputs, head.params) if wants_mean else None
    totals, offset = [], 0
    for job, n in zip(jobs, sizes, strict=True):
        own = el if n is None else el.narrow(0, offset, n)
        total = own.sum(dtype=torch.float32)
        if job.reduction == "mean":
            if weights is None:
                total = total / own.numel()
            else:
                own_weights = weights if n is None else weights.narrow(0, offset, n)
                total = total / own_weights.sum(dtype=torch.float32)
        totals.append(total)
        offset += n or 0
    return torch.stack(totals).to(el.dtype)


def _row_sums(t: torch.Tensor) -> torch.Tensor:
    """Per row (first dim), the sum of everything in it, in float64: ``t`` itself when it is 1-D."""
    if t.dim() == 1:
        return t if t.dtype == torch.float64 else t.to(torch.float64)
    return t.reshape(t.shape[0], -1).sum(1, dtype=torch.float64)


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; no call at all when it is there already (on the CPU, the usual case)."""
    return t if t.device == device else t.to(device)


def _concat(parts: list[np.ndarray], axis: int, ragged: tuple[int, ...]) -> np.ndarray:
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


def _outcomes(jobs, sizes, el, values, grads) -> list[Outcome]:
    """Copy the results to the host once for the whole group, then cut them per request."""
    el_host = _on(el.detach(), _CPU) if any(j.return_elementwise for j in jobs) else None
    grads_host = {k: _on(g.detach(), _CPU) for k, g in grads.items()}
    if el_host is None and not grads_host:  # values only (most small requests): nothing to cut
        return [Outcome(value, None, {}, len(jobs)) for value in values]
    dims = _batch_dims(jobs[0])
    out, offset = [], 0
    for job, n, value in zip(jobs, sizes, values, strict=True):
        own_el, own_grads = _slice(el_host, grads_host, dims, offset, n)
        elementwise = _numpy(own_el) if job.return_elementwise else None
        grads = {k: _numpy(_unpad(own_grads[k], job, k)) for k in grads_host}
        out.append(Outcome(value, elementwise, grads, len(jobs)))
        offset += n or 0
    return out


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()
