"""In-process floors: the least work that serving a request implies, done with numpy and torch.

- .npy (multipart): load the .npy bytes, compute; with the gradient also backward and write it as .npy.
- base64 .npy in JSON: parse the JSON, base64-decode, load, compute; with the gradient also write
  it as base64 .npy.
- nested JSON: parse the JSON, make float32/int64 arrays, compute; with the gradient also write it
  as JSON numbers (orjson).
Timed in this process, one evaluation at a time, with torch on the service's default threads.
"""

from __future__ import annotations

import base64
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson
import torch
import torch.nn.functional as F
from bodies import Tensors, npy
from load import Body


def _loss(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":
        return F.cross_entropy(x, y)
    if name == "focal":  # multi-class softmax focal, gamma 2, as the service defines it
        log_pt = F.log_softmax(x, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
        return (-((-log_pt.expm1()) ** 2) * log_pt).mean()
    return F.mse_loss(x, y)


def _compute(name: str, x: np.ndarray, y: np.ndarray, grad: bool) -> tuple[float, np.ndarray | None]:
    xt = torch.from_numpy(x).requires_grad_(grad)
    value = _loss(name, xt, torch.from_numpy(y))
    if not grad:
        return value.item(), None
    value.backward()
    return value.item(), xt.grad.numpy()


def _load(raw: bytes) -> np.ndarray:
    return np.load(io.BytesIO(raw), allow_pickle=False)


def make(t: Tensors, encoding: str, grad: bool, body: Body) -> Callable[[], object]:
    """One in-process evaluation of what ``body`` asks, from the same bytes where that applies."""
    name = t.loss if isinstance(t.loss, str) else t.loss["name"]
    if encoding == "npy":
        xb, yb = npy(t.input), npy(t.target)

        def run():
            _, g = _compute(name, _load(xb), _load(yb), grad)
            return npy(g) if grad else None
    elif encoding == "base64":

        def run():
            inputs = orjson.loads(body.content)["inputs"]
            x, y = (_load(base64.b64decode(inputs[r]["npy"])) for r in ("input", "target"))
            _, g = _compute(name, x, y, grad)
            return base64.b64encode(npy(g)) if grad else None
    elif encoding == "v2 binary":  # the JSON, then each tensor's raw bytes (used in place); the gradient raw
        buf = bytearray(body.content)  # the body as received: a writable buffer

        def run():
            n = int(dict(body.headers)["Inference-Header-Content-Length"])
            x_in, y_in = orjson.loads(buf[:n])["inputs"]
            x = np.frombuffer(buf, np.float32, x_in["parameters"]["binary_data_size"] // 4, n)
            y = np.frombuffer(buf, t.target.dtype, offset=n + x.nbytes)
            _, g = _compute(name, x.reshape(x_in["shape"]), y.reshape(y_in["shape"]), grad)
            return g.tobytes() if grad else None
    elif encoding == "v2 json":  # the protocol's flat JSON data

        def run():
            x_in, y_in = orjson.loads(body.content)["inputs"]
            x = np.asarray(x_in["data"], dtype=np.float32).reshape(x_in["shape"])
            y = np.asarray(y_in["data"], dtype=t.target.dtype).reshape(y_in["shape"])
            _, g = _compute(name, x, y, grad)
            return orjson.dumps(g, option=orjson.OPT_SERIALIZE_NUMPY) if grad else None
    else:  # nested JSON

        def run():
            inputs = orjson.loads(body.content)["inputs"]
            x = np.asarray(inputs["input"], dtype=np.float32)
            y = np.asarray(inputs["target"], dtype=t.target.dtype)
            _, g = _compute(name, x, y, grad)
            return orjson.dumps(g, option=orjson.OPT_SERIALIZE_NUMPY) if grad else None

    return run


def measure(fn: Callable[[], object], *, max_s: float = 3.0, max_reps: int = 2000, min_reps: int = 3) -> dict:
    """Time ``fn`` after one warm-up call; stops at ``max_reps`` or ``max_s`` (after ``min_reps``)."""
    fn()
    times = []
    stop = time.perf_counter() + max_s
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() < stop):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    mean = statistics.fmean(times)
    return {
        "requests": len(times),
        "req_s": 1000 / mean,
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
    }
