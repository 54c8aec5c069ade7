"""Dataset aggregates and per-sample values through the HTTP stack, for every configuration of the
reference table.

Over any split of a data set into requests, sum(S) / sum(W) of the requests' aggregates is the
loss's mean of the whole set in one call (and sum(S) its sum); each per-sample value is the value of
that sample sent alone, and the reference's for it. Losses whose value spans the request have no
aggregate and refuse per-sample values, as does reduction none.
"""

from __future__ import annotations

import base64
import io
import random
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch

from service.losses import default_registry

from ..conftest import make_client, problem
from ..engine.test_half_precision import KERNEL_POSITION_DEPENDENT
from ..reference.case import Case, reductions_of, whole
from ..reference.tables import CASES
from .requests import AGGREGATED, aggregate, array, body, close, number, same
from .split import batch_dims, batch_size, rows, samples

REGISTRY = default_registry()
# Composites (dice_ce) answer with their terms' aggregates: tested with the composites.
CATALOG_CASES = [c for c in CASES if REGISTRY.get(c.loss).expand is None]
DECOMPOSABLE = [c for c in CATALOG_CASES if not whole(c)]
WHOLE = [c for c in CATALOG_CASES if whole(c)]
SPLITS = 3  # random splits of each data set
NOT_DECOMPOSABLE = "it is not decomposable (its value reduces the whole request)"
# Where a sample's value alone may differ from its value among the others by an ulp: the kernels of
# KERNEL_POSITION_DEPENDENT (an element in a SIMD body or tail), and these, never batched, whose
# cosines are one matrix product of the rows with the class centres (BLAS takes another kernel, and
# another order of summation, for one row than for several).
ROW_COUNT_DEPENDENT = {"arcface", "cosface"}


def _id(case: Case) -> str:
    return case.id


def post(client, request: dict) -> dict:
    r = client.post("/v1/evaluate", json=request)
    assert r.status_code == 200, r.text
    return r.json()


def random_cuts(rng: random.Random, n: int) -> list[int]:
    """0, 2 or 3 random cut points, n: 2 to 4 requests of at least one sample each."""
    parts = rng.randint(2, min(4, n))
    return [0, *sorted(rng.sample(range(1, n), parts - 1)), n]


def reference(case: Case, tensors: dict, params: dict, reduction: str) -> float:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", UserWarning)  # kl_div's "mean" warning
        return case.reference(tensors, params, reduction).item()


def data_set(case: Case) -> dict[str, torch.Tensor]:
    """A draw of the case's tensors in float64, two draws end to end where one holds a single sample."""
    tensors = case.make(torch.Generator().manual_seed(7), torch.float64)
    if batch_size(case, tensors) > 1:
        return tensors
    more = case.make(torch.Generator().manual_seed(8), torch.float64)
    dims = batch_dims(case)
    return {k: t if dims[k] is None else torch.cat([t, more[k]], dims[k]) for k, t in tensors.items()}


@pytest.mark.parametrize("case", DECOMPOSABLE, ids=_id)
def test_split_aggregates_give_the_one_call_mean_and_per_sample_values_each_sample_alone(client, case):
    tensors = data_set(case)
    n = batch_size(case, tensors)
    reductions = [r for r in reductions_of(case) if r in AGGREGATED]
    one = {r: post(client, body(case, tensors, case.params, r, per_sample=True)) for r in reductions}
    for r, answer in one.items():  # value == S / W (mean, batchmean), S (sum): float64 to the bit
        s, w = aggregate(answer)
        assert same(number(answer["value"]), s if r == "sum" else s / w), (r, answer)
    _, mean_w = aggregate(one["mean"])
    sum_s, sum_w = aggregate(one["sum"])
    assert sum_w == mean_w  # sum's W is the mean's denominator
    if case.loss != "ctc":  # ctc's mean divides each sample by its target length (see the README)
        assert close(sum_s / sum_w, number(one["mean"]["value"]))

    rng = random.Random(case.id)
    for _ in range(SPLITS):
        cuts = random_cuts(rng, n)
        for r in reductions:
            parts = [post(client, body(case, *rows(case, tensors, a, b), r)) for a, b in pairwise(cuts)]
            s = sum(aggregate(p)[0] for p in parts)
            w = sum(aggregate(p)[1] for p in parts)
            where = f"{r}, requests {list(pairwise(cuts))}: {s} / {w}"
            if r == "sum":
                assert close(s, number(one["sum"]["value"])), where
                assert close(w, sum_w), where
                want = number(one["sum"]["value"]) / n if case.loss == "ctc" else number(one["mean"]["value"])
                assert close(s / w, want), where
            else:
                assert close(s / w, number(one[r]["value"])), where

    tolerant = (case.loss, "float64") in KERNEL_POSITION_DEPENDENT or case.loss in ROW_COUNT_DEPENDENT
    for r in reductions:
        per_sample = array(one[r]["per_sample"])
        assert per_sample.shape == (n,) and one[r]["per_sample"]["dtype"] == "float64"
        for i, (own, params) in enumerate(samples(case, tensors)):
            alone = number(post(client, body(case, own, params, r))["value"])
            ok = close(per_sample[i], alone, rtol=1e-13) if tolerant else same(per_sample[i], alone)
            assert ok, f"{r}: sample {i}: {per_sample[i]!r} among the others, {alone!r} alone"
            want = reference(case, own, params, r)
            assert close(per_sample[i], want, rtol=1e-9, atol=1e-9), (r, i, per_sample[i], want)


def _why_whole(case: Case) -> str:
    loss = REGISTRY.get(case.loss)
    return NOT_DECOMPOSABLE if not loss.decomposable else f"with {loss.whole_when} its value reduces the whole request"


@pytest.mark.parametrize("case", WHOLE, ids=_id)
def test_a_value_that_spans_the_request_has_no_aggregate_nor_per_sample_values(client, case):
    tensors = case.make(torch.Generator().manual_seed(7), torch.float64)
    for r in reductions_of(case):
        answer = post(client, body(case, tensors, case.params, r))
        assert answer["aggregate"] is None and "per_sample" not in answer
    r = client.post("/v1/evaluate", json=body(case, tensors, case.params, reductions_of(case)[0], per_sample=True))
    assert problem(r, 422)["detail"] == f"return_per_sample: {case.loss} has no per-sample values: {_why_whole(case)}"


def _request(loss, reduction: str = "mean", per_sample: bool = True, **inputs) -> dict:
    return {"loss": {**loss, "reduction": reduction} if isinstance(loss, dict) else {"name": loss,
            "reduction": reduction}, "inputs": inputs, "return_per_sample": per_sample}  # fmt: skip


def test_the_refusals_say_why(client):
    x = {"data": [[0.5, -1.0], [2.0, 0.25]], "dtype": "float64"}
    cases = [
        (
            _request("kl_div", "none", input=x, target=[[0.5, 0.5], [0.25, 0.75]]),
            "return_per_sample: needs one of the reductions mean, sum, batchmean (each sample's value under it); "
            "got 'none', whose elementwise values are returned instead",
        ),
        (
            _request(
                {"name": "dice", "params": {"batch": True}},
                input=[[[0.2, 0.8]], [[0.6, 0.4]]],
                target=[[[0.0, 1.0]], [[1.0, 0.0]]],
            ),
            "return_per_sample: dice has no per-sample values: with batch=true its value reduces the whole request",
        ),
        (
            _request("contrastive", input=x, target=x),
            "return_per_sample: contrastive has no per-sample values: it is not decomposable (its value reduces "
            "the whole request)",
        ),
        (
            _request("mse", input={"npy": _npy(np.float64(1.5))}, target={"npy": _npy(np.float64(0.5))}),
            "return_per_sample: needs a batch dimension N (dim 0 of inputs.input); got shape ()",
        ),
    ]
    for request, detail in cases:
        assert problem(client.post("/v1/evaluate", json=request), 422)["detail"] == detail


def _npy(arr: np.ndarray) -> str:
    out = io.BytesIO()
    np.save(out, arr)
    return base64.b64encode(out.getvalue()).decode()


def test_reduction_none_has_no_aggregate(client):
    x = {"data": [[0.5, -1.0], [2.0, 0.25]], "dtype": "float64"}
    answer = post(client, _request("mse", "none", per_sample=False, input=x, target=x))
    assert (answer["value"], answer["aggregate"]) == (None, None)


def test_a_request_without_a_batch_dimension_is_one_sample_of_the_aggregate(client):
    request = _request(
        "mse", per_sample=False, input={"npy": _npy(np.float64(1.5))}, target={"npy": _npy(np.float64(0.5))}
    )
    answer = post(client, request)
    assert (answer["value"], answer["aggregate"]) == (1.0, {"sum": 1.0, "weight": 1.0})


def test_weighted_cross_entropy_with_ignored_targets_over_three_requests(client):
    """The issue's example: a client averaging weighted cross entropy with an ignored class over a
    data set needs each request's weight sum, which depends on the targets."""
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((9, 4)), np.array([0, 3, -1, 2, 2, -1, 1, 0, 3])
    weight = [0.5, 1.0, 2.0, 4.0]
    loss = {"name": "cross_entropy", "params": {"weight": weight, "ignore_index": -1}}
    answers = [
        post(client, _request(loss, input={"data": x[a:b].tolist(), "dtype": "float64"}, target=t[a:b].tolist()))
        for a, b in ((0, 2), (2, 6), (6, 9))
    ]
    s, w = (sum(aggregate(a)[k] for a in answers) for k in (0, 1))
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(x), torch.from_numpy(t), torch.tensor(weight, dtype=torch.float64), ignore_index=-1
    )
    assert close(s / w, want.item())
    assert w == sum(weight[c] for c in t if c != -1)  # the weight of the targets kept
    per_sample = np.concatenate([array(a["per_sample"]) for a in answers])
    alone = torch.nn.functional.cross_entropy(
        torch.from_numpy(x), torch.from_numpy(t), torch.tensor(weight, dtype=torch.float64), ignore_index=-1,
        reduction="none",
    )  # fmt: skip
    kept = t != -1
    own_weight = np.array(weight)[t[kept]]  # a sample's own weighted mean: its loss over its weight
    np.testing.assert_allclose(per_sample[kept], alone.numpy()[kept] / own_weight, rtol=1e-12)
    assert np.isnan(per_sample[~kept]).all()  # a sample with nothing kept: 0 / 0, as PyTorch gives alone


def test_float32_aggregates_are_float64_sums_and_per_sample_values_float32(client):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((5, 7)).astype(np.float32)
    answer = post(client, _request("huber", input={"data": x.tolist(), "dtype": "float32"}, target=y.tolist()))
    s, w = aggregate(answer)
    assert answer["value"] == float(np.float32(s / w)) and w == 35.0
    el = torch.nn.functional.huber_loss(torch.from_numpy(x), torch.from_numpy(y), reduction="none").double()
    assert close(s, el.sum().item(), rtol=1e-15)  # float32 values summed in float64
    assert answer["per_sample"]["dtype"] == "float32"
    np.testing.assert_array_equal(array(answer["per_sample"]).astype(np.float32), el.mean(1).float().numpy())


def test_per_sample_values_in_npy_and_for_several_losses(client):
    x = [[0.2, 0.8, 0.1], [0.3, 0.3, 0.9]]
    request = {
        "losses": {"sq": "mse", "kl": {"name": "kl_div", "reduction": "batchmean"}},
        "inputs": {"input": {"data": x, "dtype": "float64"}, "target": [[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]},
        "return_per_sample": True,
        "response_encoding": "npy",
    }
    results = post(client, request)["results"]
    sq = np.load(io.BytesIO(base64.b64decode(results["sq"]["per_sample"]["npy"])))
    kl = np.load(io.BytesIO(base64.b64decode(results["kl"]["per_sample"]["npy"])))
    assert sq.dtype == kl.dtype == np.float64 and sq.shape == kl.shape == (2,)
    assert results["kl"]["aggregate"]["weight"] == 2.0  # batchmean: the batch count
    assert results["sq"]["aggregate"]["weight"] == 6.0  # mean: the element count
    assert close(kl.sum() / 2, number(results["kl"]["value"]))
    request["losses"]["dice"] = {"name": "dice", "params": {"batch": True}}
    request["inputs"]["input"]["data"] = [[[0.2, 0.8]], [[0.6, 0.4]]]
    request["inputs"]["target"] = [[[0.0, 1.0]], [[1.0, 0.0]]]
    detail = problem(client.post("/v1/evaluate", json=request), 422)["detail"]
    assert "dice: dice has no per-sample values: with batch=true its value reduces the whole request" in detail


CUDA_CASES = ("cross_entropy-weight-ignore", "kl_div", "ctc-padded", "dice-softmax-index", "focal-ignore-class")


@pytest.mark.gpu
@pytest.mark.parametrize("case", [c for c in DECOMPOSABLE if c.id in CUDA_CASES], ids=_id)
def test_aggregates_and_per_sample_values_on_cuda_are_the_cpus(client, case):
    tensors = data_set(case)
    requests = [body(case, tensors, case.params, r, per_sample=True) for r in reductions_of(case) if r in AGGREGATED]
    with make_client(engine={"device": "cuda"}) as gpu:
        on_cuda = [post(gpu, r) for r in requests]
    for request, got in zip(requests, on_cuda, strict=True):
        want = post(client, request)
        assert got["meta"]["device"].startswith("cuda")
        assert all(close(a, b, rtol=1e-9) for a, b in zip(aggregate(got), aggregate(want), strict=True))
        np.testing.assert_allclose(array(got["per_sample"]), array(want["per_sample"]), rtol=1e-9, atol=1e-12)
