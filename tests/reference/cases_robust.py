"""Reference cases: kornia's robust losses (charbonnier, cauchy, geman_mcclure, welsch: kornia's own
functions, a test-only dependency), log_cosh and quantile (the issue's formulas, written out).

kornia computes float32 and float64 in the input's dtype (float16 and bfloat16 in float32), so its
answers are compared to float64 precision where the inputs are float64. log_cosh's reference is
log(cosh(d)) evaluated in float64 and rounded to the input's dtype (cosh overflows float32 beyond
|d| ~ 89), so the large-residual case compares the service's stable form against it.
"""

import torch
from kornia.losses import cauchy_loss, charbonnier_loss, geman_mcclure_loss, welsch_loss

from .case import Case

KORNIA = {
    "charbonnier": charbonnier_loss,
    "cauchy": cauchy_loss,
    "geman_mcclure": geman_mcclure_loss,
    "welsch": welsch_loss,
}
BOTH = ("input", "target")


def _reduce(el, reduction):
    if reduction == "none":
        return el
    return el.sum() if reduction == "sum" else el.mean()


def _pair(shape, scale=1.0):
    """input and target of ``shape``, their difference on the order of ``scale``."""

    def make(g, dtype):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
        y = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
        return {"input": x.to(dtype), "target": y.to(dtype)}

    return make


def kornia_reference(name):
    def reference(t, p, reduction):
        return KORNIA[name](t["input"], t["target"], reduction=reduction)

    return reference


def log_cosh_reference(t, p, reduction):
    d = t["input"] - t["target"]
    el = torch.log(torch.cosh(d.double())).to(d.dtype)
    return _reduce(el, reduction)


def quantile_reference(t, p, reduction):
    x, y = t["input"], t["target"]
    q = torch.tensor(p.get("quantiles", [0.5]), dtype=x.dtype)
    residual = y.unsqueeze(-1) - x  # (N, *, Q): the target against each quantile's prediction
    el = torch.where(residual >= 0, q * residual, (q - 1) * residual)
    return _reduce(el, reduction)


def _quantiles(shape):
    """input (N, *, Q) and target (N, *)."""

    def make(g, dtype):
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randn(*shape[:-1], generator=g, dtype=torch.float64)
        return {"input": x.to(dtype), "target": y.to(dtype)}

    return make


def _kornia(name, id, shape, scale=1.0, **kw):
    return Case(f"{name}-{id}", name, {}, _pair(shape, scale), kornia_reference(name), grad_roles=BOTH, **kw)


def _log_cosh(id, shape, scale, **kw):
    return Case(f"log_cosh-{id}", "log_cosh", {}, _pair(shape, scale), log_cosh_reference, grad_roles=BOTH, **kw)


def _quantile(id, params, shape, **kw):
    return Case(f"quantile-{id}", "quantile", params, _quantiles(shape), quantile_reference, grad_roles=BOTH, **kw)


CASES = [
    *(_kornia(name, "small", (4, 5), 0.3) for name in KORNIA),
    *(_kornia(name, "spread", (2, 3, 4, 4), 2.0) for name in KORNIA),
    _kornia("charbonnier", "nested", (7,), 1.5, nested=BOTH),
    _kornia("cauchy", "far", (3, 6), 1e3),  # residuals beyond 2^8: the branch that squares nothing
    _kornia("geman_mcclure", "far", (3, 6), 1e3),
    _kornia("welsch", "far", (3, 6), 10.0),
    _log_cosh("small", (4, 5), 0.3),
    _log_cosh("spread", (2, 3, 4, 4), 2.0),
    _log_cosh("large", (3, 6), 20.0),  # residuals up to ~80: cosh itself would overflow float32
    _log_cosh("nested", (6,), 1.0, nested=BOTH),
    _quantile("median", {}, (6, 1)),
    _quantile("three", {"quantiles": [0.1, 0.5, 0.9]}, (5, 3)),
    _quantile("sequence", {"quantiles": [0.02, 0.25, 0.5, 0.75, 0.98]}, (3, 4, 5)),
    _quantile("spatial", {"quantiles": [0.3, 0.7]}, (2, 3, 2, 2), nested=("target",)),
    _quantile("unsorted", {"quantiles": [0.9, 0.1]}, (4, 2)),
]
