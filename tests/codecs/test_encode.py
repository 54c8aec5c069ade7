"""Response encoding: JSON numbers, non-finite strings, and base64 .npy spliced into the JSON."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import orjson
import pytest

from service.codecs import encode


def test_several_npy_tensors_round_trip():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = -np.arange(4, dtype=np.float64)
    text = encode.dumps({"x": encode.tensor(a, "float32", "npy"), "y": {"z": encode.tensor(b, "float64", "npy")},
                         "value": 0.25, "meta": {"device": "cpu"}})  # fmt: skip
    doc = orjson.loads(text)
    assert doc["value"] == 0.25 and doc["meta"] == {"device": "cpu"}
    assert doc["x"]["shape"] == [2, 3] and doc["y"]["z"]["dtype"] == "float64"
    np.testing.assert_array_equal(np.load(io.BytesIO(base64.b64decode(doc["x"]["npy"]))), a)
    np.testing.assert_array_equal(np.load(io.BytesIO(base64.b64decode(doc["y"]["z"]["npy"]))), b)


def test_json_data_and_non_finite_values():
    doc = orjson.loads(encode.dumps({"t": encode.tensor(np.array([1.5, math.inf, -math.inf, math.nan]), "float64", "json")}))
    assert doc["t"]["data"] == [1.5, "Infinity", "-Infinity", "NaN"]
    assert [encode.scalar(v) for v in (None, 2.0, math.inf, -math.inf, math.nan)] == [None, 2.0, "Infinity", "-Infinity", "NaN"]


def test_other_objects_are_refused():
    with pytest.raises(TypeError):
        encode.dumps({"x": object()})
