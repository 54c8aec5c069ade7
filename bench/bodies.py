"""The scenarios' tensors and request bodies, for the service, the naive service and the floors.

Tensors are seeded, so every run sends the same bytes. Nested JSON is written the way a float32
client writes it (shortest round-trip float32 text, as orjson does for a float32 array).
"""

from __future__ import annotations

import base64
import io
import uuid
from dataclasses import dataclass

import numpy as np
import orjson
from load import Body

JSON = "application/json"


@dataclass
class Tensors:
    loss: str | dict  # the request's "loss" field
    input: np.ndarray
    target: np.ndarray
    indices: np.ndarray  # class indices (N, *): the target the naive service takes
    stand_in: str = ""  # set when the intended loss was not in the catalog and mse stood in

    @property
    def nbytes(self) -> int:
        return self.input.nbytes + self.target.nbytes


def make(shape: tuple[int, ...], loss: str | dict, available: set[str], seed: int = 0) -> Tensors:
    """Logits of ``shape`` (N, C, *) and class indices (N, *); mse on two floats if ``loss`` is missing."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    t = rng.integers(0, shape[1], (shape[0], *shape[2:]), dtype=np.int64)
    name = loss if isinstance(loss, str) else loss["name"]
    if name in available:
        return Tensors(loss, x, t, t)
    y = rng.standard_normal(shape, dtype=np.float32)
    return Tensors("mse", x, y, t, stand_in=f"mse stands in for {name}")


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _request(t: Tensors, grad: bool, npy_out: bool) -> dict:
    several = isinstance(t.loss, dict) and "losses" in t.loss  # {"losses": {label: spec}}: several losses
    req: dict = {"losses": t.loss["losses"]} if several else {"loss": t.loss}  # type: ignore[index]
    if grad:
        req["return_grad"] = ["input"]
        if npy_out:
            req["response_encoding"] = "npy"
    return req


def nested_json(t: Tensors, grad: bool) -> Body:
    req = {**_request(t, grad, False), "inputs": {"input": t.input, "target": t.target}}
    return Body(orjson.dumps(req, option=orjson.OPT_SERIALIZE_NUMPY), JSON)


def base64_json(t: Tensors, grad: bool) -> Body:
    b64 = lambda a: {"npy": base64.b64encode(npy(a)).decode()}  # noqa: E731
    req = {**_request(t, grad, True), "inputs": {"input": b64(t.input), "target": b64(t.target)}}
    return Body(orjson.dumps(req), JSON)


def multipart(t: Tensors, grad: bool) -> Body:
    boundary = uuid.uuid4().hex
    parts = [(b'name="request"', JSON, orjson.dumps(_request(t, grad, True)))]
    for role in ("input", "target"):
        parts.append(
            (f'name="{role}"; filename="{role}.npy"'.encode(), "application/octet-stream", npy(getattr(t, role)))
        )
    out = bytearray()
    for disposition, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"Content-Disposition: form-data; " + disposition + b"\r\n"
        out += f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return Body(bytes(out), f"multipart/form-data; boundary={boundary}")


def naive(t: Tensors, grad: bool) -> Body | None:
    """The naive service's cross_entropy body for (N, C) logits; None for what it cannot serve."""
    if t.input.ndim != 2:
        return None
    req = {"predictions": t.input, "targets": t.indices}
    return Body(orjson.dumps(req, option=orjson.OPT_SERIALIZE_NUMPY), JSON, "/loss_grad" if grad else "/loss")


# --- the Open Inference Protocol (v2) ---------------------------------------------------------------
V2_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def _v2_path(t: Tensors) -> str:
    name = t.loss if isinstance(t.loss, str) else t.loss["name"]
    return f"/v2/models/{name}/infer"


def v2_json(t: Tensors) -> Body:
    """The value, tensors as the protocol's flat JSON data (what tritonclient sends with binary_data=False)."""
    inputs = [{"name": role, "shape": list(a.shape), "datatype": V2_TYPES[a.dtype], "data": a.reshape(-1)}
              for role, a in (("input", t.input), ("target", t.target))]  # fmt: skip
    return Body(orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY), JSON, _v2_path(t))


def v2_binary(t: Tensors, grad: bool) -> Body:
    """The binary tensor data extension: the JSON, then each tensor's raw bytes; the gradient comes
    back binary too."""
    arrays = (("input", t.input), ("target", t.target))
    inputs = [{"name": role, "shape": list(a.shape), "datatype": V2_TYPES[a.dtype],
               "parameters": {"binary_data_size": a.nbytes}} for role, a in arrays]  # fmt: skip
    outputs = [{"name": "value"}] + ([{"name": "grad_input", "parameters": {"binary_data": True}}] if grad else [])
    head = orjson.dumps({"inputs": inputs, "outputs": outputs})
    content = head + b"".join(a.tobytes() for _, a in arrays)
    headers = (("Inference-Header-Content-Length", str(len(head))),)
    return Body(content, "application/octet-stream", _v2_path(t), headers)
