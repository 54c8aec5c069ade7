"""The device worker: grouping, batched == solo, backpressure, deadlines, faults and draining.

A test-only ``gate`` loss (mse that first waits on an event) holds the worker busy so that
requests pile up in the queue deterministically.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from service.codecs.tensors import Decoded
from service.config import EngineSettings
from service.engine import worker
from service.engine.compute import run_group
from service.engine.worker import Engine
from service.errors import ComputeFailed, DeadlineExceeded, NotReady, Overloaded, TooLarge
from service.losses import default_registry
from service.losses.base import Loss
from service.losses.contract import role
from service.losses.prepare import prepare
from service.losses.registry import Registry
from service.losses.regression import LOSSES as REGRESSION

GATE = threading.Event()
CALLS: list[int] = []


def _gate_forward(t, p):
    CALLS.append(t["input"].shape[0])
    assert GATE.wait(10), "gate never opened"
    return (t["input"] - t["target"]) ** 2


def _fragile_forward(t, p):
    if (t["input"] == 13.0).any():
        raise RuntimeError("boom: a value this loss cannot take")
    return (t["input"] - t["target"]).abs()


ROLES = (role("input", "(N, *)"), role("target", "(N, *)"))
TEST_LOSSES = [
    Loss("gate", "test", "test", "formula", ROLES, _gate_forward, "(N, *)"),
    Loss("fragile", "test", "test", "formula", ROLES, _fragile_forward, "(N, *)"),
]
REGISTRY = Registry(REGRESSION + TEST_LOSSES)


def job(loss="mse", n=2, fill=None, reduction="mean", grad=False, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 3))
    if fill is not None:
        x[0, 0] = fill
    tensors = {"input": Decoded(x, "float64"), "target": Decoded(g.standard_normal((n, 3)), "float64")}
    return prepare(REGISTRY, loss, {}, reduction, tensors, grad, False)


def far(seconds=30.0):
    return time.perf_counter() + seconds


@pytest.fixture
def engine():
    GATE.clear()
    CALLS.clear()
    e = Engine(EngineSettings(queue_capacity=8, max_queue_delay_ms=0), torch.device("cpu"))
    e.start()
    yield e
    GATE.set()
    e.stop(timeout=10)


async def held(engine, *jobs, deadline=None):
    """Submit a gate job (the worker blocks on it), then ``jobs``; returns their tasks."""
    gate = asyncio.ensure_future(engine.submit(job("gate"), far()))
    while not CALLS:
        await asyncio.sleep(0.001)
    tasks = [asyncio.ensure_future(engine.submit(j, deadline or far())) for j in jobs]
    await asyncio.sleep(0.01)
    return gate, tasks


def test_queued_compatible_requests_share_one_call(engine):
    async def go():
        jobs = [
            job(n=n, seed=n, reduction=r, grad=True) for n, r in [(1, "mean"), (2, "sum"), (3, "none"), (4, "mean")]
        ]
        gate, tasks = await held(engine, *jobs)
        GATE.set()
        await gate
        return [await t for t in tasks], jobs

    results, jobs = asyncio.run(go())
    assert [o.batch_size for o, _ in results] == [4, 4, 4, 4]
    for (outcome, _), j in zip(results, jobs, strict=True):
        x = torch.from_numpy(j.arrays["input"]).requires_grad_(True)
        y = torch.from_numpy(j.arrays["target"])
        want = torch.nn.functional.mse_loss(x, y, reduction=j.reduction)
        (want.sum() if j.reduction == "none" else want).backward()
        if j.reduction == "none":
            np.testing.assert_allclose(outcome.elementwise, want.detach().numpy(), rtol=1e-12)
        else:
            assert outcome.value == pytest.approx(want.item(), rel=1e-12)
        np.testing.assert_allclose(outcome.grads["input"], x.grad.numpy(), rtol=1e-12)


def _ce_job(n, seed, reduction, grad=False, elementwise=False):
    g = np.random.default_rng(seed)
    target = g.integers(0, 4, n)
    target[0] = -100  # ignored: the mean divides by the targets kept
    tensors = {"input": Decoded(g.standard_normal((n, 4)), "float64"), "target": Decoded(target, "int64")}
    return prepare(default_registry(), "cross_entropy", {}, reduction, tensors, grad, elementwise)


@pytest.mark.parametrize(
    "reductions",
    [["mean"] * 4, ["sum"] * 4, ["mean", "sum", "mean", "none"], ["none"] * 3],
    ids=["all-mean", "all-sum", "mixed", "all-none"],
)
@pytest.mark.parametrize("wants", ["values", "elementwise", "grad"])
def test_a_group_gives_each_request_its_own_answer(reductions, wants):
    """One compute call for the group; each value, elementwise row and gradient equals PyTorch's
    for the request alone (the all-mean and values-only groups take shorter paths)."""
    jobs = [
        _ce_job(n, seed=n, reduction=r, grad=wants == "grad", elementwise=wants == "elementwise")
        for n, r in zip([2, 5, 3, 4], reductions, strict=False)  # as many jobs as reductions (all-none: 3)
    ]
    outcomes = run_group(jobs, torch.device("cpu"))
    for j, o in zip(jobs, outcomes, strict=True):
        assert o.batch_size == len(jobs)
        x = torch.from_numpy(j.arrays["input"]).requires_grad_(True)
        want = torch.nn.functional.cross_entropy(x, torch.from_numpy(j.arrays["target"]), reduction=j.reduction)
        (want.sum() if j.reduction == "none" else want).backward()
        if j.reduction == "none":
            assert o.value is None
            np.testing.assert_allclose(o.elementwise, want.detach().numpy(), rtol=1e-12)
        else:
            assert o.value == pytest.approx(want.item(), rel=1e-12)
            assert (o.elementwise is not None) == (wants == "elementwise")
        if wants == "grad":
            np.testing.assert_allclose(o.grads["input"], x.grad.numpy(), rtol=1e-12)
        else:
            assert o.grads == {}


def test_incompatible_requests_are_not_mixed(engine):
    async def go():
        jobs = [job(n=2), job(n=2, grad=True), job("l1", n=2), job(n=2)]
        gate, tasks = await held(engine, *jobs)
        GATE.set()
        await gate
        return [(await t)[0].batch_size for t in tasks]

    # the two plain mse jobs share a call; mse-with-grad and l1 each run apart
    assert asyncio.run(go()) == [2, 1, 1, 2]


def test_queue_full_is_429(engine):
    async def go():
        gate, tasks = await held(engine, *[job(seed=i) for i in range(8)])
        with pytest.raises(Overloaded, match="the queue is full; retry later"):
            await engine.submit(job(), far())
        GATE.set()
        await gate
        await asyncio.gather(*tasks)

    asyncio.run(go())


def test_inflight_budget_is_429():
    e = Engine(EngineSettings(inflight_bytes=1000), torch.device("cpu"))
    e.start()
    try:
        e.reserve(900)
        with pytest.raises(Overloaded, match="the in-flight byte budget is full; retry later"):
            e.reserve(200)
        e.release(900)
        e.reserve(1000)
    finally:
        e.stop()


def test_freed_memory_is_handed_back_only_once_the_engine_is_idle(monkeypatch):
    """Not while requests keep coming (the next one would fault the pages in again), but once
    nothing has been in flight for TRIM_IDLE_S after a large burst; small traffic never."""
    trims: list[float] = []
    monkeypatch.setattr(worker.memory, "trim", lambda: trims.append(time.monotonic()) or True)
    monkeypatch.setattr(worker, "TRIM_IDLE_S", 0.3)
    e = Engine(EngineSettings(), torch.device("cpu"))
    big = worker.TRIM_AFTER_BYTES

    async def go():
        for _ in range(5):  # one large request after another, 20 ms apart: never idle long enough
            e.take(big)
            e.release(big)
            await asyncio.sleep(0.02)
        assert trims == []
        await asyncio.sleep(1.0)  # idle now
        assert len(trims) == 1
        e.take(1000)  # small traffic: nothing to hand back
        e.release(1000)
        await asyncio.sleep(1.0)
        assert len(trims) == 1

    asyncio.run(go())


def test_the_allocator_stops_reusing_blocks_while_a_quarter_of_the_budget_is_in_flight(monkeypatch):
    """Reuse from the heap keeps large requests fast; past a quarter of the budget every large
    block is returned when freed (peak RSS within the budget), until under an eighth again."""
    modes: list[bool] = []
    monkeypatch.setattr(worker.memory, "reuse", modes.append)
    e = Engine(EngineSettings(inflight_bytes=800), torch.device("cpu"))
    e.take(200)  # a quarter: not past it
    assert modes == []
    e.take(1)
    e.take(300)  # once, however much more comes
    assert modes == [False]
    e.release(401)  # 100 left: not under an eighth
    assert modes == [False]
    e.release(100)
    assert modes == [False, True]


def test_deadline_is_504_and_the_work_is_skipped(engine):
    async def go():
        late = job("gate", n=5)
        gate, tasks = await held(engine, late, deadline=time.perf_counter() + 0.05)
        with pytest.raises(DeadlineExceeded, match="the request took longer than its deadline"):
            await tasks[0]
        GATE.set()
        await gate
        await engine.submit(job("gate", n=7), far())  # the worker has moved past the skipped job

    asyncio.run(go())
    assert CALLS == [2, 7]  # the late n=5 job never reached a forward call


def test_failing_batch_mate_fails_alone(engine):
    async def go():
        jobs = [job("fragile", seed=1), job("fragile", fill=13.0, seed=2), job("fragile", seed=3)]
        gate, tasks = await held(engine, *jobs)
        GATE.set()
        await gate
        return await asyncio.gather(*tasks, return_exceptions=True)

    good1, bad, good2 = asyncio.run(go())
    assert isinstance(bad, ComputeFailed)
    assert bad.detail == "computing fragile failed on the device; the error was logged"
    assert "boom" not in bad.detail
    assert good1[0].batch_size == 1 and good2[0].batch_size == 1  # re-run alone
    assert good1[0].value > 0 and good2[0].value > 0


def test_worker_death_fails_every_waiting_request(engine, monkeypatch):
    def die(batch):
        raise SystemExit("worker killed")

    async def go():
        gate, tasks = await held(engine, job(seed=1), job(seed=2))
        monkeypatch.setattr(engine, "_compute", die)
        GATE.set()
        await gate  # the gate's batch was already being computed
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        with pytest.raises(NotReady):
            await engine.submit(job(), far())
        return results

    results = asyncio.run(go())
    assert all(isinstance(r, NotReady) for r in results)
    assert not engine.ready


def test_stop_drains_the_queue_and_refuses_new_work(engine):
    async def go():
        gate, tasks = await held(engine, *[job(seed=i) for i in range(4)])
        stopper = threading.Thread(target=engine.stop)
        stopper.start()
        await asyncio.sleep(0.01)
        with pytest.raises(NotReady):
            await engine.submit(job(), far())
        GATE.set()
        done = await asyncio.gather(gate, *tasks)
        stopper.join(5)
        return done

    done = asyncio.run(go())
    assert len(done) == 5 and all(o.value is not None for o, _ in done)


def test_group_key_keeps_weights_that_span_the_batch_apart():
    from service.engine.compute import group_key
    from service.losses import default_registry

    registry = default_registry()

    def bce_logits(pos_weight):
        x = np.zeros((2, 3))
        tensors = {"input": Decoded(x, "float64"), "target": Decoded(x + 0.5, "float64")}
        return prepare(registry, "bce_with_logits", {"pos_weight": pos_weight}, "mean", tensors, False, False)

    assert group_key(bce_logits([1.0, 2.0, 3.0])) is not None  # (C,) broadcasts over any N
    assert group_key(bce_logits([[1.0], [2.0]])) is None  # (N, 1) is this request's own rows
    assert group_key(bce_logits([[1.0, 2.0, 3.0]])) is not None  # (1, C)


def ctc_job(T, S, seed, reduction="mean"):
    from service.losses import default_registry

    rng = np.random.default_rng(seed)
    n, c = 2, 5
    logits = torch.from_numpy(rng.standard_normal((T, n, c)))
    tensors = {
        "log_probs": Decoded(torch.log_softmax(logits, -1).numpy(), "float64"),
        "targets": Decoded(rng.integers(1, c, (n, S)), None),
        "input_lengths": Decoded(np.array([T, T - 1]), None),
        "target_lengths": Decoded(np.array([S, S - 1]), None),
    }
    return prepare(default_registry(), "ctc", {}, reduction, tensors, ["log_probs"], False)


def test_ctc_requests_of_different_lengths_are_padded_into_one_call(engine):
    async def go():
        jobs = [ctc_job(8, 3, 1), ctc_job(12, 4, 2, "sum"), ctc_job(6, 2, 3)]
        gate, tasks = await held(engine, *jobs)
        GATE.set()
        await gate
        return [(await t)[0] for t in tasks], jobs

    outcomes, jobs = asyncio.run(go())
    assert [o.batch_size for o in outcomes] == [3, 3, 3]
    for o, j in zip(outcomes, jobs, strict=True):
        a = {k: torch.from_numpy(v) for k, v in j.arrays.items()}
        lp = a["log_probs"].clone().requires_grad_(True)
        want = torch.nn.functional.ctc_loss(
            lp, a["targets"], a["input_lengths"], a["target_lengths"], reduction=j.reduction
        )
        want.backward()
        assert o.value == pytest.approx(want.item(), rel=1e-12)
        assert o.grads["log_probs"].shape == tuple(lp.shape)
        np.testing.assert_allclose(o.grads["log_probs"], lp.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_out_of_memory_splits_the_batch_and_refuses_what_does_not_fit_alone(engine, monkeypatch):
    import service.engine.worker as worker

    real = worker.run_group
    calls = []

    def tight_memory(jobs, device):
        calls.append(len(jobs))
        if len(jobs) > 2 or any(j.arrays["input"].shape[0] == 9 for j in jobs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(jobs, device)

    async def go():
        jobs = [job(n=2, seed=1), job(n=2, seed=2), job(n=9, seed=3), job(n=2, seed=4)]
        gate, tasks = await held(engine, *jobs)
        monkeypatch.setattr(worker, "run_group", tight_memory)
        GATE.set()
        await gate
        return await asyncio.gather(*tasks, return_exceptions=True)

    a, b, big, d = asyncio.run(go())
    assert calls == [4, 2, 2, 1, 1]  # all four; the first half fits; the second half is split again
    assert a[0].batch_size == b[0].batch_size == 2 and d[0].batch_size == 1
    assert isinstance(big, TooLarge) and big.status == 413
    assert big.detail == "the request does not fit in the memory of cpu, even alone"


def test_large_requests_run_alone():
    from service.engine.compute import group_key

    small, large = job(n=4), job(n=4000)
    assert group_key(small, solo_elements=1000) is not None
    assert group_key(large, solo_elements=1000) is None


@pytest.mark.parametrize(("n", "waits"), [(4, True), (4000, False)])
def test_only_jobs_that_can_have_company_wait_for_it(n, waits):
    """While requests are still being decoded (``arriving``), the worker holds a batchable job
    back for company, up to the queue delay; a job too large to batch runs at once."""
    e = Engine(EngineSettings(max_queue_delay_ms=60_000, solo_elements=1000), torch.device("cpu"))
    e.start()
    try:

        async def go():
            e.arriving = 1  # another request is on its way
            task = asyncio.ensure_future(e.submit(job(n=n), far()))
            done, _ = await asyncio.wait([task], timeout=2)
            e.arriving = 0
            with e._cond:
                e._cond.notify_all()  # a waiting worker looks again and stops waiting
            outcome, _ = await task
            return bool(done), outcome.batch_size

        assert asyncio.run(go()) == (not waits, 1)
    finally:
        e.stop(timeout=10)
