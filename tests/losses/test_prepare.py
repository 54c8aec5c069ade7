"""The shared checks of prepare(): empty tensors, dtype kinds, integrality, compute dtype."""

from __future__ import annotations

import numpy as np
import pytest

from service.codecs.tensors import Decoded
from service.errors import InvalidInput
from service.losses import default_registry
from service.losses.prepare import prepare

REGISTRY = default_registry()


def run(loss, **tensors):
    return prepare(REGISTRY, loss, {}, "mean", {k: Decoded(*v) for k, v in tensors.items()}, False, False)


def message(loss, **tensors):
    with pytest.raises(InvalidInput) as info:
        run(loss, **tensors)
    return info.value.detail


@pytest.mark.parametrize(
    "loss,tensors,detail",
    [
        ("multi_margin", {"input": (np.zeros((2, 0)), None), "target": (np.zeros(2, np.int64), None)},
         "inputs.input: expected at least one element; got shape (2, 0)"),
        ("ctc", {"log_probs": (np.zeros((0, 2, 5)), None), "targets": (np.zeros((2, 1), np.int64), None),
                 "input_lengths": (np.zeros(2, np.int64), None), "target_lengths": (np.zeros(2, np.int64), None)},
         "inputs.log_probs: expected at least one element; got shape (0, 2, 5)"),
        ("mse", {"input": (np.zeros((2,)), "int64"), "target": (np.zeros((2,)), None)},
         "inputs.input: expected a float tensor (float16, bfloat16, float32, float64); got int64"),
        ("cross_entropy", {"input": (np.zeros((2, 3)), None), "target": (np.array([0.0, 1.5]), None)},
         "inputs.target: expected integers; got 1.5 at position (1,)"),
        ("cross_entropy", {"input": (np.zeros((2, 3)), None), "target": (np.array([True, False]), "bool")},
         "inputs.target: expected integers; got bool"),
        ("mse", {"input": (np.array([1.0, np.inf]), "float64"), "target": (np.zeros(2), None)},
         "inputs.input: non-finite value inf at position (1,)"),
    ],
)  # fmt: skip
def test_shared_checks(loss, tensors, detail):
    assert message(loss, **tensors) == detail


def test_integral_floats_are_class_indices():
    job = run("cross_entropy", input=(np.zeros((2, 3)), None), target=(np.array([0.0, 2.0]), None))
    assert job.arrays["target"].dtype == np.int64 and job.arrays["target"].tolist() == [0, 2]


def test_compute_dtype_promotes_stated_floats_and_adopts_nested():
    job = run("mse", input=(np.zeros(2, np.float32), "float32"), target=(np.zeros(2), "float64"))
    assert job.dtype == "float64"
    job = run("mse", input=(np.zeros(2, np.float16), "float16"), target=(np.zeros(2), None))
    assert job.dtype == "float16" and job.arrays["target"].dtype == np.float16
    assert run("mse", input=(np.zeros(2), None), target=(np.zeros(2), None)).dtype == "float32"
