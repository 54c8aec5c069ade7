"""Every decomposable loss says how its value splits into samples (``Loss.sample_terms``, or
``mean_weights`` from which they are derived): the loss model refuses one that gives its own
``reduce`` instead, so that no loss of the catalog, nor a plugin's, answers without an aggregate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.codecs.tensors import Decoded
from service.engine.compute import run_group
from service.losses import default_registry
from service.losses.base import Loss, mean_or_sum, row_counts, row_sums
from service.losses.contract import role
from service.losses.prepare import prepare
from service.losses.registry import Registry

REGISTRY = default_registry()
ROLES = (role("input", "(N, *)"),)
CPU = torch.device("cpu")


def _squares(t, p):
    return t["input"].square()


def test_every_decomposable_loss_of_the_catalog_has_sample_terms():
    missing = [loss.name for loss in REGISTRY if loss.decomposable and loss.sample_terms is None]
    assert not missing


def test_a_decomposable_loss_that_gives_its_own_reduce_is_refused():
    with pytest.raises(ValueError) as info:
        Loss("max_sq", "", "test", "x", ROLES, _squares, "(N, *)", reduce=lambda el, t, p, r: el.max())
    assert str(info.value) == (
        "max_sq: a decomposable loss declares mean_weights or sample_terms (how its value splits into samples), "
        "not reduce"
    )


def test_mean_weights_and_sample_terms_together_are_refused():
    with pytest.raises(ValueError) as info:
        Loss(
            "sq", "", "test", "x", ROLES, _squares, "(N, *)",
            mean_weights=lambda el, t, p: None, sample_terms=lambda el, t, p, r: (row_sums(el), row_counts(el)),
        )  # fmt: skip
    assert str(info.value) == "sq: declare mean_weights or sample_terms, not both"


def test_a_loss_that_is_not_decomposable_has_no_sample_terms():
    with pytest.raises(ValueError) as info:
        Loss(
            "sq", "", "test", "x", ROLES, _squares, "(N, *)", reduce=mean_or_sum, reductions=("mean",),
            decomposable=False, sample_terms=lambda el, t, p, r: (row_sums(el), row_counts(el)),
        )  # fmt: skip
    assert str(info.value) == "sq: a loss that is not decomposable has no sample terms"


def _per_row_mean_of_rows(el, t, p, reduction):
    """A loss whose mean is the mean over samples of each sample's mean (every sample weighs 1)."""
    s = row_sums(el) / row_counts(el)
    return (s if reduction == "mean" else row_sums(el)), torch.ones_like(s)


SAMPLE_MEAN = Loss("sample_mean", "", "test", "x", ROLES, _squares, "(N, *)", sample_terms=_per_row_mean_of_rows)


def test_declared_sample_terms_give_the_value_aggregate_and_per_sample_values_alone_and_batched():
    registry = Registry([SAMPLE_MEAN])
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 3)) for n in (2, 3)]
    jobs = [
        prepare(registry, "sample_mean", {}, "mean", {"input": Decoded(a, "float64")}, True, False,
                return_per_sample=True)
        for a in arrays
    ]  # fmt: skip
    alone = [run_group([j], CPU)[0] for j in jobs]
    together = run_group(jobs, CPU)
    for a, o_alone, o_together in zip(arrays, alone, together, strict=True):
        per_sample = (a**2).mean(1)
        assert o_alone.value == pytest.approx(per_sample.mean(), rel=1e-15)
        assert o_alone.aggregate == pytest.approx((per_sample.sum(), len(a)), rel=1e-15)
        np.testing.assert_allclose(o_alone.per_sample, per_sample, rtol=1e-15)
        np.testing.assert_allclose(o_alone.grads["input"], 2 * a / a.size, rtol=1e-15)
        assert (o_together.value, o_together.aggregate) == (o_alone.value, o_alone.aggregate)
        np.testing.assert_array_equal(o_together.per_sample, o_alone.per_sample)
        np.testing.assert_array_equal(o_together.grads["input"], o_alone.grads["input"])


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
def test_kl_divs_reduce_is_derived_from_its_sample_terms_and_is_pytorchs(reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64).log_softmax(1)
    y = torch.rand(3, 4, 2, generator=g, dtype=torch.float64)
    loss = REGISTRY.get("kl_div")
    params = loss.params()
    el = loss.forward({"input": x, "target": y}, params)
    want = F.kl_div(x, y, reduction=reduction) if reduction != "mean" else F.kl_div(x, y, reduction="none").mean()
    torch.testing.assert_close(loss.reduce(el, {"input": x, "target": y}, params, reduction), want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ctcs_reduce_is_derived_from_its_sample_terms_and_is_pytorchs(reduction):
    g = torch.Generator().manual_seed(2)
    t = {
        "log_probs": torch.randn(8, 3, 5, generator=g, dtype=torch.float64).log_softmax(2),
        "targets": torch.randint(1, 5, (3, 4), generator=g),
        "input_lengths": torch.tensor([8, 7, 6]),
        "target_lengths": torch.tensor([4, 0, 2]),
    }
    loss = REGISTRY.get("ctc")
    params = loss.params()
    want = F.ctc_loss(t["log_probs"], t["targets"], t["input_lengths"], t["target_lengths"], reduction=reduction)
    torch.testing.assert_close(loss.reduce(loss.forward(t, params), t, params, reduction), want, rtol=1e-15, atol=0)
