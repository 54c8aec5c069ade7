"""Each case's loss, called in-process: forward + reduction against the reference, and gradcheck.

(The HTTP path is covered by test_reference.py; this isolates the maths.)
"""

import pytest
import torch

from service.losses import default_registry

from .case import reductions_of
from .tables import CASES

REGISTRY = default_registry()
# a named composite (dice_ce) is computed through its terms by the engine: its cases run over HTTP only
IN_PROCESS = [c for c in CASES if REGISTRY.get(c.loss).expand is None]


def _tensors(case, dtype):
    g = torch.Generator().manual_seed(0)
    return case.make(g, dtype)


def service_value(case, tensors, reduction):
    loss = REGISTRY.get(case.loss)
    params = loss.params.model_validate(case.params)
    el = loss.forward(tensors, params)
    return el if reduction == "none" else loss.reduce(el, tensors, params, reduction)


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_matches_reference(case, dtype):
    tensors = _tensors(case, dtype)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for reduction in reductions_of(case):
        got = service_value(case, tensors, reduction)
        want = case.reference(tensors, case.params, reduction)
        torch.testing.assert_close(got, want, **tol, msg=lambda m, reduction=reduction: f"{reduction}: {m}")


@pytest.mark.parametrize("case", [c for c in IN_PROCESS if c.gradcheck], ids=lambda c: c.id)
def test_gradcheck(case):
    tensors = _tensors(case, torch.float64)
    roles = list(case.grad_roles)
    for reduction in reductions_of(case):

        def fn(*leaves, reduction=reduction):  # gradcheck passes the leaves alone
            t = dict(tensors)
            t.update(zip(roles, leaves, strict=True))
            out = service_value(case, t, reduction)
            return out.sum() if reduction == "none" else out

        leaves = [tensors[r].detach().clone().requires_grad_(True) for r in roles]
        assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5, rtol=1e-4), reduction
