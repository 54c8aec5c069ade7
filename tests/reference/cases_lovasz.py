"""Reference cases: lovasz_hinge and lovasz_softmax against kornia's ``lovasz_hinge_loss`` and
``lovasz_softmax_loss`` (per image) and segmentation_models_pytorch's ``LovaszLoss`` (the pooled
batch, ``per_image=false``, and the classes present, ``classes="present"``), read out of its pinned
wheel (``wheels.smp_losses``).

kornia gives the mean over the images and has no reduction: the elementwise values (one per
image) are kornia's call on each image alone, the sum is their sum, and the mean is kornia's call
on the whole batch. The pooled batch is one value: its elementwise values are that value alone,
and its mean and sum are that value.

A segmentation_models_pytorch detail the reference works around, so that it compares values
rather than quirks: its ``_lovasz_grad`` casts the sorted labels to float32 (``.float()``),
whatever the scores' dtype, and ``torch.dot`` then refuses float64 errors against float32 Jaccard
weights. In float64 the labels are passed as a tensor whose ``.float()`` keeps its float64 dtype
(``KeepsDtype``), so that it computes the Jaccard weights in the scores' dtype, as kornia does;
nothing else of its computation changes, and float32 runs it untouched.
"""

from __future__ import annotations

import functools

import torch
from kornia.losses import lovasz_hinge_loss, lovasz_softmax_loss

from .case import Case
from .wheels import smp_losses


@functools.cache
def _smp():
    return smp_losses("_functional", "lovasz").lovasz


class KeepsDtype(torch.Tensor):
    """A tensor whose ``.float()`` is itself (see the module's docstring)."""

    def float(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def _labels_for_smp(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dtype != torch.float64:
        return labels
    return labels.as_subclass(KeepsDtype)


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


# --- inputs -------------------------------------------------------------------------------------


def _binary(shape, scale=1.0, masks=None):
    """Logits (N, 1, H, W) and labels (N, H, W); ``masks``: per image "random", "empty" (all 0) or
    "full" (all 1)."""

    def make(g, dtype):
        n, _, h, w = shape
        x = scale * torch.randn(*shape, generator=g, dtype=dtype)
        y = torch.randint(0, 2, (n, h, w), generator=g)
        for i, kind in enumerate(masks or ()):
            if kind != "random":
                y[i] = 0 if kind == "empty" else 1
        return {"input": x, "target": y}

    return make


def _classes(shape, used=None, scale=1.0):
    """Logits (N, C, H, W) and class indices (N, H, W) drawn from the first ``used`` classes."""

    def make(g, dtype):
        n, c, h, w = shape
        x = scale * torch.randn(*shape, generator=g, dtype=dtype)
        y = torch.randint(0, used or c, (n, h, w), generator=g)
        return {"input": x, "target": y}

    return make


# --- references ---------------------------------------------------------------------------------


def _per_image(fn, x, y, reduction):
    """kornia's mean over the batch, and each image alone for sum and none."""
    if reduction == "mean":
        return fn(x, y)
    each = torch.stack([fn(x[i : i + 1], y[i : i + 1]) for i in range(x.shape[0])])
    return each if reduction == "none" else each.sum()


def _pooled(value, reduction):
    return value.reshape(1) if reduction == "none" else value


def ref_hinge(t, p, reduction):
    x, y = t["input"], t["target"]
    if p.get("per_image", True):
        return _per_image(lovasz_hinge_loss, x, y, reduction)
    labels = _labels_for_smp(y.to(x.dtype), x)  # float labels: .float() of integers would make float32 signs
    return _pooled(_plain(_smp().LovaszLoss("binary", per_image=False)(x, labels)), reduction)


def ref_softmax(t, p, reduction):
    x, y = t["input"], t["target"]
    classes, per_image = p.get("classes", "all"), p.get("per_image", True)
    weight = None if p.get("weight") is None else torch.tensor(p["weight"], dtype=x.dtype)
    if classes == "all" and per_image:
        return _per_image(lambda a, b: lovasz_softmax_loss(a, b, weight), x, y, reduction)
    if classes == "all" and weight is not None:  # the pooled batch as one image, in kornia
        c = x.shape[1]
        pooled = x.transpose(0, 1).reshape(1, c, -1, x.shape[-1])
        return _pooled(lovasz_softmax_loss(pooled, y.reshape(1, -1, y.shape[-1]), weight), reduction)
    smp = _smp()
    if classes == "present":  # LovaszLoss itself: the classes present, per image or pooled
        loss = smp.LovaszLoss("multiclass", per_image=per_image)

        def fn(a, b):
            return _plain(loss(a, _labels_for_smp(b, a)))

    else:  # classes="all", pooled: LovaszLoss's function, which LovaszLoss calls with its default "present"

        def fn(a, b):
            return _plain(smp._lovasz_softmax(a.softmax(1), _labels_for_smp(b, a), classes="all", per_image=False))

    if not per_image:
        return _pooled(fn(x, y), reduction)
    each = torch.stack([fn(x[i : i + 1], y[i : i + 1]) for i in range(x.shape[0])])
    return {"none": each, "sum": each.sum(), "mean": fn(x, y)}[reduction]


def _hinge(id, params, make, **kw):
    return Case(id, "lovasz_hinge", params, make, ref_hinge, **kw)


def _softmax(id, params, make, **kw):
    return Case(id, "lovasz_softmax", params, make, ref_softmax, **kw)


CASES = [
    _hinge("lovasz-hinge", {}, _binary((3, 1, 5, 6))),
    _hinge("lovasz-hinge-nested", {"per_image": True}, _binary((2, 1, 4, 4)), nested=("input", "target")),
    _hinge("lovasz-hinge-empty-and-full-masks", {}, _binary((4, 1, 4, 5), masks=("empty", "random", "full"))),
    _hinge("lovasz-hinge-confident", {}, _binary((2, 1, 6, 5), scale=3.0)),
    _hinge("lovasz-hinge-one-pixel", {}, _binary((3, 1, 1, 1))),
    _hinge("lovasz-hinge-pooled", {"per_image": False}, _binary((3, 1, 5, 4))),
    _hinge("lovasz-hinge-pooled-empty-mask", {"per_image": False}, _binary((2, 1, 4, 4), masks=("empty", "empty"))),
    _softmax("lovasz-softmax", {}, _classes((3, 4, 5, 6))),
    _softmax("lovasz-softmax-two-classes", {"classes": "all"}, _classes((2, 2, 4, 5))),
    _softmax("lovasz-softmax-absent-classes", {}, _classes((2, 5, 4, 4), used=3)),
    _softmax("lovasz-softmax-weight", {"weight": [0.5, 2.0, 1.0, 0.0]}, _classes((2, 4, 4, 5))),
    _softmax("lovasz-softmax-present", {"classes": "present"}, _classes((3, 4, 5, 4))),
    _softmax("lovasz-softmax-present-absent-classes", {"classes": "present"}, _classes((3, 5, 4, 4), used=2)),
    _softmax("lovasz-softmax-one-pixel", {"classes": "present"}, _classes((2, 3, 1, 1))),
    _softmax("lovasz-softmax-pooled", {"per_image": False}, _classes((3, 4, 4, 5), used=3)),
    _softmax(
        "lovasz-softmax-pooled-present", {"per_image": False, "classes": "present"}, _classes((2, 4, 5, 4), used=3)
    ),
    _softmax("lovasz-softmax-pooled-weight", {"per_image": False, "weight": [1.0, 0.25, 3.0]}, _classes((2, 3, 4, 4))),
    _softmax("lovasz-softmax-confident", {}, _classes((2, 3, 4, 4), scale=4.0), nested=("target",)),
]
