"""POST /v1/evaluate: decode, check, hand to the engine, encode."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope

from ..codecs import encode
from ..codecs.body import Body, parse_json, read_body, read_multipart
from ..codecs.npy import read_npy
from ..codecs.tensors import Decoded, decode_tensor
from ..core import Admission, Ask, Core, Result, Spec, base64_text, json_parsing_bytes, json_text, offload
from ..errors import ServiceError
from ..losses.composite import CompositeJob
from ..schemas.evaluate import EvaluateManyResponse, EvaluateRequest, EvaluateResponse, LossSpec
from .problems import Reply, problem_reply, responses, unexpected_error

router = APIRouter(tags=["evaluate"])

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
    response_model=EvaluateResponse | EvaluateManyResponse,
    summary="Evaluate one loss: value, elementwise values, gradients",
    openapi_extra=_REQUEST_DOC,
    responses=responses(400, 401, 404, 413, 415, 422, 429, 503, 504),
)
async def evaluate(request: Request) -> Response:
    return Response(b"".join(await answer(request)), media_type="application/json")


async def answer(request: Request) -> list[bytes]:
    """The response body for a request, in pieces (see encode.dump_parts), or a ServiceError."""
    core: Core = request.app.state.core
    deadline = core.deadline()
    with core.admit() as admission:
        with admission.decoding():
            req, ask, tensors, size = await _decode(request, core, admission)
        results = await core.evaluate(admission, ask, tensors, deadline, _TEXT[req.response_encoding], size)
        out = sum(r.job.nbytes for r in results.values() if r.job.grad_roles or r.job.return_elementwise)
        return await offload(out, _payload, req, results, str(admission.engine.device))


_TEXT = {"json": json_text, "npy": base64_text}


async def _decode(
    request: Request, core: Core, admission: Admission
) -> tuple[EvaluateRequest, Ask, dict[str, Decoded], int]:
    """The request's fields, what it asks of the core, its tensors decoded, and its wire size."""
    _, raw = await read_body(request)
    if raw is not None:  # JSON (a multipart body comes as None: its parser streams it below)
        size = len(raw)
        admission.hold(await offload(size, json_parsing_bytes, raw))
        body = Body(await offload(size, parse_json, raw))
        del raw  # the parsed form is all that is needed from here on
    else:
        body = await read_multipart(request)
        size = sum(len(v) for v in body.files.values())
    ask = _ask(body.request)
    request.scope["state"]["loss"] = core.label(ask)
    tensors = await offload(size, _tensors, body, core.settings.limits.max_elements)
    return body.request, ask, tensors, size


def _ask(req: EvaluateRequest) -> Ask:
    if req.loss is not None:
        losses = {"": _spec(req.loss)}
    else:
        losses = {label: _spec(s) for label, s in (req.losses or {}).items()}
    return Ask(losses, req.return_grad, req.return_elementwise, req.return_per_sample, req.losses is not None)


def _spec(s: LossSpec) -> Spec:
    if s.terms is not None:
        return Spec("", terms=[(_spec(t.loss), t.weight) for t in s.terms])
    assert s.name is not None  # LossSpec has a name or terms
    return Spec(s.name, s.params, s.reduction)


def _tensors(body: Body, max_elements: int) -> dict[str, Decoded]:
    req = body.request
    tensors: dict[str, Decoded] = {}
    for role in list(req.inputs):  # each parsed (nested) form is freed as soon as it is decoded
        tensors[role] = decode_tensor(req.inputs.pop(role), ("inputs", role), max_elements)
    for role, raw in body.files.items():
        arr, dtype = read_npy(raw, ("inputs", role), max_elements)
        tensors[role] = Decoded(arr, dtype)
    return tensors


def _payload(req: EvaluateRequest, results: dict[str, Result], device: str) -> list[bytes]:
    encoding = req.response_encoding
    if req.loss is not None:
        (result,) = results.values()
        return encode.dump_parts({**_content(result, encoding), "meta": _meta(results, device)})
    answer = {"results": {label: _content(r, encoding) for label, r in results.items()}, "meta": _meta(results, device)}
    return encode.dump_parts(answer)


def _meta(results: dict[str, Result], device: str) -> dict:
    first = next(iter(results.values()))
    return {
        "device": device,
        "dtype": first.job.dtype,
        "batch_size": max(r.outcome.batch_size for r in results.values()),
        "queue_ms": round(max(r.ticket.queue_ms for r in results.values()), 3),
        "compute_ms": round(sum(r.ticket.compute_ms for r in results.values()), 3),
    }


def _content(result: Result, encoding: str) -> dict:
    """One loss's result, as a v1.0 response has it (without ``meta``)."""
    job, outcome = result.job, result.outcome

    def out(arr):
        return encode.tensor(arr, job.dtype, encoding)

    el = outcome.elementwise
    content = {
        "loss": job.name,
        "reduction": job.reduction,
        "value": encode.scalar(outcome.value),
        "elementwise": out(el) if el is not None else None,
        "grad": {k: out(v) for k, v in outcome.grads.items()} or None,
        "aggregate": _aggregate(outcome.aggregate),
    }
    if job.return_per_sample and outcome.per_sample is not None:
        content["per_sample"] = out(outcome.per_sample)
    if isinstance(job, CompositeJob) and outcome.terms is not None:
        content["terms"] = [
            {
                "loss": term.name,
                "reduction": term.reduction,
                "weight": weight,
                "value": encode.scalar(o.value),
                "aggregate": _aggregate(o.aggregate),
            }
            for term, weight, o in zip(job.terms, job.weights, outcome.terms, strict=True)
        ]
    return content


def _aggregate(aggregate: tuple[float, float] | None) -> dict | None:
    if aggregate is None:
        return None
    return {"sum": encode.scalar(aggregate[0]), "weight": encode.scalar(aggregate[1])}


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
