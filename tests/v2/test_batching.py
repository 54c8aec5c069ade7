"""v1 and v2 requests of the same loss share compute calls: both build the same jobs through the
core, so the engine groups them. Shown under concurrency against a real server: while the worker
is busy with a long request, a v1 and a v2 request queue, and the next compute call serves both
(v1's meta.batch_size and v2's parameters.batch_size are 2)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
LABELS = [0, 2]
ATTEMPTS = 5  # each needs the two small requests queued before the long one ends (about a second)


def _long(url: str) -> dict:
    """lovasz_softmax with its gradient on 4x20x256x256 logits: runs alone, for about a second."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 20, 256, 256), dtype=np.float32)
    t = rng.integers(0, 20, (4, 256, 256))
    head = json.dumps({
        "inputs": [_binary("input", x, "FP32"), _binary("target", t, "INT64")],
        "outputs": [{"name": "value"}, {"name": "grad_input", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    r = httpx.post(f"{url}/v2/models/lovasz_softmax/infer", content=head + x.tobytes() + t.tobytes(),
                   headers={"Inference-Header-Content-Length": str(len(head))}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    return json.loads(r.content[: int(r.headers["inference-header-content-length"])])


def _binary(name: str, arr: np.ndarray, datatype: str) -> dict:
    size = {"binary_data_size": arr.nbytes}
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "parameters": size}


def _v1(url: str) -> int:
    body = {"loss": "cross_entropy", "inputs": {"input": LOGITS, "target": LABELS}}
    r = httpx.post(f"{url}/v1/evaluate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["meta"]["batch_size"]


def _v2(url: str) -> int:
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": LOGITS},
                       {"name": "target", "shape": [2], "datatype": "INT64", "data": LABELS}]}  # fmt: skip
    r = httpx.post(f"{url}/v2/models/CrossEntropyLoss/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["parameters"]["batch_size"]


def test_v1_and_v2_requests_share_a_compute_call(server):
    sizes = []
    with ThreadPoolExecutor(3) as pool:
        for _ in range(ATTEMPTS):
            long = pool.submit(_long, server.url)
            time.sleep(0.3)  # its body sent and decoded: the worker is computing it
            v1, v2 = pool.submit(_v1, server.url), pool.submit(_v2, server.url)
            sizes.append((v1.result(), v2.result()))
            long.result()
            if sizes[-1] == (2, 2):
                break
    assert sizes[-1] == (2, 2), sizes
