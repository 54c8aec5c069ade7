"""Several losses and composites against a real server: each loss of a several-loss request joins the
batches of that loss with single-loss requests, composites batch with like composites, and every
answer equals the one it gets alone."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from .servers import start

pytestmark = pytest.mark.e2e


def _bodies(count: int) -> list[dict]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(count):
        x = {"data": rng.standard_normal((2, 3)).tolist(), "dtype": "float32"}
        y = {"data": rng.standard_normal((2, 3)).tolist(), "dtype": "float32"}
        if i % 4 == 0:
            body = {
                "losses": {"sq": "mse", "abs": {"name": "l1", "reduction": "sum"}},
                "inputs": {"input": x, "target": y},
            }
        elif i % 4 == 1:
            terms = [{"loss": "mse", "weight": 0.5}, {"loss": "huber", "weight": 2.0}]
            body = {"loss": {"terms": terms}, "inputs": {"input": x, "target": y}}
        else:
            body = {
                "loss": "mse" if i % 4 == 2 else {"name": "l1", "reduction": "sum"},
                "inputs": {"input": x, "target": y},
            }
        out.append({**body, "return_grad": True})
    return out


async def _post_all(url: str, bodies: list[dict]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/evaluate", json=b) for b in bodies))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:3]
    return [a.json() for a in answers]


def _without_meta(answer: dict) -> dict:
    answer = dict(answer)
    answer.pop("meta")
    return answer


def test_several_losses_share_batches_and_answer_as_alone(tmp_path):
    server = start(tmp_path, engine__max_queue_delay_ms=50)
    try:
        bodies = _bodies(48)
        alone = [asyncio.run(_post_all(server.url, [b]))[0] for b in bodies]
        together = asyncio.run(_post_all(server.url, bodies))
    finally:
        assert server.stop() == 0
    assert [_without_meta(a) for a in together] == [_without_meta(a) for a in alone]  # bitwise, float32
    assert all(a["meta"]["batch_size"] == 1 for a in alone)
    several = [a for a in together if "results" in a]
    assert any(a["meta"]["batch_size"] > 1 for a in several), [a["meta"] for a in several]
    composites = [a for a in together if a.get("loss") == "composite"]
    assert any(a["meta"]["batch_size"] > 1 for a in composites), [a["meta"] for a in composites]
