"""Fuzzing POST /v1/evaluate in-process: every catalog loss, right and broken params, shapes,
dtypes and tensor forms, corrupted .npy and multipart bodies, odd content types and raw bodies.

The property (``strategies.check_answer``): no answer is a 5xx; every non-2xx answer is
application/problem+json with exactly type, title, status, detail and errors, its status the HTTP
status; every 200 has the response schema (loss, reduction, value, elementwise, grad, meta) with
tensors whose data fit their shapes and gradients of the shapes sent; a 200 never answers params
that the loss's served JSON Schema refuses. A few oracles are exact: a name that no loss has is a
404, JSON that does not parse is a 400, a content type other than JSON or multipart is a 415.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ..conftest import make_client
from .conftest import examples
from .strategies import (
    DTYPES,
    INFO,
    JUNK_DTYPES,
    LOSSES,
    NAMES,
    NP_DTYPES,
    Sent,
    b64,
    check_answer,
    check_problem,
    evaluate_requests,
    json_tensor,
    make_values,
    multipart_body,
    npy_bytes,
    npy_with_header,
    send,
)


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


def test_the_fuzzed_catalog_is_the_served_one(client):
    """The strategies are built from ALL_LOSSES; GET /v1/losses serves the same entries."""
    served = client.get("/v1/losses").json()["losses"]
    assert [e["name"] for e in served] == [loss.name for loss in LOSSES.values()]
    for entry in served:
        assert entry == json.loads(json.dumps(INFO[entry["name"]])), entry["name"]


# --- JSON bodies over the whole catalog ---------------------------------------------------------
@hsettings(max_examples=examples(3))
@given(sent=evaluate_requests(encoding="json", break_prob=60))
def test_json_requests(client, sent):
    check_answer(send(client, sent), sent)


@hsettings(max_examples=examples(1))
@given(sent=evaluate_requests(encoding="json", break_prob=0))
def test_well_formed_json_requests(client, sent):
    """No breakage: shapes fit the contract, dtypes and forms are the contract's; the values may
    still fail a loss's value checks (a 422)."""
    check_answer(send(client, sent), sent)


@hsettings(max_examples=examples(1.5))
@given(sent=evaluate_requests(encoding="multipart", break_prob=50))
def test_multipart_requests(client, sent):
    check_answer(send(client, sent), sent)


# --- corrupted .npy ----------------------------------------------------------------------------
DESCRS = [
    "<f4",
    ">f4",
    "<f8",
    ">f8",
    "<f2",
    ">f2",
    "<i8",
    ">i8",
    "<i4",
    "<i2",
    "|i1",
    "|u1",
    "|b1",
    "<u2",
    "<u4",
    "<u8",
    ">u8",
    "<c8",
    "<c16",
    "<U3",
    "|S3",
    "|O",
    "<M8[s]",
    "<m8[ns]",
    "|V8",
    "<f16",
    "f4",
    "float32",
    "bfloat16",
    "<b1",
    "?",
    "<f4 ",
    "",
]
SHAPES = [
    "(2, 3)",
    "(6,)",
    "(3, 2)",
    "(7,)",
    "(5,)",
    "()",
    "(0,)",
    "(0, 3)",
    "(-1,)",
    "(2, -3)",
    "(2**40,)",
    "(1099511627776, 1099511627776)",
    "(9223372036854775807,)",
    "(18446744073709551616,)",
    "[2, 3]",
    "(2.0, 3)",
    "(True, 6)",
    "None",
    "'2,3'",
    "(2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)",
    "(" + "1, " * 70 + "6)",
]
FORTRAN = ["False", "True", "0", "1", "None", "'no'"]


@st.composite
def npy_headers(draw) -> tuple[bytes, str]:
    """An .npy file whose header is well-formed Python but may lie about the data after it."""
    descr = draw(st.sampled_from(DESCRS))
    shape = draw(st.sampled_from(SHAPES))
    fortran = draw(st.sampled_from(FORTRAN))
    extra = draw(st.sampled_from(["", "'extra': 1, ", "'descr': '<i8', ", "'shape': (1,), "]))
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, {extra}}}"
    if draw(st.integers(0, 4)) == 0:
        header = draw(
            st.sampled_from(
                [
                    "{}",
                    "[]",
                    "None",
                    "{'descr': '<f4'}",
                    "{'descr': '<f4', 'fortran_order': False}",
                    "1",
                    "'x'",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)",
                    "__import__('os').system('true')",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + ")" * 200 + "}",
                    "(" * 5000 + ")" * 5000,
                    "{" + "1: {" * 300 + "}" * 300 + "}",
                    "[" * 100000,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': '" + "a" * 60000 + "'}",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1e999}",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 10**10**10}",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",)}",
                    "\u00e9\u00e9{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
                ]
            )
        )
    data_len = draw(st.sampled_from([0, 6, 12, 24, 48, 7, 1000]))
    major = draw(st.sampled_from([1, 1, 2, 3, 0, 4, 255]))
    length = draw(st.sampled_from([None, None, None, 0, 1, 65535, 2**31]))
    raw = npy_with_header(header, bytes(range(256)) * (data_len // 256) + bytes(data_len % 256), major, length)
    return raw, f"header={header[:200]!r} major={major} length={length} data={data_len}"


@st.composite
def corrupted_npys(draw) -> tuple[bytes, str]:
    """A valid .npy file of some supported dtype, then bit flips, truncation, junk appended, or a
    header that lies (``npy_headers``)."""
    how = draw(st.sampled_from(["flip", "truncate", "append", "header", "header", "version2", "bare"]))
    if how == "header":
        return draw(npy_headers())
    dtype = draw(st.sampled_from(sorted(NP_DTYPES)))
    shape = draw(st.sampled_from([(2, 3), (1, 1), (3, 2, 2), (6,)]))
    arr = make_values(draw(st.integers(0, 2**16)), shape, "float", "normal", {}).astype(NP_DTYPES[dtype])
    raw = bytearray(npy_bytes(arr, big_endian=draw(st.booleans()), fortran=draw(st.booleans())))
    if how == "flip":
        for pos, bit in draw(
            st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)), min_size=1, max_size=4)
        ):
            raw[pos] ^= 1 << bit
        return bytes(raw), f"{dtype}{shape} bits flipped"
    if how == "truncate":
        cut = draw(st.integers(0, len(raw) - 1))
        return bytes(raw[:cut]), f"{dtype}{shape} truncated at {cut}"
    if how == "append":
        return bytes(raw) + draw(st.binary(min_size=1, max_size=16)), f"{dtype}{shape} with bytes appended"
    if how == "version2":
        return npy_bytes(arr, version=draw(st.sampled_from([(2, 0), (3, 0)]))), f"{dtype}{shape} version 2/3"
    return bytes(raw), f"{dtype}{shape} intact"


def _valid_body(name: str) -> tuple[dict, dict]:
    """A request for ``name`` that the contract accepts in shape (values may fail value checks)."""
    loss = LOSSES[name]
    dims = {"N": 2, "C": 3, "D": 3, "T": 4, "S": 2, "*": ()}
    inputs = {}
    for i, role in enumerate(loss.roles):
        form = role.forms[0]
        shape = tuple(dims.get(t, int(t) if t.isdigit() else 1) for t in form.pattern if t != "*")
        inputs[role.name] = make_values(i, shape, form.kind, "unit" if form.kind == "float" else "index", dims)
    return {"loss": name}, inputs


@hsettings(max_examples=examples(2))
@given(
    npy=corrupted_npys(),
    name=st.sampled_from(NAMES),
    role_index=st.integers(0, 3),
    where=st.sampled_from(["json", "part"]),
)
@example(
    npy=(npy_with_header("{'descr': '<u8', 'fortran_order': False, 'shape': (2, 3), }", bytes(48)), "uint64"),
    name="cross_entropy",
    role_index=1,
    where="json",
)
def test_corrupted_npy(client, npy, name, role_index, where):
    raw, what = npy
    body, arrays = _valid_body(name)
    roles = list(arrays)
    victim = roles[role_index % len(roles)]
    inputs = {r: json_tensor(a, None, "dsd") for r, a in arrays.items() if r != victim}
    if where == "json":
        body["inputs"] = {**inputs, victim: {"npy": b64(raw)}}
        sent = Sent(json.dumps(body).encode(), "application/json", [f"inputs.{victim}: {what}"])
    else:
        body["inputs"] = inputs
        content, ctype = multipart_body([("request", None, json.dumps(body).encode()), (victim, "x.npy", raw)], "bb")
        sent = Sent(content, ctype, [f"part {victim}: {what}"])
    check_answer(send(client, sent), sent)


# --- corrupted multipart -----------------------------------------------------------------------
MULTIPART_BREAKS = [
    "boundary-mismatch",
    "no-boundary",
    "no-close",
    "truncate",
    "lf-only",
    "no-name",
    "no-disposition",
    "duplicate-role",
    "role-twice",
    "no-request",
    "request-not-json",
    "request-as-file",
    "unknown-part",
    "preamble",
    "many-parts",
    "long-boundary",
    "quoted-boundary",
    "huge-part-header",
    "empty-body",
    "file-not-npy",
    "nested-multipart",
    "charset",
    "bad-header-line",
    "request-empty",
]


@st.composite
def corrupted_multiparts(draw) -> Sent:
    name = draw(st.sampled_from(NAMES))
    body, arrays = _valid_body(name)
    parts: list[tuple[str | None, str | None, bytes]] = [("request", None, json.dumps(body).encode())]
    parts += [(r, f"{r}.npy", npy_bytes(a)) for r, a in arrays.items()]
    breaks = draw(st.lists(st.sampled_from(MULTIPART_BREAKS), min_size=1, max_size=2, unique=True))
    boundary = "XyZ" + draw(st.sampled_from(["", "-_.'()+,/:=?", " sp"]))
    if "no-request" in breaks:
        parts = parts[1:]
    if "request-not-json" in breaks:
        parts[0] = ("request", None, draw(st.sampled_from([b"{not json", b"", b"null", b"[]", b"\xff\xfe", b"1"])))
    if "request-empty" in breaks:
        parts[0] = ("request", None, b"{}")
    if "request-as-file" in breaks:
        parts[0] = ("request", "request.json", parts[0][2])
    if "no-name" in breaks:
        parts[-1] = (None, parts[-1][1], parts[-1][2])
    if "duplicate-role" in breaks:
        parts.append(parts[-1])
    if "role-twice" in breaks:  # given as a part and in the JSON
        role, a = next(iter(arrays.items()))
        parts[0] = ("request", None, json.dumps({**body, "inputs": {role: json_tensor(a, None, "dsd")}}).encode())
    if "unknown-part" in breaks:
        parts.append(("weights", "w.npy", npy_bytes(make_values(0, (3,), "float", "unit", {}))))
    if "many-parts" in breaks:
        parts += [(f"x{i}", None, b"1") for i in range(draw(st.sampled_from([63, 64, 65, 500])))]
    if "file-not-npy" in breaks:
        parts[-1] = (parts[-1][0], parts[-1][1], draw(st.sampled_from([b"", b"1,2,3", b"\x93NUMPY", b"PK\x03\x04"])))
    if "nested-multipart" in breaks:
        inner, _ = multipart_body([("a", None, b"1")], "inner")
        parts.append(("request2", None, inner))
    content, ctype = multipart_body(parts, boundary)
    if "boundary-mismatch" in breaks:
        ctype = "multipart/form-data; boundary=other"
    if "no-boundary" in breaks:
        ctype = "multipart/form-data"
    if "long-boundary" in breaks:
        ctype = "multipart/form-data; boundary=" + "b" * draw(st.sampled_from([70, 71, 1000]))
    if "quoted-boundary" in breaks:
        ctype = f'multipart/form-data; boundary="{boundary}"'
    if "charset" in breaks:
        ctype += "; charset=utf-16"
    if "no-close" in breaks:
        content = content[: content.rfind(b"--" + boundary.encode() + b"--")]
    if "truncate" in breaks:
        content = content[: draw(st.integers(0, max(0, len(content) - 1)))]
    if "lf-only" in breaks:
        content = content.replace(b"\r\n", b"\n")
    if "no-disposition" in breaks:
        content = content.replace(b"Content-Disposition: form-data; ", b"X-Whatever: ", 1)
    if "preamble" in breaks:
        content = b"this is a preamble\r\n" + content + b"epilogue"
    if "huge-part-header" in breaks:
        content = content.replace(b"Content-Disposition", b"X-Pad: " + b"a" * 20000 + b"\r\nContent-Disposition", 1)
    if "bad-header-line" in breaks:
        content = content.replace(b"Content-Disposition", b"no colon here\r\nContent-Disposition", 1)
    if "empty-body" in breaks:
        content = b""
    return Sent(content, ctype, [name, *breaks])


@hsettings(max_examples=examples(1.5))
@given(sent=corrupted_multiparts())
def test_corrupted_multipart(client, sent):
    check_answer(send(client, sent), sent)


# --- content types, raw bodies, exact oracles -------------------------------------------------------
CONTENT_TYPES = [
    None,
    "",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "APPLICATION/JSON",
    "application/json+foo",
    "application/xml",
    "multipart/mixed; boundary=x",
    "application/problem+json",
    "application/*",
    "*/*",
    ";;;",
    "application/json; boundary=x",
    "application/octet-stream",
    "application/x-npy",
    "image/png",
    "application/json\x00",
    "application/vnd.api+json",
]
GOOD = json.dumps({"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}}).encode()


@hsettings(max_examples=examples(1))
@given(ctype=st.sampled_from(CONTENT_TYPES), body=st.sampled_from([GOOD, b"", b"{", b"\xff" * 10]))
def test_content_types(client, ctype, body):
    sent = Sent(body, ctype, ["content type"])
    r = send(client, sent)
    out = check_answer(r, sent)
    base = (ctype or "").split(";")[0].strip().lower()
    if base not in ("application/json", "multipart/form-data") and not base.endswith("+json"):  # RFC 6839 suffix
        assert r.status_code == 415, f"{ctype!r}: {r.status_code} {out}"


RAW = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"1",
            b'"mse"',
            b"{}",
            b'{"loss": "mse"}',
            b"\xef\xbb\xbf" + GOOD,
            GOOD.replace(b"1.0", b"NaN"),
            GOOD.replace(b"1.0", b"Infinity"),
            GOOD.replace(b"1.0", b"1e999"),
            GOOD.replace(b"1.0", b"01"),
            GOOD.replace(b"1.0", b"1.0e"),
            GOOD + b"garbage",
            GOOD + b"{}",
            GOOD.replace(b'"mse"', b'"mse", "loss": "l1"'),
            GOOD.replace(b"{", b'{"a": 1,', 1),
            GOOD.decode().encode("utf-16"),
            GOOD.replace(b"mse", b"m\\u0000se"),
            GOOD.replace(b"mse", b"\\ud800"),
            b"[" * 100_000,
            b'{"a":' * 50_000,
            b'{"loss": "mse", "inputs": {"input": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}}",
            b'{"loss": "mse", "inputs": {"input": [[' + b"1," * 100_000 + b'1]], "target": [[1]]}}',
            b'{"loss": "cross_entropy", "inputs": {"input": [[1.0, 2.0]], "target": [' + b"9" * 5000 + b"]}}",
            b'{"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}, "inputs": {}}',
        ]
    ),
)


@hsettings(max_examples=examples(1))
@given(body=RAW)
def test_raw_json_bodies(client, body):
    sent = Sent(body, "application/json", ["raw body"])
    r = send(client, sent)
    check_answer(r, sent)
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        assert r.status_code == 400, f"unparseable JSON answered {r.status_code}: {r.text[:300]}"


def _folded(name: str) -> str:
    """A name as the README says lookups see it: case, spaces, ``_`` and ``-`` ignored, and a
    ``Loss`` suffix (``CrossEntropyLoss``, ``cross_entropy`` and ``crossentropyloss`` are one)."""
    key = re.sub(r"[\s_\-]", "", name).lower()
    return key[:-4] if key.endswith("loss") and len(key) > 4 else key


ALIASES = {_folded(a) for info in INFO.values() for a in [info["name"], *info["aliases"]]}


@hsettings(max_examples=examples(1))
@given(name=st.text(max_size=30).filter(lambda n: _folded(n) not in ALIASES))
@example(name="ｍｓｅ")
@example(name="MSE\u0000")
def test_unknown_loss_is_404(client, name):
    body = json.dumps({"loss": name, "inputs": {"input": [[1.0]], "target": [[0.0]]}}).encode()
    sent = Sent(body, "application/json", ["unknown loss"])
    r = send(client, sent)
    check_answer(r, sent)
    assert r.status_code == 404, f"loss {name!r}: {r.status_code} {r.text[:300]}"


@hsettings(max_examples=examples(1))
@given(name=st.sampled_from(NAMES), dtype=st.sampled_from(DTYPES + JUNK_DTYPES), form=st.sampled_from(["dsd", "npy"]))
def test_every_dtype_in_every_role(client, name, dtype, form):
    """Every dtype the contract names, and junk ones, in every role of every loss."""
    body, arrays = _valid_body(name)
    for victim in arrays:
        inputs = {r: json_tensor(a, None, "dsd") for r, a in arrays.items() if r != victim}
        arr = arrays[victim]
        if form == "npy" and dtype in NP_DTYPES:
            inputs[victim] = {"npy": b64(npy_bytes(arr.astype(NP_DTYPES[dtype])))}
        else:
            inputs[victim] = {"data": arr.reshape(-1).tolist(), "shape": list(arr.shape), "dtype": dtype}
        sent = Sent(json.dumps({**body, "inputs": inputs}).encode(), "application/json", [f"{victim} as {dtype}"])
        check_answer(send(client, sent), sent)


def test_other_routes_answer_problems(client):
    """Paths and methods around the API: never a 5xx; errors are problems."""
    for method, path in [
        ("GET", "/v1/evaluate"),
        ("PUT", "/v1/evaluate"),
        ("DELETE", "/v1/losses"),
        ("GET", "/v1/losses/" + "x" * 5000),
        ("GET", "/v1/losses/%00"),
        ("GET", "/v1/losses/%2F"),
        ("GET", "/v2/models/mse"),
        ("POST", "/v1/losses"),
        ("GET", "/nope"),
    ]:
        r = client.request(method, path)
        assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", (method, path, r.headers)
            check_problem(r.json(), r.status_code, f" {method} {path}")
