"""POST /v1/evaluate: decode, check, hand to the engine, encode."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope

from ..codecs import encode
from ..codecs.body import Body, parse_json, read_body, read_multipart
from ..codecs.npy import read_npy
from ..codecs.tensors import Decoded, decode_tensor
from ..config import Settings
from ..engine.compute import Outcome
from ..engine.worker import Engine, Ticket
from ..errors import ServiceError, UnknownLoss
from ..losses.prepare import Job, prepare
from ..losses.registry import Registry
from ..schemas.evaluate import EvaluateRequest, EvaluateResponse
from .problems import Reply, problem_reply, responses, unexpected_error

router = APIRouter(tags=["evaluate"])
INLINE_BYTES = 64 * 1024  # bodies larger than this are decoded and encoded off the event loop

_REQUEST_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EvaluateRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "request": {"type": "string", "description": "the JSON request; inputs may be left out"}
                    },
                    "additionalProperties": {
                        "type": "string",
                        "format": "binary",
                        "description": "one .npy file per role",
                    },
                    "required": ["request"],
                }
            },
        },
    }
}


@router.post(
    "/v1/evaluate",
    response_model=EvaluateResponse,
    summary="Evaluate one loss: value, elementwise values, gradients",
    openapi_extra=_REQUEST_DOC,
    responses=responses(400, 401, 404, 413, 415, 422, 429, 503, 504),
)
async def evaluate(request: Request) -> Response:
    return Response(b"".join(await answer(request)), media_type="application/json")


async def answer(request: Request) -> list[bytes]:
    """The response body for a request, in pieces (see encode.dump_parts), or a ServiceError."""
    state = request.app.state
    settings: Settings = state.settings
    engine: Engine = state.engine
    deadline = time.perf_counter() + settings.engine.request_timeout_s
    engine.reserve(0)  # 503 at once when the worker is not running
    held = Held(engine)  # what the request needs beyond its body (which the Gateway counts)
    try:
        engine.arriving += 1
        try:
            job, encoding = await _decode(request, settings, state.registry, held)
        finally:
            engine.arriving -= 1
        held.set(_working_bytes(job, encoding))
        outcome, ticket = await engine.submit(job, deadline)
        out_bytes = job.nbytes if (job.grad_roles or job.return_elementwise) else 0
        return await _sized(out_bytes, _payload, job, outcome, ticket, str(engine.device), encoding)
    finally:
        held.set(0)


class Held:
    """A request's share of the in-flight budget beyond its body, set for each stage to a bound on
    what that stage holds: raised (429 when the budget is full) or lowered as the request goes."""

    __slots__ = ("engine", "nbytes")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.nbytes = 0

    def set(self, nbytes: int) -> None:
        if nbytes > self.nbytes:
            self.engine.take(nbytes - self.nbytes)
        elif nbytes < self.nbytes:
            self.engine.release(self.nbytes - nbytes)
        self.nbytes = nbytes


async def _decode(request: Request, settings: Settings, registry: Registry, held: Held) -> tuple[Job, str]:
    _, raw = await read_body(request)
    if raw is not None:  # JSON (a multipart body comes as None: its parser streams it below)
        size = len(raw)
        held.set(await _sized(size, _parsing_bytes, raw))
        body = Body(await _sized(size, parse_json, raw))
        del raw  # the parsed form is all that is needed from here on
    else:
        body = await read_multipart(request)
        size = sum(len(v) for v in body.files.values())
    request.scope["state"]["loss"] = _loss_label(registry, body.request)
    tensors = await _sized(size, _tensors, body, settings.limits.max_elements)
    held.set(held.nbytes + 8 * sum(t.array.size for t in tensors.values()))  # prepare's conversions
    spec, req = body.request.loss, body.request
    job = await _sized(
        size, prepare, registry, spec.name, spec.params, spec.reduction, tensors, req.return_grad,
        req.return_elementwise,
    )  # fmt: skip
    return job, req.response_encoding


def _parsing_bytes(raw: bytes | bytearray) -> int:
    """A bound on what parsing a JSON body holds besides the body: each number becomes at most
    8 bytes (numbers are parsed into float64 or int64), and a base64 string 3/4 of its length.
    A number takes at least two characters with its separator; a large body's numbers are
    counted by their separators (every number but an array's last is followed by a comma)."""
    if len(raw) <= INLINE_BYTES:
        return 8 * (len(raw) // 2 + 1) + len(raw) * 3 // 4
    return 8 * (raw.count(b",") + raw.count(b"[") + 1) + len(raw) * 3 // 4


def _working_bytes(job: Job, encoding: str) -> int:
    """A bound on what a checked request holds until it is answered: its tensors, their
    gradients and elementwise values, and the response's text (JSON numbers of up to 24
    characters, or base64 .npy at 4/3 of the bytes)."""
    grads = sum(job.arrays[r].size for r in job.grad_roles)
    out = grads + (max(a.size for a in job.arrays.values()) if job.return_elementwise else 0)
    itemsize = job.torch_dtype.itemsize
    text = out * 24 if encoding == "json" else out * itemsize * 4 // 3 + 1024
    return job.nbytes + out * itemsize + text


async def _sized(size: int, fn, *args):
    """Small work inline; large work (decoding, encoding) off the event loop, so that other
    requests keep flowing while it runs."""
    return await run_in_threadpool(fn, *args) if size > INLINE_BYTES else fn(*args)


def _loss_label(registry: Registry, req: EvaluateRequest) -> str:
    """The canonical name for metrics, or 'unknown' (never the client's free text)."""
    try:
        return registry.get(req.loss.name).name
    except UnknownLoss:  # reported to the client by prepare()
        return "unknown"


def _tensors(body: Body, max_elements: int) -> dict[str, Decoded]:
    req = body.request
    tensors: dict[str, Decoded] = {}
    for role in list(req.inputs):  # each parsed (nested) form is freed as soon as it is decoded
        tensors[role] = decode_tensor(req.inputs.pop(role), ("inputs", role), max_elements)
    for role, raw in body.files.items():
        arr, dtype = read_npy(raw, ("inputs", role), max_elements)
        tensors[role] = Decoded(arr, dtype)
    return tensors


def _payload(job: Job, outcome: Outcome, ticket: Ticket, device: str, encoding: str) -> list[bytes]:
    return encode.dump_parts(_content(job, outcome, ticket, device, encoding))


def _content(job: Job, outcome: Outcome, ticket: Ticket, device: str, encoding: str) -> dict:
    def out(arr):
        return encode.tensor(arr, job.dtype, encoding)

    el = outcome.elementwise
    return {
        "loss": job.loss.name,
        "reduction": job.reduction,
        "value": encode.scalar(outcome.value),
        "elementwise": out(el) if el is not None else None,
        "grad": {k: out(v) for k, v in outcome.grads.items()} or None,
        "meta": {
            "device": device,
            "dtype": job.dtype,
            "batch_size": outcome.batch_size,
            "queue_ms": round(ticket.queue_ms, 3),
            "compute_ms": round(ticket.compute_ms, 3),
        },
    }


class EvaluateFastPath:
    """Serves ``POST /v1/evaluate`` (the hot route) without FastAPI's per-request routing,
    dependency and exception machinery: measured at about a fifth of a small request's time.

    Called directly by the service's Gateway (see ``LossService``), which sends the answer, so
    request ids, access logs, metrics, API keys and body limits apply as to every route. The
    FastAPI route above stays registered: it is what the OpenAPI document describes, and it
    serves if this is removed.
    """

    METHOD, PATH = "POST", "/v1/evaluate"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app  # the FastAPI application, whose state the route reads
        self.route = next(r for r in router.routes if getattr(r, "path", None) == self.PATH)

    async def __call__(self, scope: Scope, receive: Receive) -> Reply | None:
        """The answer, or None when the client went away (nobody to answer)."""
        scope["app"] = self.app
        scope["route"] = self.route
        try:
            parts = await answer(Request(scope, receive))
        except ClientDisconnect:
            return None
        except ServiceError as exc:
            return problem_reply(exc)
        except Exception:
            return problem_reply(unexpected_error(self.METHOD, self.PATH))
        length = sum(map(len, parts))
        return 200, [(b"content-type", b"application/json"), (b"content-length", str(length).encode())], parts
