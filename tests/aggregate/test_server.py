"""Aggregates and per-sample values from a real server (``python -m service``): a data set sent in
concurrent requests averages to PyTorch's mean of the whole set, and the refusals read as in-process."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ..e2e.servers import start
from .requests import aggregate, array, close

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("aggregate"), engine__max_queue_delay_ms=20)
    yield s
    assert s.stop() == 0


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/v1/evaluate", json=b) for b in bodies))


def _ok(answers: list[httpx.Response]) -> list[dict]:
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json() for a in answers]


CUTS = ((0, 3), (3, 4), (4, 9), (9, 12))


def test_ctc_over_concurrent_requests_is_pytorchs_mean_of_the_whole_set(server):
    """CTC's mean divides each sample's loss by its target length: the client needs no lengths."""
    g = torch.Generator().manual_seed(4)
    n, t, c, s = 12, 10, 5, 4
    log_probs = torch.randn(t, n, c, generator=g, dtype=torch.float64).log_softmax(2)
    targets = torch.randint(1, c, (n, s), generator=g)
    input_lengths = torch.randint(6, t + 1, (n,), generator=g)
    target_lengths = torch.randint(0, s + 1, (n,), generator=g)

    def request(a: int, b: int, reduction: str) -> dict:
        inputs = {
            "log_probs": {"data": log_probs[:, a:b].tolist(), "dtype": "float64"},
            "targets": targets[a:b].tolist(),
            "input_lengths": input_lengths[a:b].tolist(),
            "target_lengths": target_lengths[a:b].tolist(),
        }
        return {"loss": {"name": "ctc", "reduction": reduction}, "inputs": inputs, "return_per_sample": True}

    for reduction in ("mean", "sum"):
        parts = _ok(asyncio.run(_post_all(server.url, [request(a, b, reduction) for a, b in CUTS])))
        total_s, total_w = (sum(aggregate(p)[k] for p in parts) for k in (0, 1))
        want = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=reduction).item()
        assert total_w == n  # the sample count, for mean and for sum
        assert close(total_s / total_w if reduction == "mean" else total_s, want)
        per_sample = np.concatenate([array(p["per_sample"]) for p in parts])
        each = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
        if reduction == "mean":
            each = each / target_lengths.clamp_min(1)
        np.testing.assert_allclose(per_sample, each.numpy(), rtol=1e-12)


def test_several_losses_and_a_weighted_nll_averaged_over_requests_sent_together(server):
    """kl_div's batchmean and mse in each request of one data set, weighted nll with ignored targets
    in others, all at once: each averages to its mean over the whole set."""
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((12, 4))).log_softmax(1)
    p = torch.from_numpy(rng.random((12, 4)))
    p = p / p.sum(1, keepdim=True)
    labels = torch.from_numpy(rng.integers(-1, 4, 12))
    weight = [1.0, 0.5, 3.0, 2.0]
    several = {"kl": {"name": "kl_div", "reduction": "batchmean"}, "sq": "mse"}
    nll = {"name": "nll", "params": {"weight": weight, "ignore_index": -1}}

    def inputs(a: int, b: int, target: torch.Tensor) -> dict:
        return {"input": {"data": x[a:b].tolist(), "dtype": "float64"}, "target": target[a:b].tolist()}

    bodies = [{"losses": several, "inputs": inputs(a, b, p)} for a, b in CUTS]
    bodies += [{"loss": nll, "inputs": inputs(a, b, labels)} for a, b in CUTS]
    answers = _ok(asyncio.run(_post_all(server.url, bodies)))
    results = {
        "kl": [a["results"]["kl"] for a in answers[: len(CUTS)]],
        "sq": [a["results"]["sq"] for a in answers[: len(CUTS)]],
        "nll": answers[len(CUTS) :],
    }
    wants = {
        "kl": F.kl_div(x, p, reduction="batchmean"),
        "sq": F.mse_loss(x, p),
        "nll": F.nll_loss(x, labels, torch.tensor(weight, dtype=torch.float64), ignore_index=-1),
    }
    for name, parts in results.items():
        s, w = (sum(aggregate(a)[k] for a in parts) for k in (0, 1))
        assert close(s / w, wants[name].item()), name
    assert sum(aggregate(a)[1] for a in results["kl"]) == 12  # batchmean: the batch count


def test_the_refusal_of_per_sample_values_over_the_wire(server):
    body = {
        "loss": {"name": "mse", "reduction": "none"},
        "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 0.0]]},
        "return_per_sample": True,
    }
    r = httpx.post(f"{server.url}/v1/evaluate", json=body, timeout=30)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        "return_per_sample: needs one of the reductions mean, sum (each sample's value under it); got 'none', "
        "whose elementwise values are returned instead"
    )
