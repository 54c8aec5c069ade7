"""Reference cases: the box-regression losses.

- iou, giou, diou, ciou against torchvision's own ``ops`` functions, read out of the pinned wheel
  (``wheels.torchvision_ops``): ``generalized_box_iou_loss``, ``distance_box_iou_loss``,
  ``complete_box_iou_loss``, and for ``iou`` its ``_loss_inter_union`` with giou's
  ``inter / (union + eps)``. torchvision computes half-precision boxes in float32
  (``_upcast_non_float``), as the service does; its ``complete_box_iou_loss`` passes ``eps`` to
  the trade-off weight only (its IoU and distance term keep the default 1e-7), which the
  ``ciou-eps`` case holds the service to.
- siou: YOLOv6's ``IOUloss(box_format="xyxy", iou_type="siou")`` (meituan/YOLOv6,
  yolov6/utils/figure_iou.py) transcribed, its operations in its order, with the corners taken
  from the last dimension (YOLOv6 indexes ``box1[0]``... on boxes it has not transposed, which only
  works for one box against many; the formula is the same per pair).
- eiou, focal_eiou, alpha_iou, wiou: the issue's formulas written out, on torchvision's IoU.

Where a reference takes a fractional power of the IoU (focal_eiou, alpha_iou with alpha < 1), its
autograd gives NaN where the boxes are apart (0 * inf): those cases draw overlapping boxes, and
tests/losses/test_boxes_checks.py holds the service's gradient 0 there. ciou and wiou hold part
of their formula constant in the gradient (alpha, the enclosing diagonal), so gradcheck's finite
differences cannot measure their gradient: it is compared with the reference's autograd only.
"""

import math

import torch

from .case import Case
from .wheels import torchvision_ops

EPS = 1e-7
TV = torchvision_ops("giou_loss", "diou_loss", "ciou_loss")


def _corners(centre, size):
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def _boxes(shape, kind):
    """Target boxes of shape (*shape, 4) (centres in [0, 20), sizes in [1, 9)) and predicted ones:
    "near" overlaps its target on both axes, "mixed" is within 8 of it on each axis (about half
    overlap it, the rest are apart), "inverted" is "mixed" with x1 and x2 swapped in a third of the
    boxes and y1 and y2 in another third."""

    def make(g, dtype):
        centre = torch.rand(*shape, 2, generator=g, dtype=dtype) * 20
        size = torch.rand(*shape, 2, generator=g, dtype=dtype) * 8 + 1
        if kind == "near":
            shift = (torch.rand(*shape, 2, generator=g, dtype=dtype) - 0.5) * 0.5 * size
            scale = torch.rand(*shape, 2, generator=g, dtype=dtype) * 0.6 + 0.7
            pred = _corners(centre + shift, size * scale)
        else:
            shift = (torch.rand(*shape, 2, generator=g, dtype=dtype) - 0.5) * 16
            pred = _corners(centre + shift, torch.rand(*shape, 2, generator=g, dtype=dtype) * 8 + 1)
        if kind == "inverted":
            which = torch.randint(0, 3, shape, generator=g)
            pred = torch.where((which == 1).unsqueeze(-1), pred[..., [2, 1, 0, 3]], pred)
            pred = torch.where((which == 2).unsqueeze(-1), pred[..., [0, 3, 2, 1]], pred)
        return {"input": pred, "target": _corners(centre, size)}

    return make


def _reduce(el, reduction):
    if reduction == "none":
        return el
    return el.sum() if reduction == "sum" else el.mean()


def _upcast(t):
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in t.items()}


def torchvision_iou(t, p):
    """IoU as torchvision's box losses take it: their ``_loss_inter_union``, inter / (union + eps)."""
    t = _upcast(t)
    inter, union = TV._utils._loss_inter_union(t["input"], t["target"])
    return inter / (union + p.get("eps", EPS))


def iou_reference(t, p, reduction):
    return _reduce(1 - torchvision_iou(t, p), reduction)


def torchvision_loss(fn):
    def reference(t, p, reduction):
        return fn(t["input"], t["target"], reduction=reduction, eps=p.get("eps", EPS))

    return reference


giou_reference = torchvision_loss(TV.giou_loss.generalized_box_iou_loss)
diou_reference = torchvision_loss(TV.diou_loss.distance_box_iou_loss)
ciou_reference = torchvision_loss(TV.ciou_loss.complete_box_iou_loss)


def _geometry(t):
    """Corners of both boxes, widths and heights, the enclosing box's, and the squared distance
    of the centres, as the papers define them."""
    x1, y1, x2, y2 = t["input"].unbind(-1)
    gx1, gy1, gx2, gy2 = t["target"].unbind(-1)
    w, h, wg, hg = x2 - x1, y2 - y1, gx2 - gx1, gy2 - gy1
    cw = torch.max(x2, gx2) - torch.min(x1, gx1)
    ch = torch.max(y2, gy2) - torch.min(y1, gy1)
    rho2 = ((x1 + x2) / 2 - (gx1 + gx2) / 2) ** 2 + ((y1 + y2) / 2 - (gy1 + gy2) / 2) ** 2
    return w, h, wg, hg, cw, ch, rho2


def eiou_elementwise(t, p):
    """Zhang et al. 2022: 1 - IoU + rho^2 / (cw^2 + ch^2) + (w - w_gt)^2 / cw^2 + (h - h_gt)^2 / ch^2,
    each denominator + eps."""
    eps = p.get("eps", EPS)
    w, h, wg, hg, cw, ch, rho2 = _geometry(t)
    iou = torchvision_iou(t, p)
    return 1 - iou + rho2 / (cw**2 + ch**2 + eps) + (w - wg) ** 2 / (cw**2 + eps) + (h - hg) ** 2 / (ch**2 + eps)


def eiou_reference(t, p, reduction):
    return _reduce(eiou_elementwise(t, p), reduction)


def focal_eiou_reference(t, p, reduction):
    """IoU^gamma * EIoU, the IoU not detached."""
    return _reduce(torchvision_iou(t, p) ** p.get("gamma", 0.5) * eiou_elementwise(t, p), reduction)


def alpha_iou_reference(t, p, reduction):
    """He et al. 2021: 1 - IoU^alpha."""
    return _reduce(1 - torchvision_iou(t, p) ** p.get("alpha", 3.0), reduction)


def wiou_reference(t, p, reduction):
    """Tong et al. 2023, v1: exp(rho^2 / (cw^2 + ch^2)) * (1 - IoU), the denominator detached
    (+ eps, as torchvision's DIoU adds it to the same diagonal)."""
    *_, cw, ch, rho2 = _geometry(t)
    r = torch.exp(rho2 / (cw**2 + ch**2 + p.get("eps", EPS)).detach())
    return _reduce(r * (1 - torchvision_iou(t, p)), reduction)


def yolov6_siou_reference(t, p, reduction):
    """YOLOv6 IOUloss(box_format="xyxy", iou_type="siou"), per pair of boxes."""
    eps = p.get("eps", EPS)
    b1_x1, b1_y1, b1_x2, b1_y2 = t["input"].unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = t["target"].unbind(-1)
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    s_cw = (b2_x1 + b2_x2 - b1_x1 - b1_x2) * 0.5
    s_ch = (b2_y1 + b2_y2 - b1_y1 - b1_y2) * 0.5
    sigma = torch.pow(s_cw**2 + s_ch**2, 0.5)
    sin_alpha_1 = torch.abs(s_cw) / sigma
    sin_alpha_2 = torch.abs(s_ch) / sigma
    threshold = pow(2, 0.5) / 2
    sin_alpha = torch.where(sin_alpha_1 > threshold, sin_alpha_2, sin_alpha_1)
    angle_cost = torch.cos(torch.arcsin(sin_alpha) * 2 - math.pi / 2)
    rho_x = (s_cw / cw) ** 2
    rho_y = (s_ch / ch) ** 2
    gamma = angle_cost - 2
    distance_cost = 2 - torch.exp(gamma * rho_x) - torch.exp(gamma * rho_y)
    omiga_w = torch.abs(w1 - w2) / torch.max(w1, w2)
    omiga_h = torch.abs(h1 - h2) / torch.max(h1, h2)
    shape_cost = torch.pow(1 - torch.exp(-1 * omiga_w), 4) + torch.pow(1 - torch.exp(-1 * omiga_h), 4)
    iou = iou - 0.5 * (distance_cost + shape_cost)
    return _reduce(1.0 - iou, reduction)


REFERENCES = {
    "iou": iou_reference,
    "giou": giou_reference,
    "diou": diou_reference,
    "ciou": ciou_reference,
    "eiou": eiou_reference,
    "focal_eiou": focal_eiou_reference,
    "siou": yolov6_siou_reference,
    "alpha_iou": alpha_iou_reference,
    "wiou": wiou_reference,
}
HELD_CONSTANT = {"ciou", "wiou"}  # part of the formula detached: gradcheck cannot measure it


def _case(id, loss, params, shape, kind, **kw):
    kw.setdefault("grad_roles", ("input", "target"))
    kw.setdefault("gradcheck", loss not in HELD_CONSTANT)
    return Case(id, loss, params, _boxes(shape, kind), REFERENCES[loss], **kw)


CASES = [
    _case("iou-mixed", "iou", {}, (12,), "mixed"),
    _case("iou-near-3d", "iou", {}, (2, 3, 4), "near"),
    _case("iou-inverted-eps", "iou", {"eps": 1e-2}, (4, 5), "inverted", nested=("input",)),
    _case("giou-mixed", "giou", {}, (12,), "mixed"),
    _case("giou-near", "giou", {}, (3, 4), "near"),
    _case("giou-inverted-eps", "giou", {"eps": 1e-3}, (2, 3, 5), "inverted"),
    _case("diou-mixed", "diou", {}, (12,), "mixed"),
    _case("diou-near", "diou", {}, (3, 4), "near"),
    _case("diou-inverted-eps", "diou", {"eps": 0.5}, (4, 6), "inverted"),
    _case("ciou-mixed", "ciou", {}, (12,), "mixed"),
    _case("ciou-near", "ciou", {}, (2, 2, 3), "near"),
    _case("ciou-inverted", "ciou", {}, (4, 6), "inverted"),
    _case("ciou-eps", "ciou", {"eps": 0.25}, (10,), "near"),
    _case("eiou-mixed", "eiou", {}, (12,), "mixed"),
    _case("eiou-near", "eiou", {}, (3, 4), "near"),
    _case("eiou-inverted-eps", "eiou", {"eps": 0.1}, (2, 3, 4), "inverted"),
    _case("focal_eiou-default", "focal_eiou", {}, (3, 5), "near"),
    _case("focal_eiou-gamma2", "focal_eiou", {"gamma": 2.0}, (12,), "mixed"),
    _case("focal_eiou-gamma1-eps", "focal_eiou", {"gamma": 1.0, "eps": 1e-2}, (2, 3, 2), "inverted"),
    _case("focal_eiou-gamma0", "focal_eiou", {"gamma": 0.0}, (8,), "mixed"),
    _case("siou-mixed", "siou", {}, (12,), "mixed"),
    _case("siou-near", "siou", {}, (3, 4), "near"),
    _case("siou-inverted-eps", "siou", {"eps": 1e-2}, (2, 3, 4), "inverted"),
    _case("alpha_iou-default", "alpha_iou", {}, (12,), "mixed"),
    _case("alpha_iou-half", "alpha_iou", {"alpha": 0.5}, (3, 4), "near"),
    _case("alpha_iou-one-eps", "alpha_iou", {"alpha": 1.0, "eps": 1e-3}, (2, 2, 3), "inverted"),
    _case("wiou-mixed", "wiou", {}, (12,), "mixed"),
    _case("wiou-near", "wiou", {}, (3, 4), "near"),
    _case("wiou-inverted-eps", "wiou", {"eps": 1e-2}, (2, 3, 4), "inverted", nested=("target",)),
]
