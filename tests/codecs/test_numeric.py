"""codecs.numeric: large nested arrays parsed piece by piece must give exactly what the plain
parse gives (orjson.loads, then np.asarray at tensor positions), or its very error."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from service.codecs import numeric
from service.codecs.body import _tensor_path


@pytest.fixture(autouse=True)
def small_sizes(monkeypatch):
    """Candidates from 64 bytes, pieces of 100: every test body takes many pieces."""
    monkeypatch.setattr(numeric, "MIN_SPAN", 64)
    monkeypatch.setattr(numeric, "PIECE", 100)


def assert_same(raw: bytes, expect_fast: tuple[str, ...] = ()) -> object:
    """numeric.loads(raw) equals the plain parse; roles in ``expect_fast`` came as arrays."""
    got = numeric.loads(raw, _tensor_path)
    ref = orjson.loads(raw)  # the reference: the plain parse
    _compare(got, ref)
    for role in expect_fast:
        value = got["inputs"][role]
        value = value["data"] if isinstance(value, dict) else value
        assert isinstance(value, np.ndarray), f"{role} was not parsed in pieces"
    return got


def _compare(got: object, ref: object) -> None:
    if isinstance(got, np.ndarray):
        want = np.asarray(ref)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))  # -0.0 stays -0.0
        return
    assert type(got) is type(ref), (type(got), type(ref))
    if isinstance(ref, dict):
        assert list(got) == list(ref)
        for k in ref:
            _compare(got[k], ref[k])
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            _compare(a, b)
    else:
        assert got == ref


def body(inputs: dict, **extra) -> bytes:
    return orjson.dumps({"loss": "mse", **extra, "inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize("shape", [(300,), (40, 7), (9, 5, 6), (3, 4, 5, 6), (2, 3, 2, 3, 2)])
def test_float_arrays_of_any_depth(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    got = assert_same(body({"input": x, "target": x * 2}), ("input", "target"))
    assert got["inputs"]["input"].dtype == np.float64


def test_integers_stay_int64_and_booleans_stay_bool():
    got = assert_same(body({"input": RNG.integers(-(2**40), 2**40, (50, 6)), "target": RNG.random((50, 6)) > 0.5}),
                      ("input", "target"))  # fmt: skip
    assert got["inputs"]["input"].dtype == np.int64 and got["inputs"]["target"].dtype == np.bool_


def test_pieces_of_different_number_kinds_promote_as_the_whole_would():
    # early rows are all integers, later rows floats, one row booleans and integers
    rows = [[i, i + 1] for i in range(40)] + [[0.5, 2**53 + 1], [True, 3]] + [[1.25, -0.0]] * 20
    got = assert_same(body({"input": rows}), ("input",))
    assert got["inputs"]["input"].dtype == np.float64


def test_integers_at_and_beyond_the_limits_of_int64():
    rows = [[2**63 - 1, -(2**63)]] * 30
    assert_same(body({"input": rows}), ("input",))
    assert_same(body({"input": rows + [[2**63, 1]]}))  # np.asarray makes the whole float64
    assert_same(body({"input": [[2**63, 1]] * 30}))  # ...or uint64
    assert_same(b'{"inputs": {"input": [' + b"[18446744073709551616, 1], " * 30 + b"[1, 2]]}}")  # beyond 64 bits


@pytest.mark.parametrize("option", [orjson.OPT_INDENT_2, None])
def test_whitespace_anywhere_between_tokens(option):
    x = RNG.standard_normal((30, 3, 2)).round(3)
    raw = orjson.dumps({"inputs": {"input": x}}, option=orjson.OPT_SERIALIZE_NUMPY | (option or 0))
    if option is None:  # spaces on both sides of every comma and bracket
        raw = raw.replace(b",", b" ,\n\t ").replace(b"[", b"[ ").replace(b"]", b" ]")
    assert_same(raw, ("input",))


def test_exponents_and_signs():
    values = ["1e5", "-2.5E-3", "0.0", "-0.0", "1E+2", "123456789012345678", "-0", "3.141592653589793238462643"]
    raw = b'{"inputs": {"input": [' + b",".join(f"[{v}, {v}]".encode() for v in values * 10) + b"]}}"
    assert_same(raw, ("input",))


def test_the_data_form_is_parsed_in_pieces_too():
    x = RNG.standard_normal(200)
    assert_same(body({"input": {"data": x, "shape": [20, 10], "dtype": "float64"}}), ("input",))


def test_arrays_outside_tensor_positions_are_exactly_what_orjson_gives():
    weight = [1, 2.5, 3] * 40  # mixed ints and floats: a list, ints kept as ints
    got = assert_same(body({"input": [[1.0, 2.0]] * 40}, params={"weight": weight}, extra=[weight, {"k": weight}]))
    assert got["params"]["weight"][0] == 1 and type(got["params"]["weight"][0]) is int


@pytest.mark.parametrize(
    "inner",
    [
        "[1, 2], [3]",  # ragged
        "[1, 2], [3, [4]]",  # deeper in one place
        "[1, null], [3, 4]",  # not a number
        '[1, 2], [3, "4"]',  # a string: the candidate stops at it
        "[true, false], [false, true]",  # booleans only in one piece...
        "[[1]], [[2]]",
    ],
)
def test_irregular_arrays_give_what_the_plain_parse_gives(inner):
    raw = b'{"inputs": {"input": [' + b", ".join([inner.encode()] * 20) + b"]}}"
    assert_same(raw)


def test_strings_with_brackets_quotes_and_backslashes_are_skipped():
    tricky = 'a [1, 2, 3] \\" [4, 5] \\\\'  # an escaped quote, then an escaped backslash before the closing quote
    raw = orjson.dumps({"note": tricky, "k\\\"[": "[9]", "inputs": {"input": [[1.5, 2.5]] * 40}, "z": "]"})
    assert_same(raw, ("input",))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[01, 2]]}}",  # leading zero
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[1., 2]]}}",
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[NaN, 2]]}}",
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[+1, 2]]}}",
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[1, 2],]}}",  # trailing comma
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[1, 2]]}",  # truncated
        b'{"inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[1, 2]]}} x",  # trailing text
        b"{[" + b"[1.0, 2.0], " * 40 + b'[1, 2]]: 1, "inputs": {}}',  # an array as a key
    ],
)
def test_invalid_json_gets_orjsons_own_error(raw):
    with pytest.raises(orjson.JSONDecodeError) as plain_error:
        orjson.loads(raw)
    with pytest.raises(orjson.JSONDecodeError) as ours:
        numeric.loads(raw, _tensor_path)
    assert str(ours.value) == str(plain_error.value)


def test_a_body_that_is_one_large_array():
    assert_same(orjson.dumps([[1.5, 2.5]] * 40))


def test_a_client_string_that_looks_like_a_placeholder_changes_nothing():
    raw = b'{"x": "\\u0000loss-service-array:0", "inputs": {"input": [' + b"[1.0, 2.0], " * 40 + b"[3, 4]]}}"
    got = assert_same(raw)
    assert got["x"] == "\x00loss-service-array:0"


def test_small_bodies_are_left_to_orjson(monkeypatch):
    monkeypatch.setattr(numeric, "MIN_SPAN", 1 << 20)
    got = assert_same(body({"input": [[1.0, 2.0]] * 40}))
    assert isinstance(got["inputs"]["input"], list)


def _random_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    if roll < 0.7:
        shape = [rng.randint(1, 6) for _ in range(rng.randint(1, 3))]
        kind = rng.choice(["f", "i", "mix", "b"])
        arr = np.asarray(RNG.standard_normal(shape) * 10 ** rng.randint(-3, 8))
        if kind == "i":
            return np.round(arr).astype(np.int64).tolist()
        if kind == "b":
            return (arr > 0).tolist()
        out = arr.tolist()
        if kind == "mix":
            flat = np.asarray(out, dtype=object).reshape(-1)
            flat[:: rng.randint(2, 4)] = 7
            out = flat.reshape(arr.shape).tolist()
        return out
    return rng.choice([None, True, "s[1]", 3, 2.5, "q\"[", []])


def test_random_bodies_agree_with_the_plain_parse():
    rng = random.Random(11)
    arrays = 0
    for _ in range(300):
        inputs = {f"r{i}": _random_value(rng) for i in range(rng.randint(1, 3))}
        inputs.update({f"d{i}": {"data": _random_value(rng)} for i in range(rng.randint(0, 2))})
        doc = {"loss": {"name": "mse", "params": {"w": _random_value(rng)}}, "inputs": inputs, "more": _random_value(rng)}
        raw = orjson.dumps(doc, option=rng.choice([0, orjson.OPT_INDENT_2]))
        got = assert_same(raw)
        arrays += sum(isinstance(v, np.ndarray) or isinstance(v.get("data") if isinstance(v, dict) else None, np.ndarray)
                      for v in got["inputs"].values())  # fmt: skip
    assert arrays > 100  # the pieces path was taken, not only the plain one
