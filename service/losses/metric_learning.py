"""Metric-learning losses: the margin softmax losses arcface and cosface (embeddings against class
centres), and MONAI's contrastive loss (NT-Xent over two views of a batch)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params
from .checks import class_indices
from .contract import INTEGER, role

NORM_EPS = 1e-12  # F.normalize's: a zero row stays zero (cosine 0 with every centre)
COSINE_EPS = 1e-8  # F.cosine_similarity's, as MONAI's ContrastiveLoss calls it


class ArcFaceParams(Params):
    s: float = Field(64.0, gt=0, allow_inf_nan=False, description="the scale of the logits s cos(...)")
    m: float = Field(
        0.5, ge=0, le=math.pi, allow_inf_nan=False, description="the additive angular margin in radians, in [0, pi]"
    )


class CosFaceParams(Params):
    s: float = Field(64.0, gt=0, allow_inf_nan=False, description="the scale of the logits s (cos theta - ...)")
    m: float = Field(0.35, ge=0, allow_inf_nan=False, description="the additive cosine margin")


class ContrastiveParams(Params):
    temperature: float = Field(
        0.5, gt=0, allow_inf_nan=False, description="divides the cosine similarities; 0.5 suggested"
    )


# -- cosines --------------------------------------------------------------------------------------


def _unit_rows(x: Tensor, eps: float) -> Tensor:
    """Each row divided by max(its L2 norm, eps), as F.normalize, after rows of entries of 1 or
    more in magnitude are divided by the power of two that brings their largest under 1: their
    squares no longer overflow (a float32 row beyond about 1e19 would get the norm inf, and the
    direction 0), and as the division by a power of two is exact, every other row's result is
    F.normalize's to the bit."""
    _, exponent = torch.frexp(x.detach().abs().amax(dim=1, keepdim=True))
    # (not torch.ldexp: its gradient takes 2 ** -e in integers, 0)
    return F.normalize(x / torch.exp2(exponent.clamp_min(0).to(x.dtype)), dim=1, eps=eps)


def _in_float32(forward: Callable[[Inputs, Any], Tensor]) -> Callable[[Inputs, Any], Tensor]:
    """``forward`` computed in float32 for float16/bfloat16 requests, its values rounded to the dtype
    once (the gradients too, by autograd through the casts). Both losses scale cosines before a
    softmax: computed in the dtype, the cosines' rounding (2^-11 in float16, 2^-8 in bfloat16) is
    multiplied by s (64) or 1 / temperature in the logits, and the answer is off by far more than the
    dtype's own rounding of it (mixed precision keeps softmax and norms in float32 for this reason;
    MONAI's ContrastiveLoss itself returns float32 for half-precision views)."""

    def run(t: Inputs, p: Any) -> Tensor:
        dtype = t["input"].dtype
        if dtype not in (torch.float16, torch.bfloat16):
            return forward(t, p)
        up = {k: v.float() if v.is_floating_point() else v for k, v in t.items()}
        return forward(up, p).to(dtype)

    return run


# -- margin softmax -------------------------------------------------------------------------------


def _cosines(t: Inputs) -> Tensor:
    """cos theta (N, C) between the L2-normalised embeddings and class centres."""
    return _unit_rows(t["input"], NORM_EPS) @ _unit_rows(t["weight"], NORM_EPS).T


def _margin_softmax(t: Inputs, s: float, margin) -> Tensor:
    """Cross entropy of s * cos theta, the target class's cosine replaced by ``margin(cos)``."""
    cos, target = _cosines(t), t["target"].unsqueeze(1)
    logits = cos.scatter(1, target, margin(cos.gather(1, target))) * s
    return F.cross_entropy(logits, t["target"], reduction="none")


def _arcface(t: Inputs, p: ArcFaceParams) -> Tensor:
    cos_m, sin_m = math.cos(p.m), math.sin(p.m)
    threshold = math.cos(math.pi - p.m)

    def margin(cos: Tensor) -> Tensor:
        # sin theta = sqrt(1 - cos^2) (theta in [0, pi]); kept off 0 by the dtype's smallest normal
        # number, so that at cos = +-1 (parallel vectors) the gradient is large, not infinite or NaN:
        # the value moves by at most sqrt(tiny) sin m there (float16: 0.004, within its rounding of
        # cos near 1; float32: 5e-20)
        sin = (1 - cos * cos).clamp_min(torch.finfo(cos.dtype).tiny).sqrt()
        return torch.where(cos > threshold, cos * cos_m - sin * sin_m, cos - p.m * sin_m)

    return _margin_softmax(t, p.s, margin)


def _cosface(t: Inputs, p: CosFaceParams) -> Tensor:
    return _margin_softmax(t, p.s, lambda cos: cos - p.m)


def _check_classes(c: Checked) -> list[ErrorItem]:
    return class_indices(c.arrays["target"], c.binding.size("C"), "target")


MARGIN_ROLES = (
    role("input", "(N, D)", description="embeddings (L2-normalised by the loss)"),
    role(
        "weight",
        "(C, D)",
        batch_dim=None,
        description="class centres, one row per class (L2-normalised by the loss); shared by the whole batch",
    ),
    role("target", "(N)", kind=INTEGER, differentiable=False, description="class indices in [0, C)"),
)


# -- contrastive ----------------------------------------------------------------------------------


def _contrastive(t: Inputs, p: ContrastiveParams) -> Tensor:
    """Per row of the 2N views, -log(exp(s_pos / T) / sum_{k != i} exp(s_ik / T)) (as a logsumexp:
    no overflow for small temperatures); the loss is their mean."""
    views = torch.cat([t["input"], t["target"]])
    unit = _unit_rows(views, COSINE_EPS)
    logits = (unit @ unit.T) / p.temperature
    n = t["input"].shape[0]
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    partner = torch.arange(2 * n, device=logits.device).roll(n).unsqueeze(1)  # i + N, then i - N
    positives = logits.gather(1, partner).squeeze(1)
    return torch.logsumexp(logits.masked_fill(self_pairs, -math.inf), dim=1) - positives


def _mean(el: Tensor, t: Inputs, p: Params, reduction: str) -> Tensor:
    return el.mean()


LOSSES = [
    Loss(
        name="arcface",
        summary=(
            "ArcFace: cross entropy of s cos theta_j, the target class's logit s cos(theta_t + m) where "
            "cos theta_t > cos(pi - m), else s (cos theta_t - m sin m); theta the angle between the "
            "L2-normalised embedding and class centre (Deng et al. 2019)."
        ),
        category="metric learning",
        reference="Deng et al. 2019, ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
        roles=MARGIN_ROLES,
        forward=_in_float32(_arcface),
        elementwise_shape="(N)",
        params=ArcFaceParams,
        aliases=("ArcFaceLoss", "arcface_loss", "additive_angular_margin"),
        validate=(_check_classes,),
    ),
    Loss(
        name="cosface",
        summary=(
            "CosFace: cross entropy of s cos theta_j, the target class's logit s (cos theta_t - m); theta the "
            "angle between the L2-normalised embedding and class centre (Wang et al. 2018, large margin "
            "cosine loss)."
        ),
        category="metric learning",
        reference="Wang et al. 2018, CosFace: Large Margin Cosine Loss for Deep Face Recognition",
        roles=MARGIN_ROLES,
        forward=_in_float32(_cosface),
        elementwise_shape="(N)",
        params=CosFaceParams,
        aliases=("CosFaceLoss", "cosface_loss", "large_margin_cosine", "LMCL"),
        validate=(_check_classes,),
    ),
    Loss(
        name="contrastive",
        summary=(
            "Contrastive (NT-Xent) loss over the 2N views of two batches: the mean over views of "
            "-log(exp(cos(z_i, z_j) / T) / sum_{k != i} exp(cos(z_i, z_k) / T)), z_j the other view of the "
            "same sample (MONAI ContrastiveLoss, Chen et al. 2020)."
        ),
        category="metric learning",
        reference="MONAI ContrastiveLoss",
        roles=(
            role("input", "(N, D)", description="embeddings of the first view"),
            role("target", "(N, D)", description="embeddings of the second view, row i the same sample as input's"),
        ),
        forward=_in_float32(_contrastive),
        elementwise_shape="(2N) one term per view, not returned: the value reduces the whole request",
        params=ContrastiveParams,
        reduce=_mean,
        reductions=("mean",),
        aliases=("ContrastiveLoss", "contrastive_loss", "nt_xent", "NTXentLoss"),
        decomposable=False,
    ),
]
