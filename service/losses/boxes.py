"""Bounding-box regression losses on boxes ``(x1, y1, x2, y2)``: 1 - IoU and its penalised forms.

Every loss compares each predicted box (the last dimension of ``input``) with the target box at
the same position, so the elementwise values have the shape ``(N, *)`` of the boxes. The IoU is
torchvision's: the intersection counts only where both boxes overlap on both axes, and
IoU = inter / (union + eps).
Boxes with x2 < x1 (or y2 < y1) are taken as they come, as torchvision takes them: such a box
overlaps nothing and its area is negative.

float16 / bfloat16 boxes are computed in float32 and the values rounded to the dtype, as
torchvision's box losses do (areas of boxes a few hundred wide overflow float16).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor

from .base import Inputs, Loss, Params
from .contract import role

Eps = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_EPS = 1e-7  # torchvision's default, and what its complete_box_iou_loss always uses for its IoU
_HALF = (torch.float16, torch.bfloat16)


# --- params --------------------------------------------------------------------------------------


class BoxParams(Params):
    eps: Eps = Field(_EPS, description="added to the union of the IoU and to the penalty's denominator")


class IoUParams(Params):
    eps: Eps = Field(_EPS, description="added to the union: IoU = inter / (union + eps)")


class CIoUParams(Params):
    eps: Eps = Field(
        _EPS,
        description=(
            "added to the denominator of the trade-off weight alpha = v / (1 - IoU + v + eps); as in "
            "torchvision, the IoU and the distance term add 1e-7 whatever eps is"
        ),
    )


class EIoUParams(Params):
    eps: Eps = Field(_EPS, description="added to the union of the IoU and to each penalty's denominator")


class FocalEIoUParams(EIoUParams):
    gamma: float = Field(0.5, ge=0, allow_inf_nan=False, description="exponent of the IoU that weighs the EIoU loss")


class SIoUParams(Params):
    eps: Eps = Field(_EPS, description="added to both boxes' heights and to the union, as YOLOv6 adds it")


class AlphaIoUParams(IoUParams):
    alpha: float = Field(3.0, gt=0, allow_inf_nan=False, description="power of the IoU")


# --- geometry ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pair:
    """The corners of the predicted boxes (x1, y1, x2, y2) and of the targets (gx1, gy1, gx2, gy2),
    each of shape (N, *)."""

    x1: Tensor
    y1: Tensor
    x2: Tensor
    y2: Tensor
    gx1: Tensor
    gy1: Tensor
    gx2: Tensor
    gy2: Tensor

    def widths(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(w, h, w_gt, h_gt)."""
        return self.x2 - self.x1, self.y2 - self.y1, self.gx2 - self.gx1, self.gy2 - self.gy1

    def overlaps(self) -> tuple[Tensor, Tensor]:
        """The intersection's width and height (negative where the boxes are apart on that axis)."""
        ow = torch.minimum(self.x2, self.gx2) - torch.maximum(self.x1, self.gx1)
        oh = torch.minimum(self.y2, self.gy2) - torch.maximum(self.y1, self.gy1)
        return ow, oh

    def enclosing(self) -> tuple[Tensor, Tensor]:
        """Width and height of the smallest box that holds both."""
        cw = torch.maximum(self.x2, self.gx2) - torch.minimum(self.x1, self.gx1)
        ch = torch.maximum(self.y2, self.gy2) - torch.minimum(self.y1, self.gy1)
        return cw, ch

    def centre_offsets(self) -> tuple[Tensor, Tensor]:
        """Target centre minus predicted centre, along x and y."""
        return (self.gx1 + self.gx2 - self.x1 - self.x2) / 2, (self.gy1 + self.gy2 - self.y1 - self.y2) / 2


def _inter_union(b: _Pair) -> tuple[Tensor, Tensor]:
    """Intersection area (0 unless the boxes overlap on both axes) and union area."""
    ow, oh = b.overlaps()
    inter = torch.where((ow > 0) & (oh > 0), ow * oh, 0.0)
    w, h, wg, hg = b.widths()
    return inter, w * h + wg * hg - inter


def _iou(b: _Pair, eps: float) -> tuple[Tensor, Tensor]:
    """IoU = inter / (union + eps), and the union."""
    inter, union = _inter_union(b)
    return inter / (union + eps), union


def _centre_distance2(b: _Pair) -> Tensor:
    dx, dy = b.centre_offsets()
    return dx.square() + dy.square()


def _diagonal2(b: _Pair) -> tuple[Tensor, Tensor, Tensor]:
    """The enclosing box's width and height, and its diagonal squared."""
    cw, ch = b.enclosing()
    return cw, ch, cw.square() + ch.square()


def _power(iou: Tensor, exponent: float) -> Tensor:
    """iou ** exponent, with the gradient 0 where the IoU is 0 (boxes apart: the IoU is 0 all
    around, so is its power), not 0 * inf = NaN for exponents below 1."""
    apart = iou <= 0  # the IoU is never negative: an intersection needs two boxes of positive area
    return torch.where(apart, 0.0**exponent, iou.masked_fill(apart, 1.0) ** exponent)


# --- losses --------------------------------------------------------------------------------------


def _iou_loss(b: _Pair, p: IoUParams) -> Tensor:
    iou, _ = _iou(b, p.eps)
    return 1 - iou


def _giou(b: _Pair, p: BoxParams) -> Tensor:
    iou, union = _iou(b, p.eps)
    cw, ch = b.enclosing()
    area = cw * ch
    return 1 - iou + (area - union) / (area + p.eps)


def _diou_terms(b: _Pair, eps: float) -> tuple[Tensor, Tensor]:
    """The DIoU loss 1 - IoU + rho^2 / (c^2 + eps), and the IoU."""
    iou, _ = _iou(b, eps)
    _, _, c2 = _diagonal2(b)
    return 1 - iou + _centre_distance2(b) / (c2 + eps), iou


def _diou(b: _Pair, p: BoxParams) -> Tensor:
    return _diou_terms(b, p.eps)[0]


def _ciou(b: _Pair, p: CIoUParams) -> Tensor:
    diou, iou = _diou_terms(b, _EPS)
    w, h, wg, hg = b.widths()
    v = (4 / math.pi**2) * (torch.atan(wg / hg) - torch.atan(w / h)).square()
    with torch.no_grad():  # the trade-off weight is a constant of the gradient (Zheng et al.)
        alpha = v / (1 - iou + v + p.eps)
    return diou + alpha * v


def _eiou_terms(b: _Pair, eps: float) -> tuple[Tensor, Tensor]:
    """The EIoU loss, and the IoU."""
    iou, _ = _iou(b, eps)
    cw, ch, c2 = _diagonal2(b)
    w, h, wg, hg = b.widths()
    penalty = _centre_distance2(b) / (c2 + eps) + (w - wg).square() / (cw.square() + eps)
    return 1 - iou + penalty + (h - hg).square() / (ch.square() + eps), iou


def _eiou(b: _Pair, p: EIoUParams) -> Tensor:
    return _eiou_terms(b, p.eps)[0]


def _focal_eiou(b: _Pair, p: FocalEIoUParams) -> Tensor:
    eiou, iou = _eiou_terms(b, p.eps)
    return _power(iou, p.gamma) * eiou


def _siou(b: _Pair, p: SIoUParams) -> Tensor:
    """Gevorgyan's SIoU as YOLOv6's IOUloss computes it: eps in both heights and in the union."""
    w, h, wg, hg = b.widths()
    h, hg = h + p.eps, hg + p.eps
    ow, oh = b.overlaps()
    inter = ow.clamp_min(0) * oh.clamp_min(0)
    iou = inter / (w * h + wg * hg - inter + p.eps)
    cw, ch = b.enclosing()
    dx, dy = b.centre_offsets()
    # sine of the smaller angle between the centres' offset and an axis; where the centres
    # coincide, 0 (the offset is 0 and so is the distance cost, whatever the angle): YOLOv6 gives NaN
    offset2 = dx.square() + dy.square()
    apart = offset2 > 0
    sine = torch.minimum(dx.abs(), dy.abs()) / torch.where(apart, offset2, 1.0).sqrt()
    angle = 2 * sine * (1 - sine.square()).sqrt()  # sin(2 arcsin(sine)) = cos(2 arcsin(sine) - pi/2)
    gamma = angle - 2
    distance = 2 - torch.exp(gamma * (dx / cw).square()) - torch.exp(gamma * (dy / ch).square())
    omega_w = (w - wg).abs() / torch.maximum(w, wg)
    omega_h = (h - hg).abs() / torch.maximum(h, hg)
    # (1 - e^-omega)^4, as squares of squares: PyTorch's pow(x, 4) rounds an element otherwise in
    # its vectorized body than in its scalar tail, so a request's values would depend on its batch-mates
    shape = torch.expm1(-omega_w).square().square() + torch.expm1(-omega_h).square().square()
    return 1 - iou + (distance + shape) / 2


def _alpha_iou(b: _Pair, p: AlphaIoUParams) -> Tensor:
    iou, _ = _iou(b, p.eps)
    return 1 - _power(iou, p.alpha)


def _wiou(b: _Pair, p: BoxParams) -> Tensor:
    iou, _ = _iou(b, p.eps)
    _, _, c2 = _diagonal2(b)
    return torch.exp(_centre_distance2(b) / (c2 + p.eps).detach()) * (1 - iou)


def _on_boxes(fn: Callable[[_Pair, Any], Tensor]) -> Callable[[Inputs, Any], Tensor]:
    """The forward of a box loss: corners unbound, half precision computed in float32."""

    def forward(t: Inputs, p: Any) -> Tensor:
        x, y = t["input"], t["target"]
        dtype = x.dtype
        if dtype in _HALF:
            x, y = x.float(), y.float()
        out = fn(_Pair(*x.unbind(-1), *y.unbind(-1)), p)
        return out.to(dtype) if dtype in _HALF else out

    return forward


# --- catalog -------------------------------------------------------------------------------------

_ROLES = (
    role("input", "(N, *, 4)", description="predicted boxes (x1, y1, x2, y2)"),
    role("target", "(N, *, 4)", description="target boxes (x1, y1, x2, y2)"),
)


def _box_loss(
    name: str,
    summary: str,
    reference: str,
    fn: Callable[[_Pair, Any], Tensor],
    params: type[Params],
    aliases: tuple[str, ...],
) -> Loss:
    return Loss(
        name=name,
        summary=summary,
        category="boxes",
        reference=reference,
        roles=_ROLES,
        forward=_on_boxes(fn),
        elementwise_shape="(N, *)",
        params=params,
        aliases=aliases,
    )


LOSSES = [
    _box_loss(
        "iou",
        "IoU loss 1 - inter / (union + eps) of boxes (x1, y1, x2, y2), torchvision's IoU.",
        "torchvision.ops (the IoU of generalized_box_iou_loss)",
        _iou_loss,
        IoUParams,
        ("iou_loss", "IoULoss", "box_iou_loss"),
    ),
    _box_loss(
        "giou",
        "Generalized IoU loss 1 - IoU + (area_c - union) / (area_c + eps), area_c the smallest enclosing "
        "box's area (Rezatofighi et al. 2019).",
        "torchvision.ops.generalized_box_iou_loss",
        _giou,
        BoxParams,
        ("generalized_box_iou_loss", "giou_loss", "GIoULoss"),
    ),
    _box_loss(
        "diou",
        "Distance IoU loss 1 - IoU + rho^2 / (c^2 + eps), rho the distance of the centres and c the "
        "enclosing box's diagonal (Zheng et al. 2020).",
        "torchvision.ops.distance_box_iou_loss",
        _diou,
        BoxParams,
        ("distance_box_iou_loss", "diou_loss", "DIoULoss"),
    ),
    _box_loss(
        "ciou",
        "Complete IoU loss: the DIoU loss + alpha v, v = 4 / pi^2 (atan(w_gt / h_gt) - atan(w / h))^2 and "
        "alpha = v / (1 - IoU + v + eps) held constant in the gradient (Zheng et al. 2020).",
        "torchvision.ops.complete_box_iou_loss",
        _ciou,
        CIoUParams,
        ("complete_box_iou_loss", "ciou_loss", "CIoULoss"),
    ),
    _box_loss(
        "eiou",
        "Efficient IoU loss 1 - IoU + rho^2 / (cw^2 + ch^2 + eps) + (w - w_gt)^2 / (cw^2 + eps) + "
        "(h - h_gt)^2 / (ch^2 + eps), cw and ch the enclosing box's width and height.",
        "Zhang et al. 2022, Focal and efficient IOU loss",
        _eiou,
        EIoUParams,
        ("eiou_loss", "EIoULoss"),
    ),
    _box_loss(
        "focal_eiou",
        "Focal-EIoU loss IoU^gamma times the EIoU loss, the weight IoU^gamma not detached (its gradient is 0 "
        "where the boxes are apart).",
        "Zhang et al. 2022, Focal and efficient IOU loss",
        _focal_eiou,
        FocalEIoUParams,
        ("focal_eiou_loss", "FocalEIoULoss"),
    ),
    _box_loss(
        "siou",
        "SIoU loss 1 - IoU + (distance cost + shape cost) / 2, the distance cost 2 - exp((angle - 2) rho_x) "
        "- exp((angle - 2) rho_y) shaped by the angle of the centres' offset, the shape cost with theta 4 "
        "(Gevorgyan 2022).",
        'YOLOv6 IOUloss(box_format="xyxy", iou_type="siou") (Gevorgyan 2022, SIoU loss)',
        _siou,
        SIoUParams,
        ("siou_loss", "SIoULoss"),
    ),
    _box_loss(
        "alpha_iou",
        "Alpha-IoU loss 1 - IoU^alpha (He et al. 2021).",
        "He et al. 2021, Alpha-IoU",
        _alpha_iou,
        AlphaIoUParams,
        ("alpha_iou_loss", "AlphaIoULoss"),
    ),
    _box_loss(
        "wiou",
        "Wise-IoU v1 loss exp(rho^2 / (cw^2 + ch^2 + eps)) * (1 - IoU), the denominator held constant in "
        "the gradient (Tong et al. 2023).",
        "Tong et al. 2023, Wise-IoU (v1)",
        _wiou,
        BoxParams,
        ("wise_iou", "wiou_loss", "WIoULoss"),
    ),
]
