"""POST /v2/models/{model}[/versions/{v}]/infer: read, decode, evaluate through the core, encode.

Served by the Gateway directly (``InferFastPath``), as v1's hot route is: request ids, API keys,
limits, the access log and metrics apply as to every route, without FastAPI's per-request layers.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from ...codecs.body import read_all
from ...core import Admission, Ask, Core, Result, Spec, json_parsing_bytes, json_text, offload, raw_bytes
from ...dtypes import DTYPES
from ...errors import ErrorItem, InvalidInput, Loc, MalformedRequest, ServiceError, UnsupportedMediaType, clip
from ...headers import header
from ...losses.base import Loss
from ..problems import Reply, unexpected_error
from . import codec, models
from .errors import error_reply

STATS = ("aggregate_sum", "aggregate_weight")
PLAIN = ("value", "elementwise", "per_sample", *STATS)


async def answer(core: Core, scope: Scope, receive: Receive, name: str, version: str | None) -> Reply:
    """The answer to an infer request, or a ServiceError."""
    deadline = core.deadline()
    with core.admit() as admission:
        with admission.decoding():
            request, ask, tensors, size = await _decode(core, scope, receive, admission, name, version)
        if request.timeout_s is not None:
            deadline = min(deadline, time.perf_counter() + request.timeout_s)
        wanted = _wanted(request, ask)
        text = raw_bytes if all(binary for _, binary in wanted) else json_text
        grads = ask.return_grad if isinstance(ask.return_grad, list) else []
        try:
            results = await core.evaluate(admission, ask, tensors, deadline, text, size)
        except ServiceError as exc:
            raise in_v2_terms(exc, grads) from None
        (result,) = results.values()
        head: dict[str, Any] = {"model_name": name, "model_version": models.VERSION}
        if request.id is not None:
            head["id"] = request.id
        head["parameters"] = _meta(result, str(admission.engine.device))
        out = result.job.nbytes if result.job.grad_roles or result.job.return_elementwise else 0
        headers, parts = await offload(out, codec.response, head, _outputs(result, wanted))
        return 200, headers, parts


async def _decode(
    core: Core, scope: Scope, receive: Receive, admission: Admission, name: str, version: str | None
) -> tuple[codec.InferRequest, Ask, dict, int]:
    encoding = header(scope, b"content-encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {clip(encoding)} is not supported; send the body uncompressed")
    length = header(scope, b"content-length")
    json_bytes = codec.header_length(
        header(scope, b"inference-header-content-length"), int(length) if length is not None else None
    )
    pad = codec.padding(json_bytes) if json_bytes is not None else 0
    if json_bytes is not None and length is not None:
        buf: bytes | bytearray | memoryview = await _read_into(receive, pad, int(length))
    else:
        buf = await read_all(receive, bytearray(pad) if json_bytes is not None else None)  # chunked
    size = len(buf) - pad
    if json_bytes is None:
        json_bytes = size
    elif json_bytes > size:  # a body sent without Content-Length (chunked)
        codec.header_length(str(json_bytes), size)
    loss = core.registry.get(name, ("model",))  # the model first, whatever the body holds
    models.check_version(loss, name, version)
    scope["state"]["loss"] = loss.name
    whole = isinstance(buf, (bytes, bytearray)) and pad == 0 and json_bytes == size  # JSON alone: as it came
    text = buf if whole else bytes(buf[pad : pad + json_bytes])
    admission.hold(await offload(json_bytes, json_parsing_bytes, text))
    request = await offload(json_bytes, codec.parse, text)
    del text
    ask = _ask(loss, request)
    max_elements = core.settings.limits.max_elements
    tensors, made = await offload(size, codec.decode, request, buf, pad + json_bytes, max_elements)
    admission.hold(admission.nbytes + made)
    return request, ask, tensors, size


async def _read_into(receive: Receive, pad: int, length: int) -> memoryview:
    """A body with binary data and a Content-Length, in one writable buffer of that size (its
    tensors are views of it) after ``pad`` bytes that put the binary data at an aligned offset.
    The buffer is allocated untouched: its pages become memory as the bytes arrive (which the
    Gateway counts), as a grown one's would, without the copies of growing."""
    view = np.empty(pad + length, np.uint8).data
    at = pad
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        end = at + len(chunk)
        if end > len(view):
            raise MalformedRequest.at(("body",), f"more than its Content-Length of {length} bytes")
        view[at:end] = chunk
        at = end
        if not message.get("more_body", False):
            return view[:at]


def _ask(loss: Loss, request: codec.InferRequest) -> Ask:
    """What the request asks of the core: the loss with its params, and the outputs' quantities."""
    roles = {r.name for r in loss.roles}
    grads, errors = [], []
    for out in request.outputs or ():
        role = out[5:] if out.startswith("grad_") else None
        if role is not None and role in roles:
            grads.append(role)
        elif out not in PLAIN:
            msg = f"unknown output {clip(out)} for {loss.name}; expected {', '.join(models.output_names(loss))}"
            errors.append(ErrorItem(("outputs", out), msg))
    if errors:
        raise InvalidInput(errors=errors)
    outputs = request.outputs or {}
    spec = Spec(loss.name, codec.loss_params(loss.params, request.params), request.reduction)
    return Ask({"": spec}, grads or False, "elementwise" in outputs, "per_sample" in outputs)


def _wanted(request: codec.InferRequest, ask: Ask) -> list[tuple[str, bool]]:
    """The outputs to give, each with whether it is binary: those asked for, or by default the
    value, and the elementwise values under reduction none."""
    if not request.outputs:
        names = ["value", "elementwise"] if ask.losses[""].reduction == "none" else ["value"]
        return [(n, request.binary_output) for n in names]
    return [(n, request.binary_output if b is None else b) for n, b in request.outputs.items()]


def _outputs(result: Result, wanted: list[tuple[str, bool]]) -> list[tuple[str, np.ndarray, Any, bool]]:
    """Each output asked for that the result has (value under reduction none, an aggregate that
    the loss does not split, per_sample where none is computed: left out, where v1 writes null)."""
    job, outcome = result.job, result.outcome
    dtype = DTYPES[job.dtype]
    out = []
    for name, binary in wanted:
        arr: np.ndarray | None
        kind = dtype
        if name == "value":
            arr = None if outcome.value is None else np.array([outcome.value], dtype=dtype.storage)
        elif name == "elementwise":
            arr = outcome.elementwise
        elif name == "per_sample":
            arr = outcome.per_sample
        elif name in STATS:
            kind = DTYPES["float64"]
            agg = outcome.aggregate
            arr = None if agg is None else np.array([agg[STATS.index(name)]], dtype=np.float64)
        else:
            arr = outcome.grads.get(name[5:])
        if arr is not None:
            out.append((name, arr, kind, binary))
    return out


def _meta(result: Result, device: str) -> dict:
    """v1's ``meta``, with the loss and reduction, as the response's parameters."""
    job = result.job
    return {
        "loss": job.name,
        "reduction": job.reduction,
        "device": device,
        "dtype": job.dtype,
        "batch_size": result.outcome.batch_size,
        "queue_ms": round(result.ticket.queue_ms, 3),
        "compute_ms": round(result.ticket.compute_ms, 3),
    }


def in_v2_terms(exc: ServiceError, grads: list[str]) -> ServiceError:
    """``exc`` with each place named as this protocol's request names it: the loss's params and
    reduction are ``parameters.*``, a gradient is its output ``grad_<role>``. The messages are v1's."""
    old = exc.errors
    new = [ErrorItem(_loc(e.loc, grads), e.msg) for e in old]
    if new == old:
        return exc
    first = old[0].text()
    if exc.detail.startswith(first):
        exc.detail = new[0].text() + exc.detail[len(first) :]
    exc.errors = new
    return exc


def _loc(loc: Loc, grads: list[str]) -> Loc:
    if loc[:2] in (("loss", "params"), ("loss", "reduction")):
        return ("parameters", *loc[2:]) if loc[1] == "params" else ("parameters", "reduction")
    if loc == ("loss",):
        return ("model",)
    if loc[:1] == ("return_grad",) and len(loc) == 2 and isinstance(loc[1], int) and loc[1] < len(grads):
        return ("outputs", f"grad_{grads[loc[1]]}")
    if loc in (("return_elementwise",), ("return_per_sample",)):
        return ("outputs", str(loc[0]).removeprefix("return_"))
    return loc


class InferFastPath:
    """Serves the infer routes from the Gateway (which matches ``PATH`` and puts the model's name
    and version in ``scope["path_params"]``). The FastAPI routes stay declared: the OpenAPI
    document describes them, and they serve if this is removed."""

    METHOD = "POST"
    PATH = re.compile(r"^/v2/models/(?P<model_name>[^/]+)(?:/versions/(?P<model_version>[^/]+))?/infer$")

    def __init__(self, app: FastAPI, routes: list) -> None:
        self.app = app  # the FastAPI application, whose state holds the core
        self.plain = next(r for r in routes if getattr(r, "path", None) == "/v2/models/{model_name}/infer")
        self.versioned = next(
            r for r in routes if getattr(r, "path", None) == "/v2/models/{model_name}/versions/{model_version}/infer"
        )

    async def __call__(self, scope: Scope, receive: Receive) -> Reply | None:
        """The answer, or None when the client went away (nobody to answer)."""
        params = scope.get("path_params") or {}
        version = params.get("model_version")
        scope["app"] = self.app
        scope["route"] = self.plain if version is None else self.versioned
        try:
            return await answer(self.app.state.core, scope, receive, params["model_name"], version)
        except ClientDisconnect:
            return None
        except ServiceError as exc:
            return error_reply(exc)
        except Exception:
            return error_reply(unexpected_error(self.METHOD, scope["path"]))
