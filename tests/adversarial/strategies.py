"""Strategies that build POST /v1/evaluate requests from the catalog, right and broken, and the
contract's checks on every answer.

Nothing here lists a loss by hand: roles, their shape forms and dtype kinds come from
``service.losses.catalog.ALL_LOSSES``, params from the JSON Schema that GET /v1/losses serves for
each loss (``loss_info``), reductions from the entry. A request is drawn in two steps: a well-formed
one (shapes bound from the contract's patterns, values in a style that often passes the value
checks, a tensor form per role), then, with some probability, one or more breakages (a shape, a
dtype, a param, a key, the tensor form, the body's encoding). The property checked on the answer
never depends on which breakage was drawn: every answer is a 200 of the response schema or a
problem+json of a documented 4xx status.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from dataclasses import dataclass, field

import jsonschema
import numpy as np
import torch
from hypothesis import strategies as st

from service.losses.catalog import ALL_LOSSES
from service.schemas.catalog import loss_info

LOSSES = {loss.name: loss for loss in ALL_LOSSES}
INFO = {loss.name: loss_info(loss).model_dump() for loss in ALL_LOSSES}  # as GET /v1/losses serves it
NAMES = sorted(LOSSES)

# The contract's dtypes (API.md), and names it does not have.
FLOAT_DTYPES = ["float16", "bfloat16", "float32", "float64"]
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8"]
DTYPES = [*FLOAT_DTYPES, *INT_DTYPES, "bool"]
JUNK_DTYPES = [
    "uint16",
    "uint32",
    "uint64",
    "float128",
    "complex64",
    "int4",
    "",
    "FLOAT32",
    "<f4",
    "float",
    "object",
    "str",
    "half",
    "double",
    "torch.float32",
    "float8_e4m3fn",
    "qint8",
]
NP_DTYPES = {
    "float16": "f2",
    "float32": "f4",
    "float64": "f8",
    "int8": "i1",
    "int16": "i2",
    "int32": "i4",
    "int64": "i8",
    "uint8": "u1",
    "bool": "b1",
}

PROBLEM = "application/problem+json"
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}
RESPONSE_KEYS = {"loss", "reduction", "value", "elementwise", "grad", "aggregate", "meta"}  # + per_sample, terms
META_KEYS = {"device", "dtype", "batch_size", "queue_ms", "compute_ms"}
EVALUATE_STATUSES = {200, 400, 404, 413, 415, 422}  # what a lone request may get (no load, no keys)
NONFINITE = {"NaN", "Infinity", "-Infinity"}


# --- what is sent ----------------------------------------------------------------------------
@dataclass
class Sent:
    """One request as bytes, with what it meant to ask (for the answer's checks)."""

    content: bytes
    content_type: str | None
    notes: list[str] = field(default_factory=list)  # the breakages applied, for the report
    loss: str | None = None  # canonical name when the spec names a catalog loss
    reduction: str | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # role -> shape as sent
    params_violation: str | None = None  # why the params break the loss's served JSON Schema
    method: str = "POST"
    path: str = "/v1/evaluate"

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.content_type is None else {"content-type": self.content_type}

    def __repr__(self) -> str:
        body = self.content if len(self.content) <= 3000 else self.content[:3000] + b"...(%d bytes)" % len(self.content)
        return f"Sent(notes={self.notes}, content_type={self.content_type!r}, body={body!r})"


def send(client, sent: Sent):
    return client.request(sent.method, sent.path, content=sent.content, headers=sent.headers)


# --- the contract's checks on an answer --------------------------------------------------------
def check_answer(response, sent: Sent | None = None, statuses: set[int] = EVALUATE_STATUSES) -> dict | None:
    """The contract's property of any answer of POST /v1/evaluate; returns the JSON body."""
    where = f"\nrequest: {sent!r}\nresponse: {response.status_code} {response.text[:1500]}"
    status = response.status_code
    assert status < 500, "server error" + where
    assert status in statuses, f"status {status} is not one the contract gives here" + where
    ctype = response.headers.get("content-type", "")
    if status >= 300:
        assert ctype == PROBLEM, f"a {status} answer is {ctype!r}, not {PROBLEM}" + where
        body = response.json()
        check_problem(body, status, where)
        return body
    assert ctype.split(";")[0] == "application/json", f"a 200 answer is {ctype!r}" + where
    body = response.json()
    check_result(body, sent, where)
    return body


def check_problem(body: dict, status: int, where: str = "") -> None:
    assert isinstance(body, dict) and set(body) == PROBLEM_KEYS, f"problem keys {sorted(body)}" + where
    assert body["status"] == status, f"problem status {body['status']} != HTTP {status}" + where
    for key in ("type", "title", "detail"):
        assert isinstance(body[key], str) and body[key], f"problem {key} is {body[key]!r}" + where
    assert isinstance(body["errors"], list), where
    for item in body["errors"]:
        assert isinstance(item, dict) and set(item) == {"loc", "msg"}, f"error item {item!r}" + where
        assert isinstance(item["loc"], list) and all(isinstance(p, (str, int)) for p in item["loc"]), where
        assert isinstance(item["msg"], str) and item["msg"], where
    text = json.dumps(body)
    for leak in ("Traceback", 'File "', "/site-packages/", "/service/"):
        assert leak not in text, f"internals in a problem: {leak!r}" + where


def _is_value(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) or v in NONFINITE


def tensor_out(t: dict, where: str = "") -> np.ndarray:
    """A response tensor ({shape, dtype, data} or {shape, dtype, npy}) checked and decoded."""
    assert isinstance(t, dict) and {"shape", "dtype"} <= set(t), f"tensor {str(t)[:200]}" + where
    shape = t["shape"]
    assert isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape), where
    assert t["dtype"] in DTYPES, f"tensor dtype {t['dtype']!r}" + where
    if t.get("npy") is not None:
        assert t.get("data") is None, where
        arr = np.load(io.BytesIO(base64.b64decode(t["npy"])), allow_pickle=False)
        assert list(arr.shape) == shape, f"npy shape {arr.shape} != {shape}" + where
        return arr.astype(np.float64)
    data = t.get("data")
    assert isinstance(data, list) and len(data) == math.prod(shape), "data length != prod(shape)" + where
    assert all(_is_value(v) for v in data), "data holds a value that is neither a number nor NaN/Infinity" + where
    # JSON numbers are the shortest text that reads back to the dtype's value: read them in it
    values = torch.tensor([float(v) for v in data], dtype=torch.float64).to(getattr(torch, t["dtype"]))
    return values.to(torch.float64).numpy().reshape(shape)


def check_result(body: dict, sent: Sent | None, where: str = "") -> None:
    assert isinstance(body, dict) and set(body) - {"per_sample", "terms"} == RESPONSE_KEYS, (
        f"response keys {sorted(body)}" + where
    )
    assert body["loss"] in LOSSES, f"loss {body['loss']!r} is not a canonical name" + where
    meta = body["meta"]
    assert isinstance(meta, dict) and set(meta) == META_KEYS, f"meta keys {sorted(meta)}" + where
    assert meta["dtype"] in FLOAT_DTYPES, where
    assert isinstance(meta["batch_size"], int) and meta["batch_size"] >= 1, where
    assert body["reduction"] in LOSSES[body["loss"]].reductions, where
    if body["reduction"] == "none":
        assert body["value"] is None and body["elementwise"] is not None, where
    else:
        assert _is_value(body["value"]), f"value {body['value']!r}" + where
    aggregate = body["aggregate"]  # null under none and for a loss that reduces the whole request
    if aggregate is not None:
        assert body["reduction"] != "none" and LOSSES[body["loss"]].decomposable, where
        assert set(aggregate) == {"sum", "weight"} and all(_is_value(v) for v in aggregate.values()), where
    if "per_sample" in body:
        assert tensor_out(body["per_sample"], where).ndim == 1 and body["per_sample"]["dtype"] == meta["dtype"], where
    if body["elementwise"] is not None:
        el = tensor_out(body["elementwise"], where)
        assert body["elementwise"]["dtype"] == meta["dtype"], where
        del el
    grads = body["grad"]
    assert grads is None or isinstance(grads, dict), where
    roles = {r.name: r for r in LOSSES[body["loss"]].roles}
    for role, g in (grads or {}).items():
        assert role in roles and roles[role].differentiable, f"a gradient for {role!r}" + where
        arr = tensor_out(g, where)
        if sent is not None and role in sent.shapes:
            assert tuple(arr.shape) == tuple(sent.shapes[role]), f"grad[{role}] shape {arr.shape}" + where
    if sent is not None:
        assert sent.params_violation is None, (
            f"200 for params the served schema refuses: {sent.params_violation}" + where
        )
        if sent.loss is not None:
            assert body["loss"] == sent.loss, where
        if sent.reduction is not None:
            assert body["reduction"] == sent.reduction, where


# --- tensors -----------------------------------------------------------------------------------
def npy_bytes(arr: np.ndarray, big_endian: bool = False, fortran: bool = False, version: tuple = (1, 0)) -> bytes:
    if big_endian and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    if fortran:
        arr = np.asfortranarray(arr)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return buf.getvalue()


def npy_with_header(header: str, data: bytes, major: int = 1, length: int | None = None) -> bytes:
    """An .npy file with a header text of our choosing (which may lie about the data)."""
    raw = header.encode("utf8" if major >= 3 else "latin1")
    pad = (-(6 + 2 + (2 if major == 1 else 4) + len(raw) + 1)) % 64
    raw = raw + b" " * pad + b"\n"
    n = len(raw) if length is None else length
    size = struct.pack("<H", n & 0xFFFF) if major == 1 else struct.pack("<I", n & 0xFFFFFFFF)
    return b"\x93NUMPY" + bytes([major, 0]) + size + raw + data


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def json_tensor(arr: np.ndarray, dtype: str | None, form: str):
    """``arr`` in a JSON tensor form: nested, dsd (flat data), dsd-nested (nested data), npy."""
    if form == "nested":
        return arr.tolist()
    if form == "npy":
        return {"npy": b64(npy_bytes(arr))}
    out: dict = {"data": arr.reshape(-1).tolist() if form == "dsd" else arr.tolist(), "shape": list(arr.shape)}
    if form == "dsd-nested":
        del out["shape"]
    if dtype is not None:
        out["dtype"] = dtype
    return out


# --- values ------------------------------------------------------------------------------------
FLOAT_STYLES = ["unit", "normal", "signs", "logprob", "integral", "wild"]
INT_STYLES = ["index", "length", "signs", "small", "ignore", "wild"]
WILD_FLOATS = [0.0, -0.0, 1e-45, 5e-324, 1e-8, 3.4e38, 65504.0, 65520.0, 1e308, -1e308, 1.0, -1.0, 0.5, 1e30]
WILD_INTS = [
    0,
    1,
    -1,
    127,
    128,
    255,
    256,
    -129,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 - 1,
    -100,
]


def make_values(seed: int, shape: tuple[int, ...], kind: str, style: str, dims: dict) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = math.prod(shape)
    if kind == "float":
        if style == "unit":
            arr = rng.random(size)
        elif style == "normal":
            arr = rng.standard_normal(size) * 2
        elif style == "signs":
            arr = rng.choice([-1.0, 1.0], size)
        elif style == "logprob":
            arr = -rng.exponential(1.0, size)
        elif style == "integral":
            arr = rng.integers(0, max(2, int(dims.get("C", 2))), size).astype(np.float64)
        else:
            arr = rng.choice(WILD_FLOATS, size)
        return arr.reshape(shape)
    c = int(dims.get("C", 3))
    if style == "index":
        arr = rng.integers(0, max(1, c), size)
    elif style == "length":
        top = max([v for k, v in dims.items() if isinstance(v, int)] + [1])
        arr = rng.integers(0, top + 1, size)
    elif style == "signs":
        arr = rng.choice([-1, 1], size)
    elif style == "small":
        arr = rng.integers(-2, 6, size)
    elif style == "ignore":
        arr = rng.choice([-100, 0, 1, max(0, c - 1)], size)
    else:
        return np.array(rng.choice(np.array(WILD_INTS, dtype=object), size), dtype=object).reshape(shape)
    return arr.astype(np.int64).reshape(shape)


# --- shapes from the contract ------------------------------------------------------------------
LETTER_SIZES = {"N": (1, 3), "C": (1, 4), "D": (1, 3), "T": (1, 6), "S": (1, 4)}


@st.composite
def bound_shapes(draw, loss) -> tuple[dict[str, tuple[int, ...]], dict[str, str], dict]:
    """A shape per role that fits the contract (the letters bound once, ``*`` the same everywhere),
    the kind (float / integer) of the form chosen, and the letters' sizes."""
    dims: dict = {"*": tuple(draw(st.lists(st.integers(1, 3), max_size=2)))}
    shapes, kinds = {}, {}
    for role in loss.roles:
        form = draw(st.sampled_from(role.forms))
        shape: list[int] = []
        for token in form.pattern:
            if token == "*":
                shape.extend(dims["*"])
            elif token.isdigit():
                shape.append(int(token))
            else:
                if token not in dims:
                    lo, hi = LETTER_SIZES.get(token, (1, 4))
                    dims[token] = draw(st.integers(lo, hi))
                shape.append(dims[token])
        shapes[role.name] = tuple(shape)
        kinds[role.name] = form.kind
    return shapes, kinds, dims


def broken_shape(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """A shape near ``shape`` that is likely not to fit: a dimension more or less, one size changed,
    a zero, a scalar."""
    opts = [st.just(()), st.just((*shape, 2)), st.just((0, *shape[1:]) if shape else (0,))]
    if shape:
        opts.append(st.just(shape[:-1]))
        opts.append(
            st.tuples(st.integers(0, len(shape) - 1), st.integers(0, 7)).map(
                lambda iv: tuple(iv[1] if i == iv[0] else d for i, d in enumerate(shape))
            )
        )
    return st.one_of(opts)


# --- params from the served JSON Schema -------------------------------------------------------
WRONG_TYPES = st.sampled_from(
    ["x", "", "1.0", "true", [], [1, "a"], {}, {"a": 1}, None, True, False, 10**30, -1.5, 1e308, [[1.0]], "NaN"]
)


def _bounds(node: dict) -> tuple[float | None, float | None, bool, bool]:
    lo, hi = node.get("minimum"), node.get("maximum")
    xlo, xhi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    return (xlo if xlo is not None else lo), (xhi if xhi is not None else hi), xlo is not None, xhi is not None


def schema_value(node: dict, dims: dict, valid: bool = True) -> st.SearchStrategy:
    """A value for a JSON Schema node: within its bounds, or (``valid=False``) at and past them."""
    if "anyOf" in node:
        return st.one_of([schema_value(n, dims, valid) for n in node["anyOf"]])
    if "enum" in node:
        if valid:
            return st.sampled_from(node["enum"])
        return st.sampled_from([3, 0, -1, "other", node["enum"][0] if node["enum"] else None, 1.5])
    kind = node.get("type")
    lo, hi, xlo, xhi = _bounds(node)
    if kind in ("number", "integer"):
        is_int = kind == "integer"
        if valid:
            a = -10 if lo is None else max(lo, -10)
            b = 10 if hi is None else min(hi, max(a, 10) if hi > 10 else hi)
            if is_int:
                return st.integers(math.ceil(a) + int(xlo), math.floor(b) - int(xhi)) | st.just(-100)
            return st.floats(a, b, exclude_min=xlo, exclude_max=xhi, allow_nan=False)
        edges = [v for v in (lo, hi) if v is not None]
        near = [e + d for e in edges for d in (-1, 1, 0)] + [-(10**9), 10**9, 2**63, -(2**63) - 1, 2**64]
        if not is_int:
            near += [1e308, -1e308, 5e-324, -5e-324, 0.5]
        return st.sampled_from(sorted(set(near), key=repr))
    if kind == "boolean":
        return st.booleans() if valid else st.sampled_from([0, 1, "true", "yes", None, 2])
    if kind == "null":
        return st.none()
    if kind == "array":
        c = int(dims.get("C", 3))
        item = node.get("items", {"type": "number"})
        if valid:
            return st.lists(schema_value(item, dims, True), min_size=c, max_size=c)
        return st.one_of(
            st.lists(schema_value(item, dims, True), min_size=0, max_size=c + 3),
            st.lists(schema_value(item, dims, False), min_size=1, max_size=c),
            st.just([float("nan")] * c),  # NaN tokens: invalid JSON
        )
    if kind == "string":
        return st.text(max_size=10)
    return WRONG_TYPES


@st.composite
def params_for(draw, name: str, dims: dict, bad: bool = True) -> tuple[object, list[str]]:
    """Params for a loss, from its served schema: right values mostly; with ``bad``, wrong types,
    out-of-range values, unknown keys and non-object params sometimes. Returns (params, notes)."""
    schema = INFO[name]["params"]
    props = schema.get("properties", {})
    params: dict = {}
    notes: list[str] = []
    hows = ["absent", "absent", "valid", "valid", "valid"] + (["invalid", "wrong-type"] if bad else [])
    for key, node in props.items():
        how = draw(st.sampled_from(hows))
        if how == "valid":
            params[key] = draw(schema_value(node, dims, True))
        elif how == "invalid":
            params[key] = draw(schema_value(node, dims, False))
            notes.append(f"params.{key} out of range")
        elif how == "wrong-type":
            params[key] = draw(WRONG_TYPES)
            notes.append(f"params.{key} wrong type")
    if bad and draw(st.integers(0, 9)) == 0:
        key = (draw(st.sampled_from([*props, ""])) or "x") + draw(st.sampled_from(["_", "s", "X", ""]))
        params[key] = draw(WRONG_TYPES)
        notes.append("unknown param key")
    if bad and draw(st.integers(0, 29)) == 0:
        notes.append("params not an object")
        return draw(st.sampled_from([[], "gamma=2", 1, None, [["gamma", 2]]])), notes
    return params, notes


# --- whole requests ----------------------------------------------------------------------------
def name_variants(name: str) -> st.SearchStrategy[str]:
    aliases = INFO[name]["aliases"]
    return st.sampled_from([name, name.upper(), *aliases, *(a.lower() for a in aliases)])


BAD_NAMES = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "mse ",
            "MSELoss()",
            "torch.nn.MSELoss",
            "../../etc/passwd",
            "%00",
            "cross-entropy",
            "crossentropy_loss",
            "x" * 300,
            "\u0000mse",
            "mse\n",
            "ｍｓｅ",
        ]
    ),
)

# Key breakages and their weights in draws.
BREAKAGES = [
    "shape",
    "dtype",
    "role-missing",
    "role-unknown",
    "dsd-shape",
    "dsd-junk",
    "values-junk",
    "reduction",
    "name",
    "flags",
    "top-level",
    "spec-junk",
]


@st.composite
def evaluate_requests(draw, encoding: str = "json", break_prob: int = 50) -> Sent:
    """A POST /v1/evaluate over any catalog loss. ``encoding``: "json" (the three JSON tensor
    forms) or "multipart" (some roles as .npy file parts). ``break_prob``: percent chance of
    breakages (each draw then applies one to three)."""
    name = draw(st.sampled_from(NAMES))
    loss = LOSSES[name]
    shapes, kinds, dims = draw(bound_shapes(loss))
    notes: list[str] = []
    breaks: list[str] = []
    if draw(st.integers(0, 99)) < break_prob:
        breaks = draw(st.lists(st.sampled_from(BREAKAGES), min_size=1, max_size=3, unique=True))
        notes += breaks
    float_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))

    roles = [r.name for r in loss.roles]
    if "role-missing" in breaks:
        roles.remove(draw(st.sampled_from(roles)))
    if "role-unknown" in breaks:
        roles.append(draw(st.sampled_from(["weight", "inputs", "Input", "label", "x", "target2"])))
    sent_shapes: dict[str, tuple[int, ...]] = {}
    inputs: dict = {}
    files: dict[str, bytes] = {}
    for i, role in enumerate(roles):
        shape = shapes.get(role) or (dims.get("N", 2), 3)
        kind = kinds.get(role, "float")
        if "shape" in breaks and draw(st.booleans()):
            shape = draw(broken_shape(shape))
        style = draw(st.sampled_from(FLOAT_STYLES if kind == "float" else INT_STYLES))
        arr = make_values(seed + i, shape, kind, style, dims)
        if arr.dtype == object:  # wild ints beyond int64: only the JSON forms can carry them
            form = draw(st.sampled_from(["nested", "dsd", "dsd-nested"]))
            dtype = draw(st.sampled_from([None, "int64", "uint8", "int8", "float64"]))
            inputs[role] = json_tensor(arr, dtype, form)
            sent_shapes[role] = shape
            continue
        if kind == "float":
            dtype = float_dtype
            if "dtype" in breaks and draw(st.booleans()):
                dtype = draw(st.sampled_from(DTYPES + JUNK_DTYPES))
        else:
            dtype = draw(st.sampled_from(["int64", "int64", "int32", "int16", "int8", "uint8"]))
            if "dtype" in breaks and draw(st.booleans()):
                dtype = draw(st.sampled_from(DTYPES + JUNK_DTYPES))
        forms = ["nested", "dsd", "dsd-nested", "npy"]
        if encoding == "multipart":
            forms += ["part", "part", "part"]
        form = draw(st.sampled_from(forms))
        np_code = NP_DTYPES.get(dtype or "")
        if form in ("npy", "part") and np_code is None:
            form = "dsd"  # bfloat16 and junk names have no .npy form
        if form in ("npy", "part"):
            with np.errstate(all="ignore"):
                typed = arr.astype(np_code)
            raw = npy_bytes(typed, big_endian=draw(st.booleans()), fortran=draw(st.booleans()))
            if form == "part":
                files[role] = raw
            else:
                inputs[role] = {"npy": b64(raw)}
        else:
            value = json_tensor(arr, dtype if form != "nested" else None, form)
            if "dsd-shape" in breaks and isinstance(value, dict) and draw(st.booleans()):
                value["shape"] = draw(
                    st.sampled_from(
                        [
                            [-1],
                            [2**40, 2**40],
                            [2**63],
                            [1.5],
                            ["2"],
                            [True],
                            "3",
                            None,
                            [],
                            [0],
                            [*shape, 1],
                            [math.prod(shape) + 1],
                        ]
                    )
                )
            if "dsd-junk" in breaks and isinstance(value, dict) and draw(st.booleans()):
                key, junk = draw(
                    st.sampled_from(
                        [
                            ("data", "1,2"),
                            ("data", None),
                            ("data", {"a": 1}),
                            ("dtype", 5),
                            ("dtype", ["float32"]),
                            ("extra", 1),
                            ("npy", 5),
                            ("npy", "!!!"),
                            ("npy", b64(b"not an npy")),
                            ("data", [[1.0], [2.0, 3.0]]),
                        ]
                    )
                )
                value[key] = junk
            if "values-junk" in breaks and draw(st.booleans()):
                bad = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", None, True, "1", [], {}, 1e308, 2**64]))
                value = _poke(value, bad)
            inputs[role] = value
        sent_shapes[role] = shape

    reduction = draw(st.sampled_from(loss.reductions))
    if "reduction" in breaks:
        reduction = draw(st.sampled_from(["batchmean", "Mean", "", "avg", None, 1, "elementwise", "none "]))
    params, pnotes = draw(params_for(name, dims, bad=break_prob > 0))
    notes += pnotes
    spec_name: object = draw(name_variants(name))
    if "name" in breaks:
        spec_name = draw(BAD_NAMES | st.sampled_from([None, 1, ["mse"], {"name": "mse"}]))
    spec: object = {"name": spec_name}
    if params != {} or draw(st.booleans()):
        spec["params"] = params
    if reduction != "mean" or draw(st.booleans()):
        spec["reduction"] = reduction
    if spec_name == name and "params" not in spec and "reduction" not in spec and draw(st.booleans()):
        spec = name
    if "spec-junk" in breaks:
        spec = draw(
            st.sampled_from(
                [
                    None,
                    1,
                    [],
                    [name],
                    {"params": {}},
                    {"name": name, "extra": 1},
                    {"name": name, "reduction": "mean", "terms": []},
                ]
            )
        )
    body: dict = {"loss": spec, "inputs": inputs}
    grad_roles = [r.name for r in loss.roles if r.differentiable]
    grad = draw(st.one_of(st.booleans(), st.lists(st.sampled_from([r.name for r in loss.roles]), unique=True)))
    if "flags" in breaks:
        grad = draw(st.sampled_from(["yes", 1, None, [1], ["nope"], [*grad_roles, *grad_roles], {"input": True}]))
    if grad is not False or draw(st.booleans()):
        body["return_grad"] = grad
    elementwise = draw(st.booleans())
    if "flags" in breaks and draw(st.booleans()):
        elementwise = draw(st.sampled_from(["true", 1, 0, None]))
    if elementwise is not False:
        body["return_elementwise"] = elementwise
    encoding_out = draw(st.sampled_from(["json", "json", "npy"]))
    if "flags" in breaks and draw(st.booleans()):
        encoding_out = draw(st.sampled_from(["NPY", "base64", "", None]))
    if encoding_out != "json":
        body["response_encoding"] = encoding_out
    if "top-level" in breaks:
        key = draw(st.sampled_from(["Loss", "input", "losses", "extra", "return_grads", "inputs"]))
        body[key] = draw(WRONG_TYPES)

    canonical = name if spec_name == name or (isinstance(spec, str) and spec == name) else None
    sent = Sent(
        b"",
        None,
        notes,
        loss=canonical if not breaks else None,
        reduction=reduction if not breaks and isinstance(reduction, str) else None,
        shapes=sent_shapes,
    )
    if isinstance(spec, dict) and isinstance(spec.get("params"), dict):
        sent.params_violation = schema_violation(name, spec["params"])
    if files or encoding == "multipart":
        if not inputs and draw(st.booleans()):
            del body["inputs"]  # the contract lets a multipart request leave it out
        sent.content, sent.content_type = multipart_body(
            [("request", None, _dumps(body))] + [(role, f"{role}.npy", raw) for role, raw in files.items()],
            draw(st.sampled_from(["b0undary", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x"])),
        )
    else:
        sent.content, sent.content_type = _dumps(body), "application/json"
    return sent


_VALIDATORS = {n: jsonschema.Draft202012Validator(INFO[n]["params"]) for n in NAMES}


def schema_violation(name: str, params: dict) -> str | None:
    """Why ``params`` break ``name``'s served params schema (None: they fit it)."""
    try:
        error = jsonschema.exceptions.best_match(_VALIDATORS[name].iter_errors(params))
    except (ValueError, OverflowError, TypeError):  # NaN or huge numbers against numeric bounds
        return "params not comparable with the schema's bounds"
    return None if error is None else f"{list(error.path)}: {error.message}"


def _dumps(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


def _poke(value, bad):
    """``value`` (a JSON tensor) with one number replaced by ``bad``."""
    if isinstance(value, dict):
        if isinstance(value.get("data"), list):
            return {**value, "data": _poke(value["data"], bad)}
        return value
    if isinstance(value, list) and value:
        return [_poke(value[0], bad), *value[1:]] if isinstance(value[0], list) else [bad, *value[1:]]
    return value


def multipart_body(parts: list[tuple[str | None, str | None, bytes]], boundary: str) -> tuple[bytes, str]:
    """(name, filename, data) parts as multipart/form-data: the body and its Content-Type."""
    out = []
    for name, filename, data in parts:
        disp = "form-data" + (f'; name="{name}"' if name is not None else "")
        disp += f'; filename="{filename}"' if filename else ""
        head = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
        if filename:
            head += "Content-Type: application/octet-stream\r\n"
        out.append(head.encode() + b"\r\n" + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
