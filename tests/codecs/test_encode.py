"""Response encoding: JSON numbers, non-finite strings, and base64 .npy spliced into the JSON."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import orjson
import pytest

from service.codecs import encode
from service.codecs.npy import write_npy


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
    doc = orjson.loads(
        encode.dumps({"t": encode.tensor(np.array([1.5, math.inf, -math.inf, math.nan]), "float64", "json")})
    )
    assert doc["t"]["data"] == [1.5, "Infinity", "-Infinity", "NaN"]
    assert [encode.scalar(v) for v in (None, 2.0, math.inf, -math.inf, math.nan)] == [
        None,
        2.0,
        "Infinity",
        "-Infinity",
        "NaN",
    ]


def test_other_objects_are_refused():
    with pytest.raises(TypeError):
        encode.dumps({"x": object()})


@pytest.mark.parametrize(
    "arr",
    [np.arange(n, dtype=np.uint8) for n in range(8)]  # every alignment of the data against 3 bytes
    + [np.float32(2.5) * np.ones(()), np.zeros((0, 4), np.float32), np.arange(24, dtype=">f8").reshape(2, 3, 4),
       np.random.default_rng(0).standard_normal((257, 33)).astype(np.float32), np.arange(12, dtype=np.int64)[::2]],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)  # fmt: skip
def test_base64_pieces_are_the_npy_file_encoded_whole(arr):
    pieces = encode.b64_npy(arr).pieces
    joined = b"".join(pieces)
    assert joined == base64.b64encode(write_npy(arr))  # byte for byte what encoding the file gives
    assert all(b"=" not in p for p in pieces[:-1])  # padding only at the very end
    got = np.load(io.BytesIO(base64.b64decode(joined)))
    assert got.shape == arr.shape and got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


def test_dump_parts_leave_the_base64_uncopied():
    arr = np.random.default_rng(1).standard_normal((1000, 10))
    blob = encode.tensor(arr, "float64", "npy")["npy"]
    content = {"grad": {"input": {"shape": [1000, 10], "dtype": "float64", "npy": blob}}, "value": 1.5}
    parts = encode.dump_parts(content)
    assert all(any(part is piece for part in parts) for piece in blob.pieces)  # the very objects
    assert b"".join(parts) == encode.dumps(content)
    doc = orjson.loads(b"".join(parts))
    assert doc["value"] == 1.5
    np.testing.assert_array_equal(np.load(io.BytesIO(base64.b64decode(doc["grad"]["input"]["npy"]))), arr)


def test_dump_parts_without_base64_is_one_piece():
    assert encode.dump_parts({"value": 0.5, "grad": None}) == [b'{"value":0.5,"grad":null}']
