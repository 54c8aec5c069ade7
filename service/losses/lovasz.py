"""Lovasz losses (Berman et al. 2018): the Lovasz extension of the Jaccard loss, evaluated at the
hinge errors of binary logits (``lovasz_hinge``) or at the softmax errors of each class
(``lovasz_softmax``). kornia's ``lovasz_hinge_loss`` / ``lovasz_softmax_loss`` per image;
``per_image=false`` pools the batch as segmentation_models_pytorch's ``LovaszLoss`` does.

The extension of a set function at errors e: sort e in decreasing order; each sorted error is
weighted by how much the Jaccard loss 1 - |Y minus the first k| / |Y plus the negatives among the
first k| grows at k. Every image (or the pooled batch) is sorted along one dim at once: no loop
over images. The gradient is autograd's through the sort: the extension's subgradient.

Per image, the loss gives one value per image (elementwise ``(N,)``) and its mean and sum are over
the images: decomposable and batched like any loss. With ``per_image=false`` the batch is pooled
into one value (elementwise ``(1,)``, its mean and sum are that value), and the request runs alone,
as dice's ``batch=true`` does: batch-mates would change it.

In float16 and bfloat16 the errors are sorted, weighted and summed in float32 (the accumulation
dtype kornia uses for the Jaccard weights and sums), and each value is rounded to the dtype once:
sorted in half precision, near-equal errors tie and the subgradient would depend on how the ties
fall.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params, param_tensor
from .checks import class_indices, one_of, param_length
from .contract import INTEGER, role

ClassWeight = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_PER_IMAGE = "true: one value per image, averaged over the batch (kornia); false: the batch pooled into one value"


class LovaszHingeParams(Params):
    per_image: bool = Field(True, description=_PER_IMAGE + " (segmentation_models_pytorch LovaszLoss)")


class LovaszSoftmaxParams(Params):
    per_image: bool = Field(True, description=_PER_IMAGE + " (segmentation_models_pytorch LovaszLoss)")
    classes: Literal["all", "present"] = Field(
        "all",
        description=(
            "the classes averaged: all C (kornia; a class absent from an image gives its largest "
            "probability), or only those present in the target (segmentation_models_pytorch, Berman et al.)"
        ),
    )
    weight: list[ClassWeight] | None = Field(
        None,
        description=(
            "one weight per class (C values) multiplying its term, the mean still over C (kornia); "
            "with classes='all' only"
        ),
    )


def _working(x: Tensor) -> Tensor:
    """Half precision is computed in float32 (see the module's docstring)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _extension(errors: Tensor, fg: Tensor) -> Tensor:
    """The Lovasz extension of the Jaccard loss along the last dim: errors (..., P) with the
    foreground indicator fg (..., P) of the same dtype; (...,)."""
    errors, order = errors.sort(dim=-1, descending=True)
    fg = fg.gather(-1, order)
    positives = fg.sum(-1, keepdim=True)
    intersection = positives - fg.cumsum(-1)
    union = positives + (1 - fg).cumsum(-1)
    jaccard = 1 - intersection / union  # union >= 1: the first pixel is a positive or a negative
    steps = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return (errors * steps).sum(-1)


def _lovasz_hinge(t: Inputs, p: LovaszHingeParams) -> Tensor:
    x = t["input"]
    logits = _working(x)
    labels = t["target"].to(logits.dtype)
    rows = x.shape[0] if p.per_image else 1
    logits, labels = logits.reshape(rows, -1), labels.reshape(rows, -1)
    hinge = F.relu(1 - logits * (2 * labels - 1))
    return _extension(hinge, labels).to(x.dtype)


def _lovasz_softmax(t: Inputs, p: LovaszSoftmaxParams) -> Tensor:
    x = t["input"]
    n, c = x.shape[:2]
    # the softmax over the last dim of (N, P, C): each pixel's row alike whatever the rows around it
    # (over dim 1 of (N, C, P) PyTorch's CPU kernel rounds a pixel by where it falls in the batch)
    probs = torch.softmax(_working(x).reshape(n, c, -1).transpose(1, 2), dim=-1).transpose(1, 2)
    fg = F.one_hot(t["target"].reshape(n, -1), c).transpose(1, 2).to(probs.dtype)
    if not p.per_image:  # the batch's pixels as one image: (1, C, N * H * W)
        probs, fg = probs.transpose(0, 1).reshape(1, c, -1), fg.transpose(0, 1).reshape(1, c, -1)
    per_class = _extension((fg - probs).abs(), fg)  # (rows, C)
    if p.classes == "present":
        present = (fg.sum(-1) > 0).to(per_class.dtype)
        loss = (per_class * present).sum(-1) / present.sum(-1)  # every pixel's class is present: >= 1
    else:
        if p.weight is not None:
            per_class = per_class * param_tensor(p.weight, per_class)
        loss = per_class.mean(-1)
    return loss.to(x.dtype)


# --- checks -------------------------------------------------------------------------------------


def _check_hinge(c: Checked) -> list[ErrorItem]:
    return one_of(c.arrays["target"], (0, 1), "target")


def _check_softmax(c: Checked) -> list[ErrorItem]:
    classes, p = c.binding.size("C"), c.params
    if classes < 2:
        msg = "expected C > 1 classes (the softmax is taken over C; for one class use lovasz_hinge); got C = 1"
        return [ErrorItem(("inputs", "input"), msg)]
    errors = class_indices(c.arrays["target"], classes, "target")
    if p.weight is not None and p.classes == "present":
        msg = "weight is kornia's and applies to classes='all' (the mean over all C); got classes='present'"
        errors.append(ErrorItem(("loss", "params", "weight"), msg))
    return errors + param_length(p.weight, classes, "C", "weight")


_ELEMENTWISE = "(N)"

LOSSES = [
    Loss(
        name="lovasz_hinge",
        summary=(
            "Binary Lovasz hinge loss: the Lovasz extension of the Jaccard loss at the hinge errors "
            "max(0, 1 - z (2 y - 1)), per image (kornia lovasz_hinge_loss), or over the pooled batch "
            "with per_image=false (segmentation_models_pytorch LovaszLoss, binary)."
        ),
        category="segmentation",
        reference="kornia lovasz_hinge_loss; segmentation_models_pytorch LovaszLoss (per_image=false)",
        roles=(
            role("input", "(N, 1, H, W)", description="logits of the foreground"),
            role(
                "target",
                "(N, H, W)",
                kind=INTEGER,
                differentiable=False,
                description="labels: 1 for the foreground, 0 for the background",
            ),
        ),
        forward=_lovasz_hinge,
        elementwise_shape=_ELEMENTWISE,
        params=LovaszHingeParams,
        aliases=("LovaszHingeLoss", "lovasz_hinge_loss"),
        validate=(_check_hinge,),
        pooled_when=("per_image", False),
    ),
    Loss(
        name="lovasz_softmax",
        summary=(
            "Multi-class Lovasz-Softmax loss: per class, the Lovasz extension of the Jaccard loss at the "
            "errors |onehot(y) - softmax(x)|, averaged over all classes (kornia lovasz_softmax_loss) or "
            "the present ones (Berman et al.), per image or over the pooled batch (segmentation_models_pytorch "
            "LovaszLoss, multiclass)."
        ),
        category="segmentation",
        reference=(
            "kornia lovasz_softmax_loss; segmentation_models_pytorch LovaszLoss (classes='present', per_image=false)"
        ),
        roles=(
            role("input", "(N, C, H, W)", description="logits; the softmax over C is taken inside"),
            role(
                "target",
                "(N, H, W)",
                kind=INTEGER,
                differentiable=False,
                description="class indices in [0, C)",
            ),
        ),
        forward=_lovasz_softmax,
        elementwise_shape=_ELEMENTWISE,
        params=LovaszSoftmaxParams,
        aliases=("LovaszSoftmaxLoss", "lovasz_softmax_loss"),
        validate=(_check_softmax,),
        pooled_when=("per_image", False),
    ),
]
