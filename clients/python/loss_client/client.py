"""``Client``: the service's v1 HTTP API over httpx, tensors as numpy arrays sent as .npy files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt

from loss_client.errors import LossServiceError
from loss_client.npy import decode_tensor, to_float, to_npy

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
URL_ENV = "LOSS_SERVICE_URL"
API_KEY_ENV = "LOSS_SERVICE_API_KEY"


@dataclass
class Result:
    """One evaluation. ``value`` is ``None`` for reduction ``"none"`` (then ``elementwise`` holds
    the answer); ``grad`` maps each role asked for to d(value)/d(tensor). ``aggregate`` and
    ``per_sample`` are the v1.1 fields (``None`` where the server gives none); ``raw`` is the whole
    response body as it came, unknown fields included."""

    loss: str
    reduction: str
    value: float | None
    elementwise: np.ndarray | None
    grad: dict[str, np.ndarray]
    meta: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    aggregate: dict[str, Any] | None = None
    per_sample: np.ndarray | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Result:
        """A result from a response body (or one entry of a v1.1 ``results``)."""
        grads = {role: decode_tensor(tensor) for role, tensor in (body.get("grad") or {}).items()}
        return cls(
            loss=body.get("loss", ""),
            reduction=body.get("reduction", ""),
            value=to_float(body.get("value")),
            elementwise=decode_tensor(body.get("elementwise")),
            grad={role: g for role, g in grads.items() if g is not None},
            meta=dict(body.get("meta") or {}),
            raw=dict(body),
            aggregate=body.get("aggregate"),
            per_sample=decode_tensor(body.get("per_sample")),
        )


def grad_roles(return_grad: bool | str | Sequence[str]) -> bool | list[str]:
    """``True``, ``False``, or a list of roles (a single role name is a list of one)."""
    if isinstance(return_grad, bool):
        return return_grad
    return [return_grad] if isinstance(return_grad, str) else list(return_grad)


class Client:
    """A client of one loss-service.

    ``url`` defaults to ``$LOSS_SERVICE_URL`` (else ``http://127.0.0.1:8000``), ``api_key`` to
    ``$LOSS_SERVICE_API_KEY`` (sent as ``Authorization: Bearer KEY``). Error answers raise
    :class:`LossServiceError`; network failures raise httpx's ``httpx.TransportError``.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def losses(self) -> list[dict[str, Any]]:
        """The catalog: one ``LossInfo`` per loss (name, aliases, summary, category, roles, params...)."""
        return list(self._get("/v1/losses")["losses"])

    def loss(self, name: str) -> dict[str, Any]:
        """One catalog entry, by name or alias."""
        return self._get(f"/v1/losses/{quote(name, safe='')}")

    def evaluate(
        self,
        loss: str | Mapping[str, Any],
        inputs: Mapping[str, npt.ArrayLike],
        params: Mapping[str, Any] | None = None,
        reduction: str = "mean",
        return_grad: bool | str | Sequence[str] = False,
        return_elementwise: bool = False,
        return_per_sample: bool = False,
    ) -> Result:
        """Evaluate ``loss`` (a name, or a full loss spec) on ``inputs`` (role -> array).

        Arrays travel as .npy files, in their own dtype: float64 in, float64 out. ``return_grad``
        is ``True`` (every differentiable role) or a list of roles. ``return_per_sample`` (v1.1)
        is sent only when true, so servers without it are not asked for it.
        """
        request: dict[str, Any] = {
            "loss": self._loss_spec(loss, params, reduction),
            "return_grad": grad_roles(return_grad),
            "return_elementwise": return_elementwise,
            "response_encoding": "npy",
        }
        if return_per_sample:
            request["return_per_sample"] = True
        files = [(role, (f"{role}.npy", to_npy(array), "application/octet-stream")) for role, array in inputs.items()]
        response = self._http.post("/v1/evaluate", data={"request": json.dumps(request)}, files=files)
        return Result.from_json(self._body(response))

    @staticmethod
    def _loss_spec(loss: str | Mapping[str, Any], params: Mapping[str, Any] | None, reduction: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": loss} if isinstance(loss, str) else dict(loss)
        if params:
            spec["params"] = {**spec.get("params", {}), **params}
        spec.setdefault("reduction", reduction)
        return spec

    def _get(self, path: str) -> Any:
        return self._body(self._http.get(path))

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        if not response.is_success:
            raise LossServiceError.from_response(response)
        return response.json()
