"""codecs.numeric: large nested arrays parsed piece by piece must give exactly what the plain
parse gives (orjson.loads, then np.asarray at tensor positions), or its very error."""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest
import simdjson

from service.codecs import numeric
from service.codecs.body import _tensor_path


@pytest.fixture(autouse=True)
def small_sizes(monkeypatch):
    """Candidates from 64 bytes, pieces of 100: every test body takes many pieces."""
    monkeypatch.setattr(numeric, "MIN_SPAN", 64)
    monkeypatch.setattr(numeric, "PIECE", 100)


class Pieces(list):
    """One entry per piece simdjson was tried on: whether it gave it (appended: thread-safe)."""

    @property
    def tried(self) -> int:
        return len(self)

    @property
    def given(self) -> int:
        return sum(self)


@pytest.fixture
def fast(monkeypatch) -> Pieces:
    pieces, real = Pieces(), numeric._fast_piece

    def counting(*args):
        piece = real(*args)
        pieces.append(piece is not None)
        return piece

    monkeypatch.setattr(numeric, "_fast_piece", counting)
    return pieces


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
        assert_identical(got, np.asarray(ref))
        return
    assert type(got) is type(ref), (type(got), type(ref))
    if isinstance(ref, dict):
        assert list(got) == list(ref)
        for k in ref:
            _compare(got[k], ref[k])
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            _compare(a, b)
    else:
        assert got == ref


def assert_identical(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and values, bit for bit (-0.0 stays -0.0)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if got.dtype == np.float64:
        got, want = got.view(np.uint64), want.view(np.uint64)
    assert np.array_equal(got, want)


def body(inputs: dict, **extra) -> bytes:
    return orjson.dumps({"loss": "mse", **extra, "inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize("shape", [(300,), (40, 7), (9, 5, 6), (3, 4, 5, 6), (2, 3, 2, 3, 2)])
def test_float_arrays_of_any_depth(shape, fast):
    x = RNG.standard_normal(shape).astype(np.float32)
    got = assert_same(body({"input": x, "target": x * 2}), ("input", "target"))
    assert got["inputs"]["input"].dtype == np.float64
    assert fast.given == fast.tried > 2  # every piece by simdjson


def test_integers_stay_int64_and_booleans_stay_bool(fast):
    got = assert_same(body({"input": RNG.integers(-(2**40), 2**40, (50, 6)), "target": RNG.random((50, 6)) > 0.5}),
                      ("input", "target"))  # fmt: skip
    assert got["inputs"]["input"].dtype == np.int64 and got["inputs"]["target"].dtype == np.bool_
    assert 0 < fast.given < fast.tried  # the integers by simdjson, the booleans by orjson


def test_pieces_of_different_number_kinds_promote_as_the_whole_would():
    # early rows are all integers, later rows floats, one row booleans and integers
    rows = [[i, i + 1] for i in range(40)] + [[0.5, 2**53 + 1], [True, 3]] + [[1.25, -0.0]] * 20
    got = assert_same(body({"input": rows}), ("input",))
    assert got["inputs"]["input"].dtype == np.float64


def test_integers_at_and_beyond_the_limits_of_int64():
    rows = [[2**63 - 1, -(2**63)]] * 30
    assert_same(body({"input": rows}), ("input",))
    assert_same(body({"input": [*rows, [2**63, 1]]}))  # np.asarray makes the whole float64
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
    raw = orjson.dumps({"note": tricky, 'k\\"[': "[9]", "inputs": {"input": [[1.5, 2.5]] * 40}, "z": "]"})
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
    return rng.choice([None, True, "s[1]", 3, 2.5, 'q"[', []])


def test_random_bodies_agree_with_the_plain_parse(fast):
    rng = random.Random(11)
    arrays = 0
    for _ in range(300):
        inputs = {f"r{i}": _random_value(rng) for i in range(rng.randint(1, 3))}
        inputs.update({f"d{i}": {"data": _random_value(rng)} for i in range(rng.randint(0, 2))})
        doc = {
            "loss": {"name": "mse", "params": {"w": _random_value(rng)}},
            "inputs": inputs,
            "more": _random_value(rng),
        }
        raw = orjson.dumps(doc, option=rng.choice([0, orjson.OPT_INDENT_2]))
        got = assert_same(raw)
        data = [v.get("data") if isinstance(v, dict) else v for v in got["inputs"].values()]
        arrays += sum(isinstance(d, np.ndarray) for d in data)
    assert arrays > 100  # the pieces path was taken, not only the plain one
    assert fast.given > 1000 and fast.tried - fast.given > 100  # ...by simdjson, and by orjson


# simdjson: a piece it gives must be exactly what orjson and np.asarray give; anything else it
# must leave to them


def fast_piece(text: bytes, depth: int = 2, parser: simdjson.Parser | None = None) -> np.ndarray | None:
    """What simdjson gives for a piece; checked against the plain parse where it gives one."""
    got = numeric._fast_piece(parser or simdjson.Parser(), text, depth)
    if got is not None:
        assert_identical(got, np.asarray(orjson.loads(text)))
    return got


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"[[1, 2], [3, 4, 5], [6]]", 2),  # ragged, as many numbers as (3, 2) holds
        (b"[[1, 2, 3], [4, 5], [6]]", 2),
        (b"[[1, 2], [], [3, 4, 5, 6]]", 2),
        (b"[[1, 2], [[3], 4]]", 2),  # deeper in places: as_buffer flattens it to 4 numbers
        (b"[[1, [2]], [3, 4]]", 2),
        (b"[[[]], [1, 2]]", 2),
        (b"[1, [2, 3], []]", 1),
        (b"[[[1, 2], [3, 4, 5]], [[6], [7, 8]]]", 3),
        (b"[[[1, 2], [3, 4]], [[5, 6], [7, [8]]]]", 3),
        (b"[[[1, 2], [3, 4]], [[5, 6], 7, 8]]", 3),
        (b"[[1, 2], [3, 4]]", 3),  # shallower than the candidate
        (b"[[[1, 2]], [[3, 4]]]", 2),  # deeper than the candidate
        (b"[1, 2]", 2),
        (b"[[1, 2], {}]", 2),
        (b"[[1, 2], [{}, 3]]", 2),
        (b"[[]]", 2),  # empty: float64 for np.asarray
        (b"[]", 1),
        (b"[[true, false], [false, true]]", 2),  # booleans: bool for np.asarray
        (b"[[1, 2.5], [true, 3]]", 2),
        (b"[[1, null], [3, 4]]", 2),
        (b"[[9223372036854775808, 1], [2, 3]]", 2),  # uint64 for np.asarray
        (b"[[18446744073709551616, 1.5], [2, 3]]", 2),  # beyond 64 bits: float64 for orjson
        (b"[[-9223372036854775809, 1.5], [2, 3]]", 2),
        (b"[1e400, 1]", 1),  # not JSON for either of them
        (b"[01, 1]", 1),
        (b"[1., 1]", 1),
        (b"[.5, 1]", 1),
        (b"[+1, 1]", 1),
        (b"[NaN, 1]", 1),
        (b"[1, 2,]", 1),
        (b"[1 2]", 1),
        (b"[1, 2]]", 1),
        (b"[1], [2]", 1),
    ],
)
def test_what_simdjson_leaves_to_orjson(text, depth):
    assert fast_piece(text, depth) is None


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"[[-0, 1.5], [0, -0.0]]", 2),  # the integer -0 is 0.0 beside floats, -0.0 stays -0.0
        (b"[-0, 7]", 1),
        (b"[-0e0, -0E5, -0.000, 0e-7]", 1),
        (b"[1e5, 1E5, 1e+5, 1E+05, 1e-5, 2.5E-3, 0.1e1]", 1),
        (b"[[1e5, 7], [2E-3, -0]]", 2),  # exponents without a point
        (b"[[9223372036854775807, -9223372036854775808], [0, 1]]", 2),  # int64's limits
        (b"[9223372036854775808, 18446744073709551615, 1.5, 9007199254740993]", 1),  # beside floats: rounded
        (b"[ \t\n\r[ 1 ,\n 2.5\r] ,\t[3 , 4 ] \n]", 2),
        (b"[[[1], [2]], [[3], [4]]]", 3),
        (b"[4.9e-324, 2.4703282292062327e-324, 2.4703282292062328e-324, 2.2250738585072011e-308, 1e-400, -1e-400]", 1),
        (b"[1.7976931348623157e308, 1.7976931348623158e308, -1.7976931348623157e308]", 1),
        (b"[3.141592653589793238462643383279, 0.1000000000000000055511151231257827, 9007199254740993.0]", 1),
    ],
)
def test_what_simdjson_gives(text, depth):
    assert fast_piece(text, depth) is not None


def test_the_integer_minus_zero_beside_floats_is_plus_zero():
    got = fast_piece(b"[-0, 1.5, -0.0]", 1)
    assert list(np.signbit(got)) == [False, False, True]


def test_a_parser_parses_again_after_a_piece_it_refused():
    parser = simdjson.Parser()
    for text in [b"[[1, 2], [3]]", b"[[true, 1], [2, 3]]", b"[[1, 2], [3, 4]]", b"[[1e999]]", b"[[1.5, 2], [3, 4]]"]:
        fast_piece(text, 2, parser)
    assert fast_piece(b"[[1.5, 2], [3, 4]]", 2, parser) is not None


def _decimal(rng: random.Random) -> str:
    """A random float as JSON may write it: up to 25 significant digits, a fraction, an exponent
    from -330 to 310 (with a sign or not, leading zeros or not), or both."""
    digits = "".join(rng.choices("0123456789", k=rng.randint(1, 25)))
    cut = rng.randint(0, len(digits) - 1)
    whole, fraction = (digits[:cut].lstrip("0") or "0"), digits[cut:]
    number = rng.choice(["", "-"]) + whole + ("." + fraction if rng.random() < 0.7 else "")
    if "." not in number or rng.random() < 0.7:
        exponent = rng.randint(-330, 310)
        sign = "-" if exponent < 0 else rng.choice(["", "+"])
        number += rng.choice("eE") + sign + str(abs(exponent)).zfill(rng.randint(1, 4))
    return number


def test_numbers_round_exactly_as_orjson_rounds_them():
    rng = random.Random(5)
    doubles = RNG.standard_normal(3000) * 10.0 ** RNG.integers(-300, 300, 3000)
    singles = (RNG.standard_normal(3000) * 10.0 ** RNG.integers(-40, 38, 3000)).astype(np.float32)
    written = [repr(float(v)) for v in doubles] + [str(v) for v in singles] + [_decimal(rng) for _ in range(6000)]
    written += [str(rng.randint(-(2**63), 2**64 - 1)) for _ in range(500)]  # integers beside floats: rounded
    good, bad = [], []
    for w in written:
        try:
            orjson.loads(w)
            good.append(w)
        except orjson.JSONDecodeError:  # beyond the largest double
            bad.append(w)
    assert len(bad) > 20  # some overflow: simdjson must refuse them too
    rng.shuffle(good)
    rows = [good[i : i + 10] for i in range(0, len(good) - 9, 10)]
    text = ("[" + ",".join("[" + ",".join(row) + "]" for row in rows) + "]").encode()
    assert fast_piece(text) is not None  # compared with orjson's, bit for bit
    assert all(fast_piece(f"[[1.5, {w}]]".encode()) is None for w in bad)


def test_integers_beyond_64_bits_are_left_to_orjson():
    rng = random.Random(6)
    for _ in range(200):
        big = rng.choice([-1, 1]) * rng.randint(2**64, 10**25)
        assert fast_piece(f"[[1.5, {big}], [2, 3]]".encode()) is None
        assert fast_piece(f"[[1, {big}], [2, 3]]".encode()) is None


def test_edited_pieces_are_given_only_as_orjson_would_give_them():
    """Random edits (bytes inserted, dropped or changed) of valid pieces: whatever simdjson gives
    must be what orjson gives."""
    rng = random.Random(3)
    alphabet = b"0123456789.eE+-[]{},: \t\n\r\x0c\x00\xa0\xc2tfn"
    bases = [
        orjson.dumps(RNG.standard_normal((4, 3)).round(rng.randint(0, 6)), option=orjson.OPT_SERIALIZE_NUMPY),
        orjson.dumps(RNG.integers(-50, 50, (3, 2, 2)), option=orjson.OPT_SERIALIZE_NUMPY),
        b"[[-0, 1e5], [2E-3, 0.0]]",
        b"[ [1 , 2 ] , [ 3,4 ] ]",
    ]
    given = 0
    for _ in range(3000):
        text = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            edit = rng.random()
            if edit < 0.4:
                text.insert(i, rng.choice(alphabet))
            elif edit < 0.7:
                del text[i]
            else:
                text[i] = rng.choice(alphabet)
        text = bytes(text)
        depth = text[:4].count(b"[")
        given += fast_piece(text, depth) is not None  # fast_piece compares with orjson's
    assert given > 100


def test_without_simdjson_orjson_parses_every_piece(monkeypatch, fast):
    monkeypatch.setattr(numeric, "simdjson", None)
    raw = body({"input": RNG.standard_normal((40, 3)), "target": RNG.integers(0, 9, 300)})
    assert_same(raw, ("input", "target"))
    assert fast.tried == 0


def test_pieces_of_integers_then_floats_promote_as_the_whole_would(fast):
    ints = RNG.integers(-(2**60), 2**60, (30, 3)).tolist()  # large: the promotion rounds them
    floats = RNG.standard_normal((30, 3)).tolist()
    for rows in (ints + floats, floats + ints):
        got = assert_same(body({"input": rows}), ("input",))
        assert got["inputs"]["input"].dtype == np.float64
    assert fast.given == fast.tried > 4


@pytest.mark.parametrize(
    "rows",
    [
        "[1, 2, 3], [4], [5, 6]",  # ragged, as many numbers as (3, 2) holds
        "[1, 2], [3, [4]]",
        "[[1, 2], [3]], [[4], [5, 6]]",
        "[1, 2], [-0, 3.5]",  # the integer -0: 0.0, not -0.0
        ", ".join(["[-0, -0]"] * 40),  # ...in pieces of integers only, promoted by the others
        "[1, 2], [9223372036854775808, 3]",
        "[1.5, 2], [18446744073709551616, 3]",
        "[1, 2], [true, 3]",
        "[1e5, 1E+5], [ 1e-5 ,\n-2.5E-3 ]",
    ],
)
def test_odd_rows_among_regular_ones_give_what_the_plain_parse_gives(rows, fast):
    regular = b"[1.5, 2.5], " * 30
    assert_same(b'{"inputs": {"input": [' + regular + rows.encode() + b", " + regular + b"[7, 8]]}}")
    assert fast.given > 0


def test_bodies_parsed_at_once_in_threads(fast):
    """Each parse has its own parser: none is refused for another thread's document."""
    bodies = [body({"input": RNG.standard_normal((300, k)), "target": RNG.integers(0, 9, (300, k))})
              for k in range(1, 9)]  # fmt: skip
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can
    try:
        with ThreadPoolExecutor(8) as pool:
            results = [list(pool.map(lambda raw: numeric.loads(raw, _tensor_path), bodies)) for _ in range(3)]
    finally:
        sys.setswitchinterval(interval)
    for got in results:
        for raw, one in zip(bodies, got, strict=True):
            _compare(one, orjson.loads(raw))
    assert fast.given == fast.tried > 1000
