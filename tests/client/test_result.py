"""Reading answers without a server: v1.1 fields passed through, JSON-form tensors, non-finite
values as the service writes them, and error answers that are not problem documents."""

from __future__ import annotations

import base64
import math

import httpx
import numpy as np
from loss_client import LossServiceError, Result
from loss_client.npy import to_npy


def npy_tensor(array: np.ndarray, dtype: str | None = None) -> dict:
    return {
        "shape": list(array.shape),
        "dtype": dtype or str(array.dtype),
        "npy": base64.b64encode(to_npy(array)).decode(),
    }


def test_v1_1_fields_are_exposed_and_unknown_fields_kept():
    body = {
        "loss": "cross_entropy",
        "reduction": "mean",
        "value": 0.5,
        "elementwise": None,
        "grad": {},
        "aggregate": {"sum": 2.0, "weight": 4.0},
        "per_sample": npy_tensor(np.array([0.25, 0.75])),
        "terms": [{"value": 0.5}],
        "meta": {"dtype": "float64"},
    }
    result = Result.from_json(body)
    assert result.aggregate == {"sum": 2.0, "weight": 4.0}
    np.testing.assert_array_equal(result.per_sample, [0.25, 0.75])
    assert result.raw["terms"] == [{"value": 0.5}]
    assert result.raw is not body and result.raw == body


def test_bfloat16_comes_back_as_float32():
    grad = np.array([[1.5, -2.0]], dtype=np.float32)
    result = Result.from_json({"value": 1.0, "grad": {"input": npy_tensor(grad, "bfloat16")}, "meta": {}})
    assert result.grad["input"].dtype == np.float32
    np.testing.assert_array_equal(result.grad["input"], grad)


def test_json_tensors_and_non_finite_values():
    body = {
        "value": "NaN",
        "elementwise": {"shape": [2, 2], "dtype": "bfloat16", "data": [1.0, "Infinity", "-Infinity", "NaN"]},
        "grad": {"target": {"shape": [3], "dtype": "int64", "data": [1, 2, 3]}},
    }
    result = Result.from_json(body)
    assert result.value is not None and math.isnan(result.value)
    assert result.elementwise is not None and result.elementwise.dtype == np.float32
    np.testing.assert_array_equal(result.elementwise, [[1.0, np.inf], [-np.inf, np.nan]])
    assert result.grad["target"].dtype == np.int64
    assert (result.aggregate, result.per_sample) == (None, None)


def test_an_error_answer_that_is_not_a_problem():
    response = httpx.Response(502, text="<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>")
    exc = LossServiceError.from_response(response)
    assert (exc.status, exc.title, exc.errors, exc.problem) == (502, "Bad Gateway", [], {})
    assert str(exc) == "<html><body> <h1>502 Bad Gateway</h1> </body></html>"
