"""The CUDA path: same answers as the CPU, half precision as PyTorch computes it, batching, and
values that would trip a device-side assert refused before they reach the GPU.
Skipped where CUDA is absent (conftest)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch

from service.app import create_app
from service.config import Settings

from ..reference.case import whole
from ..reference.tables import CASES
from ..reference.test_reference import as_json, from_json

pytestmark = pytest.mark.gpu


def post_all(bodies: list[dict], **engine) -> list[dict]:
    async def go():
        app = create_app(Settings(engine={"device": "cuda", **engine}))
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gpu") as c:
            return [r.json() for r in await asyncio.gather(*(c.post("/v1/evaluate", json=b) for b in bodies))]

    return asyncio.run(go())


def body(case, reduction, dtype):
    tensors = case.make(torch.Generator().manual_seed(3), dtype)
    inputs = {k: as_json(v, False) for k, v in tensors.items()}
    return tensors, {
        "loss": {"name": case.loss, "params": case.params, "reduction": reduction},
        "inputs": inputs,
        "return_elementwise": not whole(case),  # a whole-request loss has none
        "return_grad": list(case.grad_roles),
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cuda_matches_the_reference_in_float64(case):
    tensors, request = body(case, "mean", torch.float64)
    (got,) = post_all([request])
    assert got["meta"]["device"].startswith("cuda"), got
    want = case.reference(tensors, case.params, "mean")
    torch.testing.assert_close(torch.tensor(got["value"], dtype=torch.float64), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_as_pytorch_computes_it_on_cuda(dtype):
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    name = str(dtype).removeprefix("torch.")
    request = {
        "loss": "cross_entropy",
        "inputs": {"input": {"data": x.float().tolist(), "dtype": name}, "target": t.tolist()},
        "return_grad": True,
    }
    (got,) = post_all([request])
    xc = x.cuda().requires_grad_(True)
    want = torch.nn.functional.cross_entropy(xc, t.cuda())
    want.backward()
    assert got["value"] == pytest.approx(want.item(), rel=1e-3)
    torch.testing.assert_close(from_json(got["grad"]["input"]), xc.grad.cpu(), rtol=1e-2, atol=1e-3)


def test_concurrent_small_requests_are_batched_on_cuda():
    bodies = [{"loss": "mse", "inputs": {"input": [[float(i), 1.0]], "target": [[0.0, 1.0]]}} for i in range(64)]
    results = post_all(bodies, max_queue_delay_ms=2.0)
    assert [r["value"] for r in results] == [i * i / 2 for i in range(64)]
    assert max(r["meta"]["batch_size"] for r in results) > 1


def test_out_of_range_class_index_never_reaches_the_gpu():
    request = {"loss": "cross_entropy", "inputs": {"input": [[0.1, 0.2, 0.3]], "target": [3]}}
    results = post_all([request, {"loss": "mse", "inputs": {"input": [[1.0]], "target": [[0.0]]}}])
    assert results[0]["status"] == 422
    assert results[0]["detail"] == "inputs.target: class index 3 out of range [0, 3) at position (0,)"
    assert results[1]["value"] == 1.0  # the device is healthy afterwards
