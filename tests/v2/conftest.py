"""Helpers for the Open Inference Protocol tests: a real server per module, v1's answer to a
reference case, and the case's tensors as the protocol sends them."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch

from tests.e2e.servers import Server, start
from tests.reference.case import Case, reductions_of, whole
from tests.reference.tables import CASES


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A real server with the default settings, one per module (a module may define its own)."""
    srv: Server = start(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


def one_case_per_loss() -> dict[str, Case]:
    """The first reference case of each loss."""
    cases: dict[str, Case] = {}
    for case in CASES:
        cases.setdefault(case.loss, case)
    return cases


def tensors_of(case: Case) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(1)
    return {role: t.numpy() for role, t in case.make(g, torch.float32).items()}


def reduction_of(case: Case) -> str:
    reductions = reductions_of(case)
    return "mean" if "mean" in reductions else reductions[0]


def v1_answer(url: str, case: Case, tensors: dict[str, np.ndarray], reduction: str) -> dict:
    """What POST /v1/evaluate answers for the case's tensors, with its elementwise values (where
    its loss has them) and its gradients."""
    body = {
        "loss": {"name": case.loss, "params": case.params, "reduction": reduction},
        "inputs": {
            role: {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}
            for role, a in tensors.items()
        },
        "return_elementwise": not whole(case),
        "return_grad": list(case.grad_roles),
    }
    r = httpx.post(f"{url}/v1/evaluate", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


def v1_array(tensor: dict) -> np.ndarray:
    """A v1 JSON tensor as numpy (non-finite values come as strings, which numpy reads)."""
    return np.array(tensor["data"], dtype=np.dtype(tensor["dtype"])).reshape(tensor["shape"])


def v2_params(params: dict) -> dict:
    """A loss's params as the protocol's parameters: a list as a JSON string."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()}
