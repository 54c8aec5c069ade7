"""Many concurrent mixed requests through the HTTP stack give the answers they get alone."""

from __future__ import annotations

import asyncio
import random

import numpy as np

from ..conftest import alone_then_together


def bodies(count: int = 120) -> list[dict]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        n = rng.randint(1, 4)
        kind = rng.choice(["mse", "l1", "huber", "cross_entropy", "cross_entropy_w"])
        reduction = rng.choice(["mean", "sum", "none"])
        if kind.startswith("cross_entropy"):
            x = [[rng.gauss(0, 1) for _ in range(5)] for _ in range(n)]
            t = [rng.choice([0, 1, 2, 3, 4, -100]) for _ in range(n)]
            params = {"weight": [1.0, 2.0, 0.5, 1.5, 3.0], "ignore_index": -100} if kind.endswith("_w") else {}
            loss = {"name": "cross_entropy", "params": params, "reduction": reduction}
            inputs = {"input": {"data": x, "dtype": "float64"}, "target": t}
        else:
            x = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(n)]
            y = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(n)]
            loss = {"name": kind, "reduction": reduction}
            inputs = {"input": {"data": x, "dtype": "float64"}, "target": {"data": y, "dtype": "float64"}}
        out.append({"loss": loss, "inputs": inputs, "return_grad": rng.random() < 0.5, "return_elementwise": True})
    return out


def close(a, b) -> None:
    if isinstance(a, dict) and "data" in a:
        assert a["shape"] == b["shape"] and a["dtype"] == b["dtype"]
        np.testing.assert_allclose(
            np.array(b["data"], dtype=float), np.array(a["data"], dtype=float), rtol=1e-12, atol=1e-12
        )
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            close(a[k], b[k])
    elif isinstance(a, float):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    else:
        assert a == b


def test_batched_answers_equal_solo_answers():
    requests = bodies()
    answers = asyncio.run(alone_then_together(requests, max_queue_delay_ms=2.0))
    alone, together = ([r.json() for r in rs] for rs in answers)
    assert all(r["meta"]["batch_size"] == 1 for r in alone)
    assert max(r["meta"]["batch_size"] for r in together) > 1, "nothing was batched"
    for a, b in zip(alone, together, strict=True):
        assert "value" in b, b
        close({k: v for k, v in a.items() if k != "meta"}, {k: v for k, v in b.items() if k != "meta"})
