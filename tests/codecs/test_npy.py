"""The .npy codec: every supported dtype, byte order, memory order and format version in; the
refused dtypes and malformed files with their exact messages; write_npy read back by numpy."""

import io

import numpy as np
import pytest

from service.codecs.npy import read_npy, write_npy
from service.errors import InvalidInput, MalformedRequest, TooLarge

LOC = ("inputs", "input")
LIMIT = 1000
SUPPORTED = "float16, float32, float64, int8, int16, int32, int64, uint8, bool"


def npy(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def npy_version(arr: np.ndarray, version: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def read(buf: bytes) -> tuple[np.ndarray, str]:
    return read_npy(buf, LOC, LIMIT)


def refused(buf: bytes, cls: type) -> str:
    """The single message ``read_npy`` raises with, at LOC, as an error of ``cls``."""
    with pytest.raises(cls) as info:
        read(buf)
    [item] = info.value.errors
    assert item.loc == LOC
    return item.msg


def sample(dtype: str, shape=(2, 3)) -> np.ndarray:
    values = np.arange(int(np.prod(shape))).reshape(shape) - 2
    if np.dtype(dtype).kind == "u":
        values = values + 2
    if np.dtype(dtype).kind == "b":
        values = values % 2
    if np.dtype(dtype).kind == "f":
        values = values / 4
    return values.astype(dtype)


# -- what is read ------------------------------------------------------------------------------

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("name", DTYPES)
def test_round_trip_of_every_supported_dtype(name):
    arr = sample(name)
    got, got_name = read(npy(arr))
    assert got_name == name
    assert got.dtype == np.dtype(name)
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("descr, name", [(">f4", "float32"), (">i8", "int64"), (">f8", "float64"), (">i2", "int16")])
def test_big_endian_is_read_in_native_order(descr, name):
    arr = sample(descr)
    got, got_name = read(npy(arr))
    assert got_name == name
    assert got.dtype.isnative
    assert got.dtype == np.dtype(name)
    np.testing.assert_array_equal(got, arr)


def test_fortran_order_gives_the_same_values_c_contiguous():
    arr = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    buf = npy(arr)
    assert b"'fortran_order': True" in buf
    got, _ = read(buf)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, arr)


def test_fortran_order_big_endian():
    arr = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    got, name = read(npy(arr))
    assert name == "float64" and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)], ids=lambda v: f"{v[0]}.{v[1]}")
def test_format_versions(version):
    arr = sample("float32", (3, 4))
    buf = npy_version(arr, version)
    assert buf[6:8] == bytes(version)
    got, name = read(buf)
    assert name == "float32"
    np.testing.assert_array_equal(got, arr)


def test_zero_dimensional_array_keeps_its_shape():
    got, name = read(npy(np.float32(2.5)))
    assert name == "float32"
    assert got.shape == ()
    assert got.item() == 2.5


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)])
def test_empty_arrays(shape):
    got, name = read(npy(np.zeros(shape, np.float64)))
    assert name == "float64"
    assert got.shape == shape


@pytest.mark.parametrize("name", ["float32", "int64", "bool"])
def test_decoded_arrays_are_writable(name):
    """torch.from_numpy warns about (and may write through) read-only arrays."""
    got, _ = read(npy(sample(name)))
    assert got.flags.writeable


def test_element_limit_is_checked_from_the_header():
    assert refused(npy(np.zeros(LIMIT + 1, np.float32)), TooLarge) == "tensor has 1001 elements; the limit is 1000"


def test_huge_shape_with_tiny_body_is_refused_without_allocating():
    buf = npy(np.zeros((2, 3), np.float32)).replace(b"'shape': (2, 3), }", b"'shape': (1000000000, 1000000), }")
    assert refused(buf, TooLarge) == "tensor has 1000000000000000 elements; the limit is 1000"


# -- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arr, descr",
    [
        (np.zeros(2, np.uint16), "'<u2'"),
        (np.zeros(2, np.uint32), "'<u4'"),
        (np.zeros(2, np.complex128), "'<c16'"),
        (np.zeros(2, np.complex64), "'<c8'"),
        (np.array(["abc", "d"]), "'<U3'"),
        (np.array([b"ab"]), "'|S2'"),
        (np.zeros(2, "M8[s]"), "'<M8[s]'"),
    ],
    ids=["uint16", "uint32", "complex128", "complex64", "unicode", "bytes", "datetime"],
)
def test_unsupported_dtypes(arr, descr):
    assert refused(npy(arr), InvalidInput) == f"unsupported .npy dtype {descr}; expected one of {SUPPORTED}"


def test_object_dtype_is_refused_without_unpickling():
    buf = npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert refused(buf, InvalidInput) == f"unsupported .npy dtype '|O'; expected one of {SUPPORTED}"


def test_structured_dtype():
    arr = np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])
    assert refused(npy(arr), InvalidInput) == (
        f"unsupported .npy dtype [('a', '<f4'), ('b', '<i4')] (structured); expected one of {SUPPORTED}"
    )


GOOD = npy(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "buf, msg",
    [
        (b"\x93NUMPZ" + GOOD[6:], "malformed .npy: missing the \\x93NUMPY magic string"),
        (GOOD[:5], "malformed .npy: missing the \\x93NUMPY magic string"),
        (b"", "malformed .npy: missing the \\x93NUMPY magic string"),
        (GOOD[:6] + b"\x04\x00" + GOOD[8:], "malformed .npy: unsupported format version 4"),
        (GOOD[:20], "malformed .npy: truncated header"),
        (GOOD[:-1], "malformed .npy: shape (2, 3) of <f4 needs 24 bytes of data; got 23"),
        (GOOD + b"\x00", "malformed .npy: shape (2, 3) of <f4 needs 24 bytes of data; got 25"),
        (GOOD.replace(b"{'descr'", b"{{descr'"), "malformed .npy header"),
        (GOOD.replace(b"{'descr'", b"['descr'").replace(b"}", b"]"), "malformed .npy header"),
        (GOOD.replace(b"(2, 3)", b"(2*3,)"), "malformed .npy header"),
        (GOOD.replace(b"'<f4'", b"'<q9'"), "malformed .npy: unknown dtype '<q9'"),
        (GOOD.replace(b"'shape'", b"'shapX'"), "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'"),
        (GOOD.replace(b"False", b"0    "), "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'"),
        (GOOD.replace(b"(2, 3)", b"(2,-3)"), "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'"),
        (GOOD.replace(b"'descr'", b"'descX'"), "malformed .npy header: expected 'descr', 'fortran_order' and 'shape'"),
    ],
    ids=[
        "bad-magic", "short", "empty", "version-4", "truncated-header", "truncated-data", "trailing-data",
        "header-syntax", "header-not-a-dict", "header-expression", "unknown-descr", "no-shape",
        "fortran-order-not-bool", "negative-dim", "no-descr",
    ],
)  # fmt: skip
def test_malformed_files(buf, msg):
    assert refused(buf, MalformedRequest) == msg


def test_header_code_is_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()".encode()
    head = b"{'descr': '<f4', 'fortran_order': False, 'shape': " + code + b", }"
    head += b" " * (63 - (10 + len(head)) % 64) + b"\n"
    buf = b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head
    assert refused(buf, MalformedRequest) == "malformed .npy header"
    assert not marker.exists()


# -- write_npy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arr",
    [
        sample("float32", (2, 3)),
        sample("float64", (4,)),
        sample("float16", (1, 2, 3)),
        sample("int64", (3,)),
        sample("bool", (2, 2)),
        np.asfortranarray(sample("float64", (3, 2))),
        sample(">f4", (2, 2)),
        np.zeros((0, 3), np.float32),
        np.array(np.float32(1.5)),
        np.array(np.float64(-2.25)),
    ],
    ids=["f32", "f64-1d", "f16-3d", "i64", "bool", "fortran", "big-endian", "empty", "0d-f32", "0d-f64"],
)
def test_write_npy_is_read_back_identically_by_numpy(arr):
    buf = write_npy(arr)
    back = np.load(io.BytesIO(buf), allow_pickle=False)
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    assert (buf.index(b"\n") + 1) % 64 == 0  # header padded so that the data is aligned


def test_write_npy_is_read_back_by_read_npy():
    arr = sample("float64", (3, 4))
    got, name = read(write_npy(arr))
    assert name == "float64"
    np.testing.assert_array_equal(got, arr)
