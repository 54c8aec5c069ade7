"""Each request's value, dataset aggregate and per-sample values, from a group's elementwise values.

A decomposable loss declares how its value splits into samples (``Loss.sample_terms``, derived
from ``mean_weights`` where it has them): per sample i (a row of the elementwise values) S_i and
W_i, with the value sum(S) / sum(W) for mean and batchmean and sum(S) for sum. A request's (S, W)
are the sums of its own samples' terms, so that over any split of a data set into requests,
sum(S) / sum(W) is the loss's mean over the whole set; each sample's own value is S_i / W_i (S_i
for sum). Terms are float64, each row summed on its own and a request's rows added in row order:
the same arithmetic alone and in a group, so that nothing depends on a request's batch-mates.

In half precision, a loss with ``mean_weights`` sums each request's values as PyTorch does (one
float32 sum of the request's values, rounded to the dtype once); its (S, W) are those float32
sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..losses.base import element_count, row_counts, row_sums, rows
from ..losses.prepare import Job

HALF = (torch.float16, torch.bfloat16)
_DIVIDES = ("mean", "batchmean")  # the reductions whose value is S / W


@dataclass(eq=False, slots=True)
class Reduced:
    """A group's reduction, per request (k of them)."""

    totals: torch.Tensor  # (k,) values in the elementwise dtype (none: the sum of the values), in the graph
    sums: torch.Tensor | None = None  # (k,) S, float64, detached; None where the value spans the request
    weights: torch.Tensor | None = None  # (k,) W, float64, detached
    samples: torch.Tensor | None = None  # (rows,) each sample's value, elementwise dtype; where a job asks


def reduce_elementwise(el: torch.Tensor, inputs: Mapping[str, torch.Tensor], jobs: list[Job], sizes: list) -> Reduced:
    """Reduce ``el``, the elementwise values of ``jobs`` (one group; ``sizes`` their sample counts,
    or ``[None]`` for a job alone) computed on ``inputs``, request by request."""
    head = jobs[0]
    if head.loss.whole(head.params):
        return Reduced(_reduce_each(el, inputs, jobs, sizes))
    if sizes == [None]:
        sizes = [rows(el)]
    if el.dtype in HALF and head.loss.mean_weights is not None:
        return _reduce_half(el, inputs, jobs, sizes)
    return _reduce_together(el, inputs, jobs, sizes)


def _reduce_each(el, inputs, jobs, sizes) -> torch.Tensor:
    """A value that spans its request (a loss that is not decomposable, or pooled by its params):
    by its loss's ``reduce``. Such requests run alone."""
    (job,) = jobs
    return job.loss.reduce(el, inputs, job.params, job.reduction).reshape(1)


def _reduce_together(el, inputs, jobs, sizes) -> Reduced:
    """Per request, S and W as the sums of its samples' terms (float64), and its value S / W or S,
    in a few tensor operations for the whole group (each costs a GIL round trip)."""
    k = len(jobs)
    owner = _owner(sizes, el.device)
    keys = _terms_keys(jobs)
    terms = {key: _terms(el, inputs, jobs[0], key) for key in dict.fromkeys(keys)}
    per_row = el.numel() // rows(el)
    per_request = {key: _per_request(s, w, owner, k, sizes, per_row) for key, (s, w) in terms.items()}
    if len(per_request) == 1:
        ((sums, weights),) = per_request.values()
    else:  # a group of mixed reductions whose terms differ (kl_div's batchmean, ctc's sum)
        sums = torch.stack([per_request[key][0][i] for i, key in enumerate(keys)])
        weights = torch.stack([per_request[key][1][i] for i, key in enumerate(keys)])
    totals = _divide(sums, weights, [j.reduction in _DIVIDES for j in jobs])
    totals = totals if el.dtype == torch.float64 else totals.to(el.dtype)
    samples = None
    if any(j.return_per_sample for j in jobs):
        s, w = _rows_of(terms, keys, sizes)
        w = row_counts(el) if w is None else w
        samples = _sample_values(s.detach(), w.detach(), jobs, owner, el.dtype)
    return Reduced(totals, sums.detach(), weights.detach(), samples)


def _terms_keys(jobs: list[Job]) -> list[str]:
    """The reduction whose terms each job needs: its own (none takes sum's: its gradient is of the
    sum), or one for all where the terms come from mean weights (the same under every reduction)."""
    if getattr(jobs[0].loss.sample_terms, "derived_from", None) is not None:
        return ["mean"] * len(jobs)
    return ["sum" if j.reduction == "none" else j.reduction for j in jobs]


def _owner(sizes: list[int], device: torch.device) -> torch.Tensor:
    """Each row's request: 0 for the first sizes[0] rows, 1 for the next sizes[1]..."""
    if len(sizes) == 1:
        return torch.zeros(sizes[0], dtype=torch.int64, device=device)
    owner = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
    return owner if device.type == "cpu" else owner.to(device)


def _terms(el, inputs, job: Job, key: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows' (S_i, W_i) in float64; W None for the plain element count (the usual loss: its
    requests' weights are their element counts, no sum needed)."""
    if job.loss.mean_weights is element_count:
        return row_sums(el), None
    s, w = job.loss.sample_terms(el, inputs, job.params, key)  # type: ignore[misc]
    return _float64(s), _float64(w)


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.to(torch.float64)  # a call saved where it is (each ~1 us)


def _per_request(s, w, owner, k, sizes, per_row) -> tuple[torch.Tensor, torch.Tensor]:
    """Each request's sums of its rows' terms, added in row order (index_add): the same arithmetic
    whichever rows come before and after."""
    sums = torch.zeros(k, dtype=torch.float64, device=s.device).index_add(0, owner, s)
    if w is None:
        weights = torch.tensor([n * per_row for n in sizes], dtype=torch.float64, device=s.device)
    else:
        weights = torch.zeros(k, dtype=torch.float64, device=s.device).index_add(0, owner, w)
    return sums, weights


def _divide(sums: torch.Tensor, weights: torch.Tensor, divides: list[bool]) -> torch.Tensor:
    """S / W where the reduction divides (mean, batchmean), S elsewhere (sum, none)."""
    if all(divides):  # the usual group: one division
        return sums / weights
    if not any(divides):
        return sums
    mask = torch.tensor(divides, device=sums.device)
    # divide only where the mean is wanted, so that a zero weight elsewhere puts no NaN in a gradient
    return torch.where(mask, sums / torch.where(mask, weights, torch.ones_like(weights)), sums)


def _rows_of(terms: dict, keys: list[str], sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's (S_i, W_i) under its own request's reduction."""
    if len(terms) == 1:
        ((s, w),) = terms.values()
        return s, w
    s_parts, w_parts, offset = [], [], 0
    for key, n in zip(keys, sizes, strict=True):
        s, w = terms[key]
        s_parts.append(s.narrow(0, offset, n))
        w_parts.append(w.narrow(0, offset, n))
        offset += n
    return torch.cat(s_parts), torch.cat(w_parts)


def _sample_values(s, w, jobs, owner, dtype) -> torch.Tensor:
    """Each sample's own value under its request's reduction, S_i / W_i or S_i, in ``dtype``."""
    divides = [j.reduction in _DIVIDES for j in jobs]
    if all(divides):
        values = s / w
    elif not any(divides):
        values = s
    else:
        values = torch.where(torch.tensor(divides, device=s.device)[owner], s / w, s)
    return values.to(dtype)


def _reduce_half(el, inputs, jobs, sizes) -> Reduced:
    """float16/bfloat16, for a loss with ``mean_weights``: each request's value as PyTorch's own
    ``sum`` and ``mean`` give it for that request alone: one float32 sum of its values, divided (for
    mean) by its element count or the float32 sum of its weights, rounded to the dtype once.
    (Summed in the dtype, a sum overflows or drops low bits, depending on what else is in the batch.)
    Its (S, W) are those float32 sums (W the exact count for the plain mean).

    Each request's values are summed as a tensor of their own, which is the order PyTorch sums
    them in: row sums added up are in another order, and now and then round to another value. The
    gradient is autograd's for that mean: 1/count in float32, cast to the dtype, as PyTorch's
    ``mean`` gives it. A few tensor operations per request, where ``_reduce_together`` takes a few
    per group: the float32 and float64 paths do not come here."""
    head = jobs[0]
    weights = head.loss.mean_weights(el, inputs, head.params)
    alone = len(jobs) == 1
    totals, sums, counts, offset = [], [], [], 0
    for job, n in zip(jobs, sizes, strict=True):
        own = el if alone else el.narrow(0, offset, n)
        total = own.sum(dtype=torch.float32)
        sums.append(total)
        if weights is None:
            count: torch.Tensor | int = own.numel()
        else:
            count = (weights if alone else weights.narrow(0, offset, n)).sum(dtype=torch.float32)
        counts.append(count)
        totals.append(total / count if job.reduction == "mean" else total)
        offset += n
    if weights is None:
        w = torch.tensor(counts, dtype=torch.float64, device=el.device)
    else:
        w = torch.stack(counts).detach().to(torch.float64)  # type: ignore[arg-type]
    samples = None
    if any(j.return_per_sample for j in jobs):
        owner = _owner(sizes, el.device)
        row_weights = row_counts(el, torch.float32) if weights is None else row_sums(weights, torch.float32)
        samples = _sample_values(row_sums(el.detach(), torch.float32), row_weights.detach(), jobs, owner, el.dtype)
    return Reduced(torch.stack(totals).to(el.dtype), torch.stack(sums).detach().to(torch.float64), w, samples)
