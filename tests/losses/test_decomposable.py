"""Losses that reduce a whole request (``decomposable=False``): only the reductions they define,
no elementwise values, never batched, gradients from their whole-request value; and the catalog
says so. (The catalog's own such losses are checked against their references in tests/reference.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.catalog_doc import README, render
from service.codecs.tensors import Decoded
from service.engine.compute import group_key, run_group
from service.errors import InvalidInput
from service.losses.base import Loss
from service.losses.contract import role
from service.losses.prepare import prepare
from service.losses.registry import Registry
from service.schemas.catalog import loss_info


def _spread(t, p):
    """Each sample's squared distance from the batch's mean: a value that spans the batch."""
    x = t["input"]
    return (x - x.mean(0, keepdim=True)).pow(2).sum(1)


SPREAD = Loss(
    name="spread",
    summary="Squared distance of each sample from the batch mean, averaged (a whole-request value).",
    category="test",
    reference="a test of the loss model",
    roles=(role("input", "(N, D)"),),
    forward=_spread,
    elementwise_shape="(N)",
    reductions=("mean", "sum"),
    decomposable=False,
)
REGISTRY = Registry([SPREAD])


def job(x: np.ndarray, reduction: str = "mean", grads: bool = True, elementwise: bool = False):
    return prepare(REGISTRY, "spread", {}, reduction, {"input": Decoded(x, "float64")}, grads, elementwise)


def test_a_loss_that_is_not_decomposable_has_no_reduction_none():
    with pytest.raises(InvalidInput) as info:
        job(np.ones((3, 2)), "none")
    assert info.value.detail == (
        "loss.reduction: spread does not accept reduction 'none': it is not decomposable (its value "
        "reduces the whole request); expected one of mean, sum"
    )


def test_a_loss_that_is_not_decomposable_has_no_elementwise_values():
    with pytest.raises(InvalidInput) as info:
        job(np.ones((3, 2)), elementwise=True)
    assert info.value.detail == (
        "return_elementwise: spread has no elementwise values: it is not decomposable (its value "
        "reduces the whole request)"
    )


def test_it_is_never_batched_and_its_value_and_gradient_are_the_whole_requests():
    rng = np.random.default_rng(0)
    jobs = [job(rng.standard_normal((4, 3)), reduction) for reduction in ("mean", "sum")]
    assert [group_key(j) for j in jobs] == [None, None]
    for j in jobs:
        (outcome,) = run_group([j], torch.device("cpu"))
        x = torch.from_numpy(j.arrays["input"]).requires_grad_(True)
        per_sample = (x - x.mean(0, keepdim=True)).pow(2).sum(1)
        want = per_sample.mean() if j.reduction == "mean" else per_sample.sum()
        (grad,) = torch.autograd.grad(want, [x])
        assert outcome.value == pytest.approx(want.item(), rel=1e-12)
        assert outcome.elementwise is None
        np.testing.assert_allclose(outcome.grads["input"], grad.numpy(), rtol=1e-12)


def test_the_loss_model_refuses_a_whole_request_loss_with_reduction_none():
    with pytest.raises(ValueError, match="a loss that is not decomposable has no reduction 'none'"):
        Loss(
            name="bad", summary="", category="test", reference="x", roles=SPREAD.roles, forward=_spread,
            elementwise_shape="(N)", decomposable=False,
        )  # fmt: skip


def test_the_catalog_entry_says_whether_a_loss_is_decomposable_and_names_its_reference():
    info = loss_info(SPREAD)
    assert (info.decomposable, info.reference, info.reductions) == (False, "a test of the loss model", ["mean", "sum"])


def test_the_readme_catalog_table_is_current():
    text = README.read_text()
    assert render(text) == text, "README.md's catalog table is stale: run python -m service.catalog_doc"
