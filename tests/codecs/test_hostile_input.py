"""Hostile tensors (issue 12, items 7 and 9): whatever a client sends as a tensor is a 400 or a
422 (or the 413 of the element limit) with a message that says where, what was expected and what
came; never a 500, never a value that wraps.

The shape limits are one mechanism (``arrays.check_shape``) that every form goes through: nested
arrays, ``{data, shape, dtype}``, base64 .npy and multipart .npy file parts. Integer values are
checked against the dtype they are cast to (``arrays.check_range``), for a stated dtype and for an
integer role's int64 alike.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from service.arrays import MAX_DIMS
from service.codecs.npy import read_npy
from service.codecs.tensors import decode_tensor
from service.errors import InvalidInput, MalformedRequest, TooLarge

from ..conftest import problem

LOC = ("inputs", "input")
LIMIT = 1000
SERVICE_LIMIT = 2**28  # the service's default element limit
DTYPE_NAMES = "float16, bfloat16, float32, float64, int8, int16, int32, int64, uint8, bool"
SUPPORTED_NPY = "float16, float32, float64, int8, int16, int32, int64, uint8, bool"
X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
NO_LIST = "expected a list of non-negative integers"


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npy_file(header: str, data: bytes = b"", version: int = 1) -> bytes:
    """An .npy file with this header text (padded as np.save pads it) and these data bytes."""
    head = header.encode("latin1")
    start = 10 if version == 1 else 12
    head += b" " * (63 - (start + len(head)) % 64) + b"\n"
    size = len(head).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + head + data


def header(descr: str = "'<f4'", fortran: str = "False", shape: str = "(2, 3)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def refused(call, cls: type) -> tuple[tuple, str]:
    """The single (loc, msg) that ``call()`` raises as an error of exactly ``cls``."""
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls
    [item] = info.value.errors
    return item.loc, item.msg


def decoded(value: object, limit: int = LIMIT):
    return lambda: decode_tensor(value, LOC, limit)


def read(buf: bytes, limit: int = LIMIT):
    return lambda: read_npy(buf, LOC, limit)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def dims(n: int) -> str:
    return f"expected at most {MAX_DIMS} dimensions; got {n}"


# -- the dimension and element limits, in every form -------------------------------------------


def test_the_dimension_limit_is_what_numpy_and_cuda_can_take():
    assert MAX_DIMS == 16  # numpy: 64; CUDA's elementwise kernels: 25; a loss: (N, C, D, H, W)


@pytest.mark.parametrize("n", [MAX_DIMS + 1, 33, 64, 65, 1000])
def test_data_form_shape_with_too_many_dimensions(n):
    value = {"data": [1.0], "shape": [1] * n}
    assert refused(decoded(value), InvalidInput) == ((*LOC, "shape"), dims(n))


def test_data_form_shape_at_the_dimension_limit_is_read():
    got = decode_tensor({"data": [1.0, 2.0], "shape": [1] * (MAX_DIMS - 1) + [2]}, LOC, LIMIT)
    assert got.array.shape == (1,) * (MAX_DIMS - 1) + (2,)


@pytest.mark.parametrize("n", [MAX_DIMS + 1, 64, 65, 200])
def test_nested_array_with_too_many_dimensions(n):
    value: object = 1.0
    for _ in range(n):
        value = [value]
    assert refused(decoded(value), InvalidInput) == (LOC, dims(n))
    assert refused(decoded({"data": value}), InvalidInput) == ((*LOC, "data"), dims(n))


@pytest.mark.parametrize("n", [MAX_DIMS + 1, 64, 65])
def test_npy_with_too_many_dimensions(n):
    buf = npy_file(header(shape="(" + "1, " * n + ")"), b"\0" * 4)
    assert refused(read(buf), InvalidInput) == (LOC, dims(n))


EMPTY_BUT_HUGE = [
    ((0, 10**30), "1000000000000000000000000000000"),
    ((2**62, 0), "4611686018427387904"),
    ((0, 2**40, 2**40), str(2**80)),
    ((3, 0, 1001), "3003"),
    ((0,) + (10**4000,) * 2, "over 10^7999"),  # Python will not write an int of 8001 digits
]


@pytest.mark.parametrize("shape, extent", EMPTY_BUT_HUGE[:4])
def test_data_form_empty_shape_with_huge_dimensions_never_reaches_numpy(shape, extent):
    msg = f"tensor is empty, but its nonzero dimensions multiply to {extent}; the limit is {LIMIT}"
    assert refused(decoded({"data": [], "shape": list(shape)}), InvalidInput) == ((*LOC, "shape"), msg)


@pytest.mark.parametrize("shape, extent", EMPTY_BUT_HUGE)
def test_npy_empty_shape_with_huge_dimensions_never_reaches_numpy(shape, extent):
    buf = npy_file(header(shape=repr(shape)))
    msg = f"tensor is empty, but its nonzero dimensions multiply to {extent}; the limit is {LIMIT}"
    assert refused(read(buf), InvalidInput) == (LOC, msg)


def test_empty_shapes_within_the_limit_are_still_read():
    assert read_npy(npy_file(header(shape="(0, 1000)")), LOC, LIMIT)[0].shape == (0, 1000)
    assert decode_tensor({"data": [], "shape": [1000, 0]}, LOC, LIMIT).array.shape == (1000, 0)


def test_element_count_of_a_header_too_large_to_write_in_full():
    buf = npy_file(header(shape=repr((10**4000, 10**4000))))
    msg = f"tensor has over 10^7999 elements; the limit is {LIMIT}"
    assert refused(read(buf), TooLarge) == (LOC, msg)


@pytest.mark.parametrize(
    "shape",
    [[-1], [2.0, 3], [True], [False, 6], ["2"], [[2], 3], [None], [{"a": 1}], [2, 1e30], {"a": 1}, 6, "2, 3", True],
    ids=["negative", "float", "true", "false", "string", "nested", "null", "object", "huge-float", "dict", "int",
         "str", "bool"],
)  # fmt: skip
def test_data_form_shape_entries_that_are_not_dimensions(shape):
    assert refused(decoded({"data": [1.0], "shape": shape}), InvalidInput) == ((*LOC, "shape"), NO_LIST)


def test_data_form_empty_shape_is_zero_dimensional():
    assert decode_tensor({"data": [2.5], "shape": []}, LOC, LIMIT).array.shape == ()
    msg = "expected 1 values for shape (); got 2"
    assert refused(decoded({"data": [1.0, 2.0], "shape": []}), InvalidInput) == ((*LOC, "data"), msg)


@pytest.mark.parametrize("data", ["abc", {"a": 1}, 1.0, None, True])
def test_data_that_is_not_an_array(data):
    assert refused(decoded({"data": data}), InvalidInput) == ((*LOC, "data"), "expected an array of numbers")


# -- dtype of every JSON type ------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, shown",
    [([], "[]"), ({}, "{}"), (["float32"], "['float32']"), ({"name": "int64"}, "{'name': 'int64'}"), (3, "3"),
     (1.5, "1.5"), (True, "True"), ("7", "'7'"), ("x" * 100, "'" + "x" * 36 + "...")],
    ids=["list", "dict", "list-of-name", "dict-of-name", "int", "float", "bool", "string", "long-string"],
)  # fmt: skip
def test_dtype_of_any_json_type(dtype, shown):
    msg = f"unknown dtype {shown}; expected one of {DTYPE_NAMES}"
    assert refused(decoded({"data": [1.0], "dtype": dtype}), InvalidInput) == ((*LOC, "dtype"), msg)


def test_dtype_null_means_none_stated():
    got = decode_tensor({"data": [1.0], "dtype": None}, LOC, LIMIT)
    assert got.dtype is None


# -- .npy headers ------------------------------------------------------------------------------

MALFORMED_HEADER = "malformed .npy header"
MISSING = "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'"


@pytest.mark.parametrize(
    "buf, msg",
    [
        (npy_file("{[1]: 2}"), MALFORMED_HEADER),
        (npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), [1]: 0}"), MALFORMED_HEADER),
        (npy_file("{1, 2}"), MALFORMED_HEADER),
        (npy_file("[1, 2]"), MALFORMED_HEADER),
        (npy_file(header(shape="(" * 500 + ")" * 500)), MALFORMED_HEADER),
        (npy_file(header(shape="(" + "9" * 5000 + ",)")), MALFORMED_HEADER),
        (npy_file(header(descr="'01'"), b"\0" * 24), "malformed .npy: unknown dtype '01'"),
        (npy_file(header(descr="','"), b"\0" * 24), "malformed .npy: unknown dtype ','"),
        (npy_file(header(descr="'<f" + "9" * 100 + "'")), "malformed .npy: unknown dtype '<f" + "9" * 74 + "..."),
        (npy_file(header(descr="'|V99999999999999999999'")), "malformed .npy: unknown dtype '|V99999999999999999999'"),
        (npy_file(header(descr="'(99999999999,99999999999)f4'")),
         "malformed .npy: unknown dtype '(99999999999,99999999999)f4'"),
        (npy_file(header(fortran="1"), b"\0" * 24), MISSING),
        (npy_file(header(fortran="'False'"), b"\0" * 24), MISSING),
        (npy_file(header(fortran="None"), b"\0" * 24), MISSING),
        (npy_file(header(shape="[2, 3]"), b"\0" * 24), MISSING),
        (npy_file(header(shape="6"), b"\0" * 24), MISSING),
        (npy_file(header(shape="(2.0, 3)"), b"\0" * 24), MISSING),
        (npy_file(header(shape="(True, 3)"), b"\0" * 24), MISSING),
        (npy_file(header(shape="('2', 3)"), b"\0" * 24), MISSING),
        (npy_file(header(shape="((2,), 3)"), b"\0" * 24), MISSING),
        (npy_file(header(shape="(1j,)")), MISSING),
        (npy_file(header(shape="(-1,)")), MISSING),
        (npy_file(header(), b"\0" * 10), "malformed .npy: shape (2, 3) of <f4 needs 24 bytes of data; got 10"),
        (b"\x93NUMPY\x01\x00" + (60000).to_bytes(2, "little") + b"{}", "malformed .npy: truncated header"),
        (b"\x93NUMPY\x02\x00" + (70000).to_bytes(4, "little") + b"{}",
         "malformed .npy: header of 70000 bytes; the limit is 65536"),
        (b"\x93NUMPY\x03\x00" + (2**32 - 1).to_bytes(4, "little") + b"{}",
         "malformed .npy: header of 4294967295 bytes; the limit is 65536"),
        (npy_file(header(shape="(2, 3)" + " " * 70000), b"\0" * 24, version=2),
         "malformed .npy: header of 70068 bytes; the limit is 65536"),
        (npy_file(header(), b"\0" * 24, version=3).replace(b"'descr'", b"'descr\xff"), MALFORMED_HEADER),
        (b"\x93NUMPY\x02\x00\x01", "malformed .npy: missing the \\x93NUMPY magic string"),
    ],
    ids=[
        "unhashable-key", "unhashable-extra-key", "set", "list", "deep", "huge-literal", "descr-01", "descr-comma",
        "descr-long", "descr-huge-void", "descr-huge-subarray", "fortran-int", "fortran-str", "fortran-none",
        "shape-list", "shape-int", "shape-float", "shape-bool", "shape-str", "shape-nested", "shape-complex",
        "shape-negative", "truncated-data", "length-past-the-end", "huge-header-v2", "huge-header-v3",
        "padded-header", "bad-utf8-v3", "short-v2",
    ],
)  # fmt: skip
def test_malformed_npy(buf, msg):
    assert refused(read(buf), MalformedRequest) == (LOC, msg)


def unsupported(descr: str) -> str:
    return f"unsupported .npy dtype {descr}; expected one of {SUPPORTED_NPY}"


@pytest.mark.parametrize(
    "descr, shown",
    [
        ("'|O'", "'|O'"),
        ("'<U3'", "'<U3'"),
        ("'|V4'", "'|V4'"),
        ("'|V0'", "'|V0'"),
        ("'|S0'", "'|S0'"),
        ("'<u8'", "'<u8'"),
        ("'<f4,<i4'", "'<f4,<i4'"),
        ("'(2,)<f4'", "'(2,)<f4'"),
        ("[('a', '<f4')]", "[('a', '<f4')] (structured)"),
        ("[('a', 'zz')]", "[('a', 'zz')] (structured)"),
        ("[1, 2]", "[1, 2] (structured)"),
        ("5", "5 (structured)"),
        ("{'names': ['a'], 'formats': ['<f4']}", "{'names': ['a'], 'formats': ['<f4']} (structured)"),
        ("[" + "('a', '<f4'), " * 20 + "]", "[" + "('a', '<f4'), " * 5 + "('a', ... (structured)"),
    ],
    ids=["object", "unicode", "void", "void0", "bytes0", "uint64", "comma-string", "subarray-string", "structured",
         "structured-unknown", "list", "int", "dict", "long"],
)  # fmt: skip
def test_unsupported_npy_dtypes(descr, shown):
    buf = npy_file(header(descr=descr, shape="(2,)"), b"\0" * 16)
    assert refused(read(buf), InvalidInput) == (LOC, unsupported(shown))


def test_uint64_npy_is_refused_not_wrapped():
    buf = npy(np.array([2**64 - 1, 1], np.uint64))
    assert refused(read(buf), InvalidInput) == (LOC, unsupported("'<u8'"))


# -- values that do not fit the dtype they are cast to ----------------------------------------


def out_of_range(value: object, dtype: str, at: str = "(0,)") -> str:
    return f"value {value} out of range for {dtype} at position {at}"


@pytest.mark.parametrize(
    "data, dtype, value",
    [
        ([300], "int8", 300),
        ([-129], "int8", -129),
        ([-1], "uint8", -1),
        ([256], "uint8", 256),
        ([2], "bool", 2),
        ([-1], "bool", -1),
        ([2**31], "int32", 2**31),
        ([2**15], "int16", 2**15),
        ([2**64 - 1], "int64", 2**64 - 1),
        ([2**63], "int64", 2**63),
        ([9223372036854775808.0], "int64", 9.223372036854776e18),  # float(2**63): casting it gave -2**63
        ([-9223372036854775808.0 * 2], "int64", -1.8446744073709552e19),
        ([300.0], "int8", 300.0),
        ([2.0], "bool", 2.0),
    ],
)
def test_stated_integer_dtype_refuses_values_it_cannot_hold(data, dtype, value):
    msg = out_of_range(value, dtype)
    assert refused(decoded({"data": data, "dtype": dtype}), InvalidInput) == ((*LOC, "data"), msg)


@pytest.mark.parametrize("value", [-9.223372036854776e18, 2.0**53 + 2, -1e18])
def test_int64_refuses_floats_beyond_two_to_the_53(value):
    """JSON's -9223372036854775809 (outside int64) comes as the float -2**63: it must not pass as -2**63."""
    msg = f"integer value {value} at position (1,) is beyond 2^53 and cannot be given as a float"
    assert refused(decoded({"data": [1.0, value], "dtype": "int64"}), InvalidInput) == ((*LOC, "data"), msg)


def test_stated_integer_dtype_at_its_bounds():
    for dtype in ("int8", "int16", "int32", "int64", "uint8"):
        info = np.iinfo(dtype)
        got = decode_tensor({"data": [info.min, info.max], "dtype": dtype}, LOC, LIMIT).array
        assert got.dtype == np.dtype(dtype)
        assert got.tolist() == [info.min, info.max]
    got = decode_tensor({"data": [-(2**63), 2**62], "dtype": "int64"}, LOC, LIMIT).array
    assert got.tolist() == [-(2**63), 2**62]
    got = decode_tensor({"data": [-(2.0**53), 2.0**53], "dtype": "int64"}, LOC, LIMIT).array
    assert got.tolist() == [-(2**53), 2**53]


# -- through the app ---------------------------------------------------------------------------


def mse(**tensors) -> dict:
    return {"loss": "mse", "inputs": {"input": X, "target": X, **tensors}}


def expect(response, status: int, loc: list, msg: str) -> None:
    body = problem(response, status)
    assert [(e["loc"], e["msg"]) for e in body["errors"]] == [(loc, msg)]
    assert body["detail"] == ".".join(map(str, loc)) + ": " + msg


def files(raw: bytes) -> dict:
    return {
        "request": (None, json.dumps({"loss": "mse"})),
        "input": ("i.npy", raw),
        "target": ("t.npy", npy(np.array(X, np.float32))),
    }


@pytest.mark.parametrize(
    "dtype, shown",
    [([], "[]"), ({}, "{}"), ([None], "[None]"), ({"a": []}, "{'a': []}")],
    ids=["list", "dict", "list-null", "dict-list"],
)
def test_app_dtype_list_or_dict_is_a_422(client, dtype, shown):
    r = client.post("/v1/evaluate", json=mse(input={"data": [1.0], "dtype": dtype}))
    expect(r, 422, ["inputs", "input", "dtype"], f"unknown dtype {shown}; expected one of {DTYPE_NAMES}")


def test_app_shape_with_65_dimensions_is_a_422(client):
    r = client.post("/v1/evaluate", json=mse(input={"data": [1.0], "shape": [1] * 65}))
    expect(r, 422, ["inputs", "input", "shape"], dims(65))


def test_app_nested_array_65_deep_is_a_422(client):
    value: object = 1.0
    for _ in range(65):
        value = [value]
    expect(client.post("/v1/evaluate", json=mse(input=value)), 422, ["inputs", "input"], dims(65))


def test_app_shape_zero_with_a_huge_dimension_is_a_422(client):
    r = client.post("/v1/evaluate", json=mse(input={"data": [], "shape": [2**62, 0]}))
    msg = f"tensor is empty, but its nonzero dimensions multiply to {2**62}; the limit is {SERVICE_LIMIT}"
    expect(r, 422, ["inputs", "input", "shape"], msg)


NPY_CASES = {
    "zero-by-1e30": (
        npy_file(header(shape=f"(0, {10**30})")), 422,
        f"tensor is empty, but its nonzero dimensions multiply to {10**30}; the limit is {SERVICE_LIMIT}",
    ),
    "2e62-by-zero": (
        npy_file(header(shape=f"({2**62}, 0)")), 422,
        f"tensor is empty, but its nonzero dimensions multiply to {2**62}; the limit is {SERVICE_LIMIT}",
    ),
    "65-dimensions": (npy_file(header(shape="(" + "1, " * 65 + ")"), b"\0" * 4), 422, dims(65)),
    "unhashable-header-key": (npy_file("{[1]: 2}"), 400, MALFORMED_HEADER),
    "descr-01": (npy_file(header(descr="'01'"), b"\0" * 24), 400, "malformed .npy: unknown dtype '01'"),
    "uint64": (npy(np.array([2**64 - 1, 1], np.uint64)), 422, unsupported("'<u8'")),
}  # fmt: skip


@pytest.mark.parametrize("raw, status, msg", NPY_CASES.values(), ids=NPY_CASES.keys())
def test_app_hostile_npy_in_json(client, raw, status, msg):
    r = client.post("/v1/evaluate", json=mse(input={"npy": b64(raw)}))
    expect(r, status, ["inputs", "input", "npy"], msg)


@pytest.mark.parametrize("raw, status, msg", NPY_CASES.values(), ids=NPY_CASES.keys())
def test_app_hostile_npy_file_part(client, raw, status, msg):
    expect(client.post("/v1/evaluate", files=files(raw)), status, ["inputs", "input"], msg)


NLL = {"name": "nll", "params": {"ignore_index": -1}}
LOG_P = [[-0.5, -1.0, -2.0]]


def test_app_uint64_target_does_not_wrap_to_the_ignore_index(client):
    """18446744073709551615 as int64 is -1: it became the ignore_index, and the value NaN (a 200)."""
    r = client.post("/v1/evaluate", json={"loss": NLL, "inputs": {"input": LOG_P, "target": [2**64 - 1]}})
    expect(r, 422, ["inputs", "target"], out_of_range(2**64 - 1, "int64"))


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_app_uint64_target_in_a_large_array_does_not_wrap(client, value):
    """A target long enough for codecs.numeric's piecewise parser (simdjson, then orjson)."""
    n = 100_000
    target = [1] * n
    target[70_000] = value
    text = json.dumps({"loss": NLL, "inputs": {"input": {"data": [-1.0] * (3 * n), "shape": [n, 3]}, "target": target}})
    assert len(text) > 4 * 256 * 1024
    r = client.post("/v1/evaluate", content=text, headers={"content-type": "application/json"})
    # beside small integers, numpy makes them float64 (uint64 only when every one is from 2**63 up)
    expect(r, 422, ["inputs", "target"], out_of_range(float(value), "int64", "(70000,)"))


@pytest.mark.parametrize("dtype", ["int64", None])
def test_app_uint64_target_in_the_data_form(client, dtype):
    target = {"data": [2**64 - 1], "shape": [1]} | ({"dtype": dtype} if dtype else {})
    r = client.post("/v1/evaluate", json={"loss": NLL, "inputs": {"input": LOG_P, "target": target}})
    loc = ["inputs", "target", "data"] if dtype else ["inputs", "target"]
    expect(r, 422, loc, out_of_range(2**64 - 1, "int64"))


@pytest.mark.parametrize(
    "target, loc, msg",
    [
        ('{"data": [-9223372036854775809], "dtype": "int64"}', ["inputs", "target", "data"],
         "integer value -9.223372036854776e+18 at position (0,) is beyond 2^53 and cannot be given as a float"),
        ("[-9223372036854775809]", ["inputs", "target"],
         "integer value -9.223372036854776e+18 at position (0,) is beyond 2^53 and cannot be given as a float"),
        ('{"data": [18446744073709551616], "dtype": "int64"}', ["inputs", "target", "data"],
         out_of_range(1.8446744073709552e19, "int64")),
    ],
    ids=["below-int64-stated", "below-int64-nested", "beyond-uint64-stated"],
)  # fmt: skip
def test_app_integers_beyond_64_bits(client, target, loc, msg):
    """orjson parses integers beyond 64 bits as floats: they are refused, never rounded into int64."""
    text = f'{{"loss": {{"name": "nll"}}, "inputs": {{"input": [[-0.5, -1.0, -2.0]], "target": {target}}}}}'
    expect(client.post("/v1/evaluate", content=text, headers={"content-type": "application/json"}), 422, loc, msg)


def test_app_float_two_to_the_63_does_not_wrap_in_int64(client):
    target = {"data": [9223372036854775808.0], "dtype": "int64"}
    r = client.post("/v1/evaluate", json={"loss": NLL, "inputs": {"input": LOG_P, "target": target}})
    expect(r, 422, ["inputs", "target", "data"], out_of_range(9.223372036854776e18, "int64"))


@pytest.mark.parametrize(
    "data, dtype, value", [([300], "int8", 300), ([-1], "uint8", -1), ([2], "bool", 2)], ids=["int8", "uint8", "bool"]
)
def test_app_stated_dtype_out_of_range(client, data, dtype, value):
    r = client.post(
        "/v1/evaluate", json={"loss": NLL, "inputs": {"input": LOG_P, "target": {"data": data, "dtype": dtype}}}
    )
    expect(r, 422, ["inputs", "target", "data"], out_of_range(value, dtype))


def test_app_integers_in_range_still_work(client):
    for target in ([2], {"data": [2], "dtype": "uint8"}, {"npy": b64(npy(np.array([2], np.uint8)))}):
        r = client.post("/v1/evaluate", json={"loss": NLL, "inputs": {"input": LOG_P, "target": target}})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == 2.0


def test_float16_class_indices_are_range_checked_without_a_numpy_warning(client):
    """Compared with int64's bounds, a float16 array overflowed in numpy's cast: a RuntimeWarning
    on every such request (a 500 where warnings are errors, as in this suite)."""
    body = {"loss": "cross_entropy", "inputs": {"input": [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]],
            "target": {"data": [1, 1], "dtype": "float16"}}}  # fmt: skip
    response = client.post("/v1/evaluate", json=body)
    assert response.status_code == 200, response.text


def test_a_signalling_nan_for_an_integer_role_is_a_422_without_a_numpy_warning(client):
    """numpy's rint warns on a signalling NaN (a 500 where warnings are errors, as here)."""
    arr = np.array([1.0, 0.0], dtype=np.float32)
    arr.view(np.uint32)[1] = 0x7FA00000  # a signalling NaN
    body = {"loss": "nll", "inputs": {"input": [[-1.0, -2.0], [-1.0, -2.0]], "target": {"npy": b64(npy(arr))}}}
    assert problem(client.post("/v1/evaluate", json=body), 422)["detail"] == (
        "inputs.target: expected integers; got nan at position (1,)"
    )
