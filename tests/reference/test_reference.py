"""Every reference case through the real HTTP stack: value, elementwise and gradients, for every
reduction, in float32 and float64, against PyTorch (or the reference formula)."""

from __future__ import annotations

import pytest
import torch

from service.losses import default_registry

from ..conftest import make_client
from .case import reductions_of, whole
from .tables import CASES

REGISTRY = default_registry()

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TOL = {"float32": dict(rtol=2e-5, atol=1e-6), "float64": dict(rtol=1e-9, atol=1e-9)}


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


def as_json(t: torch.Tensor, nested: bool) -> object:
    if nested:
        return t.tolist()
    dtype = str(t.dtype).removeprefix("torch.")
    return {"shape": list(t.shape), "dtype": dtype, "data": t.reshape(-1).tolist()}


def from_json(out: dict) -> torch.Tensor:
    return torch.tensor(out["data"], dtype=getattr(torch, out["dtype"])).reshape(out["shape"])


def reference(case, tensors, reduction):
    leaves = {r: tensors[r].detach().clone().requires_grad_(True) for r in case.grad_roles}
    inputs = {**tensors, **leaves}
    out = case.reference(inputs, case.params, reduction)
    total = out.sum() if reduction == "none" else out
    grads = torch.autograd.grad(total, list(leaves.values())) if leaves else ()  # zero_one: no gradient
    return out.detach(), dict(zip(leaves, grads, strict=True))


def params_for(case):
    return [(case, r, d) for r in reductions_of(case) for d in DTYPES]


@pytest.mark.parametrize(
    "case,reduction,dtype",
    [p for c in CASES for p in params_for(c)],
    ids=lambda v: v.id if hasattr(v, "id") else str(v),
)
def test_http_matches_reference(client, case, reduction, dtype):
    g = torch.Generator().manual_seed(1)
    tensors = case.make(g, DTYPES[dtype])
    body = {
        "loss": {"name": case.loss, "params": case.params, "reduction": reduction},
        "inputs": {k: as_json(v, k in case.nested) for k, v in tensors.items()},
        "return_elementwise": not whole(case),  # a whole-request loss has none
        "return_grad": list(case.grad_roles),
    }
    r = client.post("/v1/evaluate", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    want, want_grads = reference(case, tensors, reduction)
    # nested float arrays are typed by the role (float32): compare in the dtype the service used
    used = got["meta"]["dtype"]
    tol = TOL[used]
    if reduction == "none":
        assert got["value"] is None
        torch.testing.assert_close(from_json(got["elementwise"]), want.to(getattr(torch, used)), **tol)
    else:
        torch.testing.assert_close(torch.tensor(got["value"], dtype=torch.float64), want.double(), **tol)
        if not whole(case):
            assert got["elementwise"]["dtype"] == used
        else:  # a whole-request loss: none asked, none given
            assert got["elementwise"] is None
    assert set(got["grad"] or {}) == set(case.grad_roles)  # null when none was asked (zero_one)
    for role, g_want in want_grads.items():
        g_got = from_json(got["grad"][role])
        assert list(g_got.shape) == list(tensors[role].shape)
        torch.testing.assert_close(g_got, g_want.to(g_got.dtype), **tol)
