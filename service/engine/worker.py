"""The device worker: one thread owns the device, takes queued jobs in batches and computes them.

Its first duty: every submitted job's future is completed, with an outcome or an error, whatever
happens (a failing batch-mate, a dead worker, a shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from .. import memory, timeouts
from ..config import EngineSettings
from ..errors import (
    ComputeFailed,
    DeadlineExceeded,
    NotReady,
    Overloaded,
    ServiceError,
    TooLarge,
)
from ..losses.composite import AnyJob, CompositeJob
from ..observability import metrics
from .composite import composite_key, run_composite, run_composite_group
from .compute import Outcome, group_key, run_group
from .device import probe

log = logging.getLogger("service.engine")
_SOLO = object()  # the group key of a ticket that runs alone
TRIM_AFTER_BYTES = 64 * 2**20  # in flight at once, before the allocator's free memory is handed back
TRIM_IDLE_S = 1.0  # ... once nothing has been in flight for this long


@dataclass(eq=False, slots=True)
class Ticket:
    job: AnyJob
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    deadline: float
    queued_at: float = field(default_factory=time.perf_counter)
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    cancelled: bool = False
    key: object = field(default=None, repr=False)  # group key, computed once by the worker

    def finish(self, result: Outcome | BaseException) -> None:
        finish_all([(self, result)])

    def settle(self, result: Outcome | BaseException) -> None:
        """On the event loop: complete the future (unless the request already gave up)."""
        if self.future.done():
            return
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


def _expire(ticket: Ticket) -> None:
    """The deadline passed: answer 504 now; the worker skips the job if it has not started."""
    if not ticket.future.done():
        ticket.cancelled = True
        metrics.REJECTIONS.labels("deadline").inc()
        ticket.future.set_exception(DeadlineExceeded("the request took longer than its deadline"))


def finish_all(results: list[tuple[Ticket, Outcome | BaseException]]) -> None:
    """Complete many tickets with one cross-thread call per event loop (one wake-up, not one each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for ticket, result in results:
        by_loop.setdefault(ticket.loop, []).append((ticket, result))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[Ticket, Outcome | BaseException]]) -> None:
    for ticket, result in items:
        ticket.settle(result)


class Engine:
    def __init__(self, settings: EngineSettings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self._queue: deque[Ticket] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.alive = False
        self.inflight_bytes = 0
        self._high = 0  # the most in flight since memory was last handed back
        self._taken = 0  # reservations made, ever: whether any came while waiting to trim
        self._trim_timer: asyncio.TimerHandle | None = None
        self._tight = False  # a quarter of the budget in flight: the allocator returns every large block
        self.arriving = 0  # requests admitted and still decoding: a reason to wait for company

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        probe(self.device)
        self.alive = True
        self._thread = threading.Thread(target=self._run, name="loss-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ready(self) -> bool:
        # ``alive`` is cleared by the thread's own last act (``_run``'s finally), so it is what
        # Thread.is_alive() would say, without taking the thread's lock twice per request.
        return self.alive and not self._stopping

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # --- admission (event loop thread) -----------------------------------------------------
    def reserve(self, nbytes: int) -> None:
        """Count ``nbytes`` against the in-flight budget for a new request: 503 when the worker
        is not running, 429 when the budget is full."""
        if not self.ready:
            raise NotReady("the compute worker is not running")
        self.take(nbytes)

    def take(self, nbytes: int) -> None:
        """Count ``nbytes`` against the in-flight budget, or refuse with 429. (Body bytes, as they
        arrive: a request admitted before a shutdown may finish its body while draining.)"""
        if self.inflight_bytes + nbytes > self.settings.inflight_bytes:
            metrics.REJECTIONS.labels("inflight_bytes").inc()
            raise Overloaded("the in-flight byte budget is full; retry later")
        self.inflight_bytes += nbytes
        self._taken += 1
        if self.inflight_bytes > self._high:
            self._high = self.inflight_bytes
        if not self._tight and self.inflight_bytes > self.settings.inflight_bytes // 4:
            self._tight = True  # memory is tight: no reuse from the heap (see service.memory)
            memory.reuse(False)

    def release(self, nbytes: int) -> None:
        """Give ``nbytes`` back; once nothing has been in flight for ``TRIM_IDLE_S`` after a large
        burst, hand the freed memory back to the system (off the event loop). Not at once: under
        load (even one request after another) the allocator's free memory is what the next
        request reuses, where pages handed back would be faulted in again (measured: +13 ms on a
        26 MB request)."""
        self.inflight_bytes -= nbytes
        if self._tight and self.inflight_bytes < self.settings.inflight_bytes // 8:
            self._tight = False
            memory.reuse(True)
        if self.inflight_bytes == 0 and self._high >= TRIM_AFTER_BYTES and self._trim_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop (a direct caller): nothing to wait for
                self._high = 0
                memory.trim()
                return
            self._trim_timer = loop.call_later(TRIM_IDLE_S, self._trim_if_idle, loop, self._taken)

    def _trim_if_idle(self, loop: asyncio.AbstractEventLoop, taken: int) -> None:
        self._trim_timer = None
        if self.inflight_bytes == 0 and self._taken == taken:  # nothing came since: idle
            self._high = 0
            loop.run_in_executor(None, memory.trim)
        elif self.inflight_bytes == 0:  # busy since, idle again now: wait for quiet again
            self._trim_timer = loop.call_later(TRIM_IDLE_S, self._trim_if_idle, loop, self._taken)

    async def submit(self, job: AnyJob, deadline: float) -> tuple[Outcome, Ticket]:
        loop = asyncio.get_running_loop()
        ticket = Ticket(job, loop.create_future(), loop, deadline)
        left = deadline - ticket.queued_at
        if left <= 0:  # late already (decoding took it all): no work is queued for it
            _expire(ticket)
            return await ticket.future
        with self._cond:
            if not self.ready:
                raise NotReady("the compute worker is not running")
            if len(self._queue) >= self.settings.queue_capacity:
                metrics.REJECTIONS.labels("queue_full").inc()
                raise Overloaded("the queue is full; retry later")
            self._queue.append(ticket)
            self._cond.notify()
        watchdog = timeouts.on(loop)  # the ticket's deadline
        watchdog.arm(ticket, left, _expire, ticket)
        try:
            outcome = await ticket.future
        except asyncio.CancelledError:  # the client went away
            ticket.cancelled = True
            raise
        finally:
            watchdog.disarm(ticket)
        return outcome, ticket

    # --- the worker thread -----------------------------------------------------------------
    def _run(self) -> None:
        batch: list[Ticket] = []
        try:
            while True:
                batch = self._next_batch() or []
                if not batch:
                    return
                self._compute(batch)
        except BaseException:
            log.exception("compute worker died")
        finally:
            self.alive = False
            self._fail_all(batch, NotReady("the compute worker stopped"))

    def _next_batch(self) -> list[Ticket] | None:
        s = self.settings
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            until = time.perf_counter() + s.max_queue_delay_ms / 1000
            # Wait for company only while other requests are on their way (low traffic pays
            # nothing), and only for a job that can have company (large ones run alone).
            alone = self._key(self._queue[0]) is None
            while not alone and len(self._queue) < s.max_batch_requests and self.arriving > 0 and not self._stopping:
                left = until - time.perf_counter()
                if left <= 0 or not self._cond.wait(left):
                    break
            return self._take(s.max_batch_requests, s.max_batch_elements)

    def _take(self, max_requests: int, max_elements: int) -> list[Ticket]:
        """The oldest ticket and the queued tickets that may share its compute call."""
        first = self._queue.popleft()
        batch = [first]
        key = self._key(first)
        if key is None:
            return batch
        elements = first.job.elements
        keep: deque[Ticket] = deque()
        while self._queue and len(batch) < max_requests:
            t = self._queue.popleft()
            size = t.job.elements
            if self._key(t) == key and elements + size <= max_elements:
                batch.append(t)
                elements += size
            else:
                keep.append(t)
        keep.extend(self._queue)
        self._queue.clear()
        self._queue.extend(keep)
        return batch

    def _key(self, ticket: Ticket) -> object:
        """The ticket's group key (None: it runs alone), computed once however long it waits."""
        if ticket.key is None:
            job, solo = ticket.job, self.settings.solo_elements
            key = composite_key(job, solo) if isinstance(job, CompositeJob) else group_key(job, solo)
            ticket.key = key or _SOLO
        return None if ticket.key is _SOLO else ticket.key

    def _compute(self, batch: list[Ticket]) -> None:
        now = time.perf_counter()
        live = []
        for t in batch:
            if t.cancelled or now > t.deadline:
                t.finish(DeadlineExceeded("the request waited longer than its deadline"))
            else:
                t.queue_ms = (now - t.queued_at) * 1000
                metrics.QUEUE_WAIT.observe(t.queue_ms / 1000)
                live.append(t)
        if live:
            self._run_tickets(live)

    def _run_tickets(self, tickets: list[Ticket]) -> None:
        start = time.perf_counter()
        try:
            head = tickets[0].job
            if isinstance(head, CompositeJob) and len(tickets) == 1:
                outcomes = [run_composite(head, self.device)]
            elif isinstance(head, CompositeJob):
                outcomes = run_composite_group([t.job for t in tickets], self.device)  # type: ignore[misc]
            else:
                outcomes = run_group([t.job for t in tickets], self.device)  # type: ignore[misc]
        except torch.OutOfMemoryError:
            self._release_device_memory()
            if len(tickets) > 1:  # too big together: split the batch and try the halves
                half = len(tickets) // 2
                self._run_tickets(tickets[:half])
                self._run_tickets(tickets[half:])
                return
            tickets[0].finish(TooLarge(f"the request does not fit in the memory of {self.device}, even alone"))
            return
        except Exception as exc:
            if len(tickets) > 1:  # one bad batch-mate must not fail the others: run each alone
                for t in tickets:
                    self._run_tickets([t])
                return
            tickets[0].finish(_as_service_error(exc, tickets[0].job))
            return
        elapsed = (time.perf_counter() - start) * 1000
        metrics.BATCH_SIZE.observe(len(tickets))
        metrics.COMPUTE_TIME.observe(elapsed / 1000)
        for t in tickets:
            t.compute_ms = elapsed
        finish_all(list(zip(tickets, outcomes, strict=True)))

    def _release_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _fail_all(self, current: list[Ticket], error: ServiceError) -> None:
        """Complete every ticket still open: the batch in hand and all that are queued."""
        with self._cond:
            pending = current + list(self._queue)
            self._queue.clear()
        finish_all([(t, error) for t in pending])  # a no-op for tickets already answered


def _as_service_error(exc: Exception, job: AnyJob) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    log.error("compute failed for %s: %s: %s", job.name, type(exc).__name__, exc)
    return ComputeFailed(f"computing {job.name} failed on the device; the error was logged")
