"""Reference cases: arcface and cosface (the papers' formulas written out plainly, with
``F.normalize`` and ``F.cross_entropy``) and contrastive against MONAI's own ``ContrastiveLoss``.

- ArcFace (Deng et al. 2019): theta = arccos of the cosine between the L2-normalised embedding and
  class centre; the target class's logit is s cos(theta + m) where theta + m < pi (cos theta >
  cos(pi - m)), else s (cos theta - m sin m); the others s cos theta.
- CosFace (Wang et al. 2018): the target class's logit s (cos theta - m).

MONAI detail the contrastive reference works around: ``ContrastiveLoss`` divides by
``torch.as_tensor(self.temperature)``, a float32 tensor for a Python float, so a temperature that
float32 does not hold exactly (0.1) would cost float64 inputs about 1e-8 relative; the temperature is
given to it as a tensor of the input's dtype (``torch.as_tensor`` keeps it)."""

import math

import torch
import torch.nn.functional as F
from monai.losses import ContrastiveLoss

from .case import Case


def _reduce(el, reduction):
    if reduction == "none":
        return el
    return el.sum() if reduction == "sum" else el.mean()


def _embeddings(n, d, classes, opposite=0):
    """Embeddings (N, D), class centres (C, D), targets (N); the first ``opposite`` embeddings point
    nearly away from their class centre (cos theta near -1: arcface's other branch)."""

    def make(g, dtype):
        x = torch.randn(n, d, generator=g, dtype=dtype)
        w = torch.randn(classes, d, generator=g, dtype=dtype)
        target = torch.randint(0, classes, (n,), generator=g)
        if opposite:
            noise = 0.2 * torch.randn(opposite, d, generator=g, dtype=dtype)
            x[:opposite] = -w[target[:opposite]] + noise
        return {"input": x, "weight": w, "target": target}

    return make


def _cosines(t):
    return F.normalize(t["input"], dim=1) @ F.normalize(t["weight"], dim=1).T


def _scaled_cross_entropy(cos, target_logit, t, s, reduction):
    one_hot = F.one_hot(t["target"], cos.shape[1]).to(torch.bool)
    logits = s * torch.where(one_hot, target_logit, cos)
    return F.cross_entropy(logits, t["target"], reduction=reduction)


def arcface_reference(t, p, reduction):
    s, m = p.get("s", 64.0), p.get("m", 0.5)
    cos = _cosines(t)
    theta = torch.acos(cos)
    target_logit = torch.where(cos > math.cos(math.pi - m), torch.cos(theta + m), cos - m * math.sin(m))
    return _scaled_cross_entropy(cos, target_logit, t, s, reduction)


def cosface_reference(t, p, reduction):
    s, m = p.get("s", 64.0), p.get("m", 0.35)
    cos = _cosines(t)
    return _scaled_cross_entropy(cos, cos - m, t, s, reduction)


def _views(n, d, related=True):
    """Two views (N, D) of a batch: the second a noisy copy of the first, or independent."""

    def make(g, dtype):
        x = torch.randn(n, d, generator=g, dtype=dtype)
        noise = torch.randn(n, d, generator=g, dtype=dtype)
        return {"input": x, "target": x + 0.5 * noise if related else noise}

    return make


def monai_contrastive(t, p, reduction):
    assert reduction == "mean"
    x = t["input"]
    loss = ContrastiveLoss()
    loss.temperature = torch.tensor(p.get("temperature", 0.5), dtype=x.dtype)
    return loss(x, t["target"])


MARGIN_GRADS = ("input", "weight")


def _arcface(id, params, make, **kw):
    return Case(id, "arcface", params, make, arcface_reference, grad_roles=MARGIN_GRADS, **kw)


def _cosface(id, params, make, **kw):
    return Case(id, "cosface", params, make, cosface_reference, grad_roles=MARGIN_GRADS, **kw)


def _contrastive(id, params, make, **kw):
    return Case(
        id, "contrastive", params, make, monai_contrastive, reductions=("mean",), grad_roles=("input", "target"), **kw
    )


CASES = [
    _arcface("arcface-default", {}, _embeddings(6, 8, 5)),
    # cos(pi - 0.5) = -0.88: the rows pointing away from their centre take s (cos theta - m sin m)
    _arcface("arcface-opposite", {}, _embeddings(6, 5, 4, opposite=3)),
    # cos(pi - 1.2) = -0.36: random 3-d embeddings fall on both sides of it
    _arcface("arcface-wide-margin", {"s": 16.0, "m": 1.2}, _embeddings(10, 3, 4)),
    _arcface("arcface-m0", {"s": 8.0, "m": 0.0}, _embeddings(5, 4, 3), nested=("target",)),
    _cosface("cosface-default", {}, _embeddings(6, 8, 5)),
    _cosface("cosface-s30-m02", {"s": 30.0, "m": 0.2}, _embeddings(7, 4, 6)),
    _cosface("cosface-m0", {"s": 4.0, "m": 0.0}, _embeddings(5, 3, 2), nested=("input", "weight", "target")),
    _contrastive("contrastive-default", {}, _views(4, 6)),
    _contrastive("contrastive-unrelated", {}, _views(5, 3, related=False)),
    _contrastive("contrastive-temperature-0.1", {"temperature": 0.1}, _views(6, 8)),
    _contrastive("contrastive-temperature-2", {"temperature": 2.0}, _views(3, 4), nested=("input", "target")),
    _contrastive("contrastive-one-pair", {}, _views(1, 5)),
]
