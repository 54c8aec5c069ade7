"""The protocol's inference request and response: JSON, with the binary tensor data extension.

A request is a JSON object, optionally followed by binary tensor data: then its
``Inference-Header-Content-Length`` header gives the JSON's length, and each input with
``parameters.binary_data_size`` takes that many bytes, in input order, as raw little-endian
row-major values (BF16: the raw bfloat16 bytes, held as float32 like v1 holds bfloat16). An
input without binary data has ``data``, flat or nested, decoded by v1's ``{data, shape, dtype}``
form (the same checks and messages).

A response's outputs are JSON ``data`` or binary (``parameters.binary_data`` per output, or the
request's ``binary_data_output``); with any binary output, the JSON comes first and its length is
the response's ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

import numpy as np
import orjson

from ...arrays import MAX_DIMS, check_shape, fmt_shape
from ...codecs import encode, numeric
from ...codecs.tensors import Decoded, decode_tensor
from ...dtypes import BY_V2, DType
from ...errors import ErrorItem, InvalidInput, Loc, MalformedRequest, clip, collect, lower_first

ALIGN = 8  # the binary data is put at a multiple of this in the body's buffer: views, no copies
FIELDS = ("id", "parameters", "inputs", "outputs")
PROTOCOL_PARAMS = ("reduction", "binary_data_output", "timeout")  # the rest are the loss's params


@dataclass(slots=True)
class Input:
    """One input as the request gives it, before its data is decoded."""

    name: str
    shape: list[int]
    dtype: DType
    data: Any = None  # JSON data, or None
    binary_size: int | None = None  # bytes of binary data, or None


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[Input]
    outputs: dict[str, bool | None] | None  # output name -> binary (None: as binary_output); None: the defaults
    params: dict[str, Any] = field(default_factory=dict)  # the loss's, as sent
    reduction: str = "mean"
    binary_output: bool = False  # binary_data_output: outputs binary unless they say otherwise
    timeout_s: float | None = None


def header_length(value: str | None, body_bytes: int | None) -> int | None:
    """``Inference-Header-Content-Length``: None when absent (the body is all JSON)."""
    if value is None:
        return None
    if not value.isdigit():
        raise MalformedRequest.at(("headers", "Inference-Header-Content-Length"), "expected a number of bytes")
    n = int(value)
    if body_bytes is not None and n > body_bytes:
        raise MalformedRequest.at(
            ("headers", "Inference-Header-Content-Length"), f"{n} bytes, more than the body's {body_bytes}"
        )
    return n


def padding(json_bytes: int) -> int:
    """Bytes put before a body whose JSON is ``json_bytes`` long, so its binary data is aligned."""
    return -json_bytes % ALIGN


def parse(raw: bytes | bytearray) -> InferRequest:
    """The request's JSON: its fields checked (every error found, as v1 lists them)."""
    try:
        data = numeric.loads(raw, _tensor_path)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest.at(("body",), f"malformed JSON: {lower_first(str(exc))}") from None
    if not isinstance(data, dict):
        raise InvalidInput.at(("body",), "expected a JSON object")
    errors = [ErrorItem((k,), f"unknown field {clip(k)}") for k in data if k not in FIELDS]
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        errors.append(ErrorItem(("id",), "expected a string"))
        request_id = None
    inputs = _inputs(data.get("inputs"), errors)
    outputs = _outputs(data.get("outputs"), errors)
    request = InferRequest(request_id, inputs, outputs)
    _parameters(data.get("parameters"), request, errors)
    collect(errors)
    return request


def _tensor_path(path: numeric.Path) -> bool:
    """Where a large array of numbers stands: ``inputs[i].data``."""
    return len(path) == 3 and path[0] == "inputs" and path[2] == "data"


def _inputs(value: object, errors: list[ErrorItem]) -> list[Input]:
    if value is None:
        errors.append(ErrorItem(("inputs",), "field required"))
        return []
    if not isinstance(value, list) or not value:
        errors.append(ErrorItem(("inputs",), "expected a list of input tensors, one per role"))
        return []
    inputs: list[Input] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        parsed = _input(item, i, errors)
        if parsed is None:
            continue
        if parsed.name in seen:
            errors.append(ErrorItem(("inputs", parsed.name), "given twice"))
        seen.add(parsed.name)
        inputs.append(parsed)
    return inputs


def _input(item: object, i: int, errors: list[ErrorItem]) -> Input | None:
    if not isinstance(item, dict):
        errors.append(ErrorItem(("inputs", i), "expected an object {name, shape, datatype, data}"))
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name:
        errors.append(ErrorItem(("inputs", i, "name"), "expected the role's name"))
        return None
    loc: Loc = ("inputs", name)
    n = len(errors)
    errors += [
        ErrorItem((*loc, k), f"unknown field {clip(k)}")
        for k in item
        if k not in ("name", "shape", "datatype", "parameters", "data")
    ]
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        errors.append(ErrorItem((*loc, "shape"), "expected a list of non-negative integers"))
    datatype = item.get("datatype")
    dtype = BY_V2.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        expected = ", ".join(BY_V2)
        errors.append(ErrorItem((*loc, "datatype"), f"unknown datatype {_text(datatype)}; expected one of {expected}"))
    binary_size = None
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        errors.append(ErrorItem((*loc, "parameters"), "expected an object"))
        parameters = {}
    for key, value in parameters.items():
        if key != "binary_data_size":
            msg = "unsupported parameter; an input takes binary_data_size"
            errors.append(ErrorItem((*loc, "parameters", key), msg))
        elif type(value) is not int or value < 0:
            errors.append(ErrorItem((*loc, "parameters", key), "expected a number of bytes"))
        else:
            binary_size = value
    has_data = item.get("data") is not None
    if has_data == ("binary_data_size" in parameters):
        msg = "given both as data and as binary data" if has_data else "expected data, or binary data"
        errors.append(ErrorItem((*loc, "data"), msg + " (parameters.binary_data_size)"))
    if len(errors) > n:
        return None
    assert dtype is not None and isinstance(shape, list)
    return Input(name, shape, dtype, item.get("data"), binary_size)


def _outputs(value: object, errors: list[ErrorItem]) -> dict[str, bool | None] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        errors.append(ErrorItem(("outputs",), "expected a list of requested outputs"))
        return None
    outputs: dict[str, bool | None] = {}
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(ErrorItem(("outputs", i), "expected an object {name, parameters}"))
            continue
        parameters = item.get("parameters") or {}
        extra = [k for k in item if k not in ("name", "parameters")]
        errors += [ErrorItem(("outputs", name, k), f"unknown field {clip(k)}") for k in extra]
        if not isinstance(parameters, dict):
            errors.append(ErrorItem(("outputs", name, "parameters"), "expected an object"))
            continue
        for key, flag in parameters.items():
            if key != "binary_data":
                msg = "unsupported parameter; an output takes binary_data"
                errors.append(ErrorItem(("outputs", name, "parameters", key), msg))
            elif not isinstance(flag, bool):
                errors.append(ErrorItem(("outputs", name, "parameters", key), "expected a boolean"))
        if name in outputs:
            errors.append(ErrorItem(("outputs", name), "requested twice"))
        binary = parameters.get("binary_data")
        outputs[name] = binary if isinstance(binary, bool) else None
    return outputs


def _parameters(value: object, request: InferRequest, errors: list[ErrorItem]) -> None:
    """The request's parameters: ``reduction``, ``binary_data_output``, ``timeout`` (microseconds,
    as Triton's: it shortens the deadline), and the loss's params."""
    if value is None:
        return
    if not isinstance(value, dict):
        errors.append(ErrorItem(("parameters",), "expected an object"))
        return
    for key, v in value.items():
        if key not in PROTOCOL_PARAMS:
            request.params[key] = v
        elif key == "reduction":
            if isinstance(v, str):
                request.reduction = v
            else:
                errors.append(ErrorItem(("parameters", key), f"expected a string; got {_text(v)}"))
        elif key == "binary_data_output":
            if isinstance(v, bool):
                request.binary_output = v
            else:
                errors.append(ErrorItem(("parameters", key), f"expected a boolean; got {_text(v)}"))
        elif type(v) is int and v > 0:
            request.timeout_s = v / 1e6
        else:
            errors.append(ErrorItem(("parameters", key), f"expected a positive number of microseconds; got {_text(v)}"))


def _text(value: object) -> str:
    return clip(value) if isinstance(value, str) else "null" if value is None else clip(orjson.dumps(value).decode())


# --- the loss's params ---------------------------------------------------------------------------
def loss_params(params_model: type, sent: dict[str, Any]) -> dict[str, Any]:
    """The params as the loss takes them: a list param sent as a JSON string (``"[0.25, 0.75]"``:
    the protocol's parameters are numbers, booleans and strings) becomes its list. Anything else
    is left for the loss's own checks to judge."""
    lists = _list_params(params_model)
    if not lists:
        return sent
    out = dict(sent)
    for name in lists.intersection(sent):
        text = sent[name]
        if isinstance(text, str) and text.lstrip().startswith("["):
            with contextlib.suppress(orjson.JSONDecodeError):  # else the loss says what it expected
                out[name] = orjson.loads(text)
    return out


@functools.cache
def _list_params(model: type) -> frozenset[str]:
    fields = getattr(model, "model_fields", {})
    return frozenset(name for name, info in fields.items() if _takes_list(info.annotation))


def _takes_list(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (Union, types.UnionType) or getattr(origin, "__name__", "") == "Annotated":
        return any(_takes_list(a) for a in get_args(tp))
    return False


# --- tensors -------------------------------------------------------------------------------------
def decode(
    request: InferRequest, buf: bytes | bytearray | memoryview, start: int, max_elements: int
) -> tuple[dict[str, Decoded], int]:
    """Each input's tensor, and the bytes that decoding binary data made beyond the body's
    (JSON data is bounded by its parse). ``buf[start:]`` is the binary data (empty without it).
    Binary tensors are views of ``buf`` where it is writable and they are aligned (else copies)."""
    made, at = 0, start
    want = sum(i.binary_size for i in request.inputs if i.binary_size is not None)
    if want != len(buf) - start:
        raise MalformedRequest.at(
            ("body",),
            f"the binary data is {len(buf) - start} bytes; the inputs' binary_data_size add up to {want}",
        )
    tensors: dict[str, Decoded] = {}
    for item in request.inputs:
        loc: Loc = ("inputs", item.name)
        if item.binary_size is None:
            tensors[item.name] = _from_json(item, loc, max_elements)
            item.data = None  # the parsed form is freed as soon as it is decoded
            continue
        arr, copied = _binary(buf, at, item, loc, max_elements)
        at += item.binary_size
        made += arr.nbytes if copied else 0
        tensors[item.name] = Decoded(arr, item.dtype.name)
    return tensors, made


_PLAIN = {"float32", "float64", "int64"}  # JSON numbers go straight into these (what clients send most)


def _from_json(item: Input, loc: Loc, max_elements: int) -> Decoded:
    """JSON data. A flat list of numbers of the right count goes straight into the datatype's
    storage where nothing can go wrong (floats that stay finite, integers that are int64's);
    anything else through v1's ``{data, shape, dtype}`` form, whose checks and messages decide."""
    data, dtype = item.data, item.dtype
    flat = type(data) is list and len(item.shape) <= MAX_DIMS and len(data) == math.prod(item.shape)
    if flat and dtype.name in _PLAIN:
        check_shape(item.shape, loc, max_elements)
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError):  # ragged
            arr = None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "if":
            if dtype.is_float:
                with np.errstate(over="ignore"):
                    out = arr.astype(dtype.storage, copy=False)
                if np.isfinite(out).all():
                    return Decoded(out.reshape(item.shape), dtype.name)
            elif arr.dtype == np.int64:
                return Decoded(arr.reshape(item.shape), dtype.name)
    return decode_tensor({"data": data, "shape": item.shape, "dtype": dtype.name}, loc, max_elements)


def _binary(
    buf: bytes | bytearray | memoryview, at: int, item: Input, loc: Loc, max_elements: int
) -> tuple[np.ndarray, bool]:
    check_shape(item.shape, loc, max_elements)  # before a byte is read
    count = math.prod(item.shape)
    dtype = item.dtype
    need = count * dtype.itemsize
    if item.binary_size != need:
        raise MalformedRequest.at(
            (*loc, "parameters", "binary_data_size"),
            f"expected {need} bytes for shape {fmt_shape(tuple(item.shape))} of {dtype.v2}; got {item.binary_size}",
        )
    if dtype.name == "bfloat16":  # the upper half of a float32: exact
        raw = np.frombuffer(buf, np.dtype("<u2"), count, at)
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(item.shape), True
    arr = np.frombuffer(buf, dtype.storage.newbyteorder("<"), count, at).reshape(item.shape)
    if arr.flags.writeable and arr.flags.aligned and arr.dtype.isnative:
        return arr, False
    return np.array(arr, dtype=dtype.storage.newbyteorder("="), order="C"), True


# --- the response --------------------------------------------------------------------------------
Parts = list[bytes | memoryview]


def response(head: dict, outputs: list[tuple[str, np.ndarray, DType, bool]]) -> tuple[list[tuple[bytes, bytes]], Parts]:
    """The response's headers and body for ``head`` (everything but the outputs) and the outputs
    (name, values, dtype, binary)."""
    entries, blobs = [], []
    for name, arr, dtype, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": dtype.v2, "shape": list(arr.shape)}
        if binary:
            blob = raw(arr, dtype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = encode.tensor(arr, dtype.name, "json")["data"]
        entries.append(entry)
    text = orjson.dumps({**head, "outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    size = len(text) + sum(len(b) for b in blobs)
    headers = [(b"content-length", str(size).encode())]
    if not blobs:
        return [(b"content-type", b"application/json"), *headers], [text]
    headers.append((b"content-type", b"application/octet-stream"))
    headers.append((b"inference-header-content-length", str(len(text)).encode()))
    return headers, [text, *blobs]


def raw(arr: np.ndarray, dtype: DType) -> memoryview:
    """The tensor's raw little-endian row-major bytes (a view of its memory where it has them)."""
    if dtype.name == "bfloat16":  # held as float32 whose values are bfloat16's: its upper half
        bits = np.ascontiguousarray(arr, dtype=np.float32).reshape(-1).view(np.uint32)
        return (bits >> 16).astype("<u2").view(np.uint8).data
    out = np.ascontiguousarray(arr, dtype=dtype.storage.newbyteorder("<"))
    return out.reshape(-1).view(np.uint8).data
