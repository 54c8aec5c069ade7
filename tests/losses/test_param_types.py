"""Params are typed strictly, as the served schema says ("yes" is no boolean, "2" no number: they
were coerced, and answered 200), except that an integral float is taken for an integer (JSON
writers that print every number as a float)."""

from __future__ import annotations

import pytest

from ..conftest import problem

ONE = {"input": [[0.5, -0.25, 1.0]], "target": [0]}


@pytest.mark.parametrize(
    ("loss", "params", "inputs", "msg"),
    [
        ("kl_div", {"log_target": "yes"}, {"input": [-1.0], "target": [0.5]},
         "loss.params.log_target: input should be a valid boolean; got 'yes'"),
        ("kl_div", {"log_target": 0}, {"input": [-1.0], "target": [0.5]},
         "loss.params.log_target: input should be a valid boolean; got 0"),
        ("focal", {"gamma": True}, ONE, "loss.params.gamma: input should be a valid number; got True"),
        ("huber", {"delta": "2"}, {"input": [1.0], "target": [0.0]},
         "loss.params.delta: input should be a valid number; got '2'"),
        ("cross_entropy", {"ignore_index": "3"}, ONE,
         "loss.params.ignore_index: input should be a valid integer; got '3'"),
        ("cross_entropy", {"ignore_index": 2.5}, ONE,
         "loss.params.ignore_index: input should be a valid integer; got 2.5"),
    ],
)  # fmt: skip
def test_ill_typed_params_are_422(client, loss, params, inputs, msg):
    body = {"loss": {"name": loss, "params": params}, "inputs": inputs}
    assert problem(client.post("/v1/evaluate", json=body), 422)["detail"] == msg


def test_an_integral_float_is_taken_for_an_integer(client):
    as_int = client.post("/v1/evaluate", json={"loss": {"name": "cross_entropy", "params": {"ignore_index": 2}},
                                               "inputs": ONE})  # fmt: skip
    as_float = client.post("/v1/evaluate", json={"loss": {"name": "cross_entropy", "params": {"ignore_index": 2.0}},
                                                 "inputs": ONE})  # fmt: skip
    assert as_int.status_code == as_float.status_code == 200, as_float.text
    assert as_int.json()["value"] == as_float.json()["value"]


@pytest.mark.parametrize(
    ("loss", "params", "inputs", "msg"),
    [
        ("hinge_embedding", {"margin": 1e39}, {"input": [0.5], "target": [1.0]},
         "loss.params.margin: 1e+39 is beyond the range of float32, the compute dtype (±3.40282e+38)"),
        ("gaussian_nll", {"eps": 70000.0},
         {"input": {"data": [[0.5]], "dtype": "float16"}, "target": [[0.0]], "var": [[1.0]]},
         "loss.params.eps: 70000.0 is beyond the range of float16, the compute dtype (±65504)"),
        ("focal", {"gamma": 1e39}, ONE,
         "loss.params.gamma: 1e+39 is beyond the range of float32, the compute dtype (±3.40282e+38)"),
        ("cross_entropy", {"weight": [1.0, 1e300, 1.0]}, ONE,
         "loss.params.weight.1: 1e+300 is beyond the range of float32, the compute dtype (±3.40282e+38)"),
        ("dice", {"smooth_nr": 1e300}, {"input": [[[0.5, 0.5]]], "target": [[0, 1]]},
         "loss.params.smooth_nr: 1e+300 is beyond the range of float32, the compute dtype (±3.40282e+38)"),
    ],
)  # fmt: skip
def test_float_params_beyond_the_compute_dtype_are_422(client, loss, params, inputs, msg):
    """torch refused to make such a scalar (a 500), or it became infinite (a NaN answer)."""
    body = {"loss": {"name": loss, "params": params}, "inputs": inputs}
    assert problem(client.post("/v1/evaluate", json=body), 422)["detail"] == msg


def test_the_same_param_is_fine_in_a_wider_dtype(client):
    body = {"loss": {"name": "hinge_embedding", "params": {"margin": 1e39}},
            "inputs": {"input": {"data": [0.5], "dtype": "float64"}, "target": [1.0]}}  # fmt: skip
    response = client.post("/v1/evaluate", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 0.5
