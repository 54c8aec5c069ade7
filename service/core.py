"""The protocol-neutral core that every protocol calls with tensors it has decoded.

A protocol (v1's JSON and multipart, the Open Inference Protocol over HTTP, later gRPC) owns its
wire format: how a body is read, how tensors are decoded and encoded, how errors are written.
Everything else is here, once: admission against the in-flight budget, the checks (``prepare``),
submission to the engine, the accounting of what each stage holds, and its release.

    with core.admit() as admission:          # 503 when the worker is not running
        with admission.decoding():            # the batcher waits for requests on their way
            tensors, ask = <the protocol decodes>  (admission.hold(...) for what it holds)
        evaluation = await core.evaluate(admission, ask, tensors, deadline, text_bytes, size)
        <the protocol encodes evaluation.results>
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from .codecs.tensors import Decoded
from .config import Settings
from .engine.compute import Outcome
from .engine.worker import Engine, Ticket
from .errors import ErrorItem, InvalidInput, NotReady, UnknownLoss, collect
from .losses.composite import COMPOSITE, AnyJob, Term, hold_once, prepare_named, prepare_terms, under, untaken
from .losses.prepare import Job, prepare
from .losses.registry import Registry

INLINE_BYTES = 64 * 1024  # work on bodies larger than this runs off the event loop

# A bound on the bytes of a response's text per output element of a given item size (JSON
# numbers of up to 24 characters, base64 .npy at 4/3, raw bytes at 1): a protocol's encoding.
TextBytes = Callable[[int, int], int]


def json_text(elements: int, itemsize: int) -> int:
    return elements * 24


def base64_text(elements: int, itemsize: int) -> int:
    return elements * itemsize * 4 // 3 + 1024


def raw_bytes(elements: int, itemsize: int) -> int:
    return elements * itemsize + 1024


@dataclass(slots=True)
class Spec:
    """One loss as a request names it: a name, params and a reduction."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    reduction: str = "mean"
    terms: list[tuple[Spec, float]] | None = None  # a composite: (term, weight), in place of a name


@dataclass(slots=True)
class Ask:
    """What a request asks of the core, whatever protocol carried it: one loss or several (by the
    client's labels), and which outputs."""

    losses: dict[str, Spec]
    return_grad: bool | list[str] = False
    return_elementwise: bool = False
    return_per_sample: bool = False
    several: bool = False  # losses by label (v1.1's ``losses``), even when there is one


@dataclass(slots=True)
class Result:
    """One loss's answer: the checked job, what the engine computed, and its queue and compute times."""

    job: AnyJob
    outcome: Outcome
    ticket: Ticket


class Admission:
    """A request's hold on the service from its admission to its answer: its share of the in-flight
    budget beyond its body (which the Gateway counts as it arrives), set for each stage to a bound
    on what that stage holds, raised (429 when the budget is full) or lowered as the request goes,
    and given back when it ends."""

    __slots__ = ("engine", "nbytes")

    def __init__(self, engine: Engine) -> None:
        engine.reserve(0)  # 503 at once when the worker is not running
        self.engine = engine
        self.nbytes = 0

    def hold(self, nbytes: int) -> None:
        if nbytes > self.nbytes:
            self.engine.take(nbytes - self.nbytes)
        elif nbytes < self.nbytes:
            self.engine.release(self.nbytes - nbytes)
        self.nbytes = nbytes

    def decoding(self) -> _Arriving:
        """While a request decodes, the batcher knows that company is on its way."""
        return _Arriving(self.engine)

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold(0)


class _Arriving:
    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        self.engine.arriving += 1

    def __exit__(self, *exc: object) -> None:
        self.engine.arriving -= 1


async def offload(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Small work inline; large work (decoding, checking, encoding) off the event loop, so that
    other requests keep flowing while it runs."""
    return await run_in_threadpool(fn, *args) if size > INLINE_BYTES else fn(*args)


def json_parsing_bytes(raw: bytes | bytearray) -> int:
    """A bound on what parsing a JSON body holds besides the body: each number becomes at most
    8 bytes (numbers are parsed into float64 or int64), and a base64 string 3/4 of its length.
    A number takes at least two characters with its separator; a large body's numbers are
    counted by their separators (every number but an array's last is followed by a comma)."""
    if len(raw) <= INLINE_BYTES:
        return 8 * (len(raw) // 2 + 1) + len(raw) * 3 // 4
    return 8 * (raw.count(b",") + raw.count(b"[") + 1) + len(raw) * 3 // 4


class Core:
    """The service's evaluation, under every protocol. Made with the application; the engine is
    attached when the lifespan starts it."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.engine: Engine | None = None

    def admit(self) -> Admission:
        if self.engine is None:
            raise NotReady("the compute worker is not running")
        return Admission(self.engine)

    def deadline(self) -> float:
        """The deadline of a request arriving now (on ``time.perf_counter``'s clock)."""
        return time.perf_counter() + self.settings.engine.request_timeout_s

    def label(self, ask: Ask) -> str:
        """The canonical name(s) for metrics and logs, or 'unknown' (never the client's free text)."""
        names = []
        for spec in ask.losses.values():
            try:
                names.append(COMPOSITE if spec.terms is not None else self.registry.get(spec.name).name)
            except UnknownLoss:  # reported to the client by check()
                names.append("unknown")
        return names[0] if len(names) == 1 else "+".join(sorted(set(names)))

    def check(self, ask: Ask, tensors: dict[str, Decoded]) -> dict[str, AnyJob]:
        """Every loss of ``ask`` checked against the tensors it takes: the jobs, by label."""
        if not ask.several:
            ((label, spec),) = ask.losses.items()
            return {label: self._prepare(spec, tensors, ask)}
        return self._check_several(ask, tensors)

    def _prepare(self, spec: Spec, tensors: dict[str, Decoded], ask: Ask, several: bool = False) -> AnyJob:
        """One loss, a named composite or a request's composite, checked against ``tensors``."""
        if spec.terms is not None:
            terms = [Term(s.name, s.params, s.reduction, w) for s, w in spec.terms]
            return prepare_terms(
                self.registry, COMPOSITE, terms, tensors, ask.return_grad, ask.return_elementwise,
                ask.return_per_sample,
            )  # fmt: skip
        if self.registry.get(spec.name).expand is not None:
            return prepare_named(
                self.registry, spec.name, spec.params, spec.reduction, tensors, ask.return_grad,
                ask.return_elementwise, ask.return_per_sample,
            )  # fmt: skip
        return prepare(
            self.registry, spec.name, spec.params, spec.reduction, tensors, ask.return_grad, ask.return_elementwise,
            some_grads=several, return_per_sample=ask.return_per_sample,
        )  # fmt: skip

    def _roles(self, spec: Spec) -> set[str]:
        """The roles a loss (or every term of a composite) declares."""
        if spec.terms is not None:
            return {r for s, _ in spec.terms for r in self._roles(s)}
        return {r.name for r in self.registry.get(spec.name).roles}

    def _check_several(self, ask: Ask, tensors: dict[str, Decoded]) -> dict[str, AnyJob]:
        """Each loss takes the roles it declares from the shared tensors (decoded once; a role no
        loss declares is a 422) and the gradients it can give of those asked for. A client's
        error is reported where it is: under ``losses.<label>`` for a loss's name, params and
        reduction, and named by the label for the tensors it checks."""
        jobs: dict[str, AnyJob] = {}
        errors: list[ErrorItem] = []
        memo: dict = {}
        converted: dict = {}  # the arrays the losses converted, each held once
        declared: set[str] = set()
        for label, spec in ask.losses.items():
            try:
                try:
                    roles = self._roles(spec)
                except UnknownLoss as exc:
                    raise UnknownLoss(errors=[under(("losses", label), label, e) for e in exc.errors]) from None
                declared |= roles
                own = {r: t for r, t in tensors.items() if r in roles}
                job = jobs[label] = self._prepare(spec, own, ask, several=True)
                if isinstance(job, Job):
                    hold_once(job, converted)
                    job.shared = memo  # what the request's losses compute alike, computed once
            except InvalidInput as exc:
                errors += [under(("losses", label), label, e) for e in exc.errors]
        errors += untaken(tensors, ask.return_grad, declared, "loss of the request")
        collect(errors)
        return jobs

    async def evaluate(
        self,
        admission: Admission,
        ask: Ask,
        tensors: dict[str, Decoded],
        deadline: float,
        text_bytes: TextBytes,
        size: int,
    ) -> dict[str, Result]:
        """Check, hold what the request needs, compute: each loss's result, by label. ``size`` is
        the request's wire size (whether its checks are worth moving off the event loop).
        ``tensors`` is emptied once the request is checked."""
        admission.hold(admission.nbytes + 8 * sum(t.array.size for t in tensors.values()))  # conversions
        jobs = await offload(size, self.check, ask, tensors)
        # The jobs hold the converted arrays: the decoded ones (float64 from JSON numbers, say) go
        # now, from the caller's dict too, not when the request is answered.
        tensors.clear()
        admission.hold(working_bytes(list(jobs.values()), text_bytes))
        engine = admission.engine
        if len(jobs) == 1:
            ((label, job),) = jobs.items()
            outcome, ticket = await engine.submit(job, deadline)
            return {label: Result(job, outcome, ticket)}
        answers = await asyncio.gather(*(engine.submit(j, deadline) for j in jobs.values()), return_exceptions=True)
        for a in answers:
            if isinstance(a, BaseException):
                raise a
        return {label: Result(job, *a) for (label, job), a in zip(jobs.items(), answers, strict=True)}  # type: ignore[misc]


def working_bytes(jobs: list[AnyJob], text_bytes: TextBytes) -> int:
    """A bound on what checked jobs hold until they are answered: their tensors (an array that
    several jobs share counted once), their gradients and elementwise values, and the response's
    text."""
    seen: dict[int, int] = {}
    total = 0
    for job in jobs:
        for arr in job.arrays.values():
            seen[id(arr)] = arr.nbytes
        grads = sum(job.arrays[r].size for r in job.grad_roles)
        out = grads + (max(a.size for a in job.arrays.values()) if job.return_elementwise else 0)
        itemsize = job.torch_dtype.itemsize
        total += out * itemsize + text_bytes(out, itemsize)
    if len(jobs) > 1:  # the request's memo (losses.shared): a log-softmax of its largest float tensor
        total += max((a.nbytes for j in jobs for a in j.arrays.values() if a.dtype.kind == "f"), default=0)
    return total + sum(seen.values())
