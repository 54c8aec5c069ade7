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
