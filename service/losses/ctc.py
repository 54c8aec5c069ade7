"""Connectionist temporal classification (PyTorch CTCLoss)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params
from .checks import first_value, in_range, position
from .contract import INTEGER, role
from .margin import in_float32


class CTCParams(Params):
    blank: int = Field(0, ge=0, description="index of the blank label, in [0, C)")
    zero_infinity: bool = Field(
        False, description="replace infinite losses (impossible alignments) and their gradients by zero"
    )


# -- value checks ---------------------------------------------------------------------------------


def _blank(c: Checked) -> list[ErrorItem]:
    blank, classes = c.params.blank, c.binding.size("C")
    if blank < classes:
        return []
    msg = f"class index {blank} out of range [0, {classes}) (C from log_probs)"
    return [ErrorItem(("loss", "params", "blank"), msg)]


WORK_LIMIT = 2**28  # PyTorch's CTC allocates T x N x (2 S + 1) values of its alpha/beta tables


def _work(c: Checked) -> list[ErrorItem]:
    """Refuse small requests that would make CTC allocate gigabytes."""
    b = c.binding
    work = b.size("T") * b.size("N") * (2 * b.size("S") + 1)
    if work <= WORK_LIMIT:
        return []
    msg = f"CTC needs T x N x (2 S + 1) = {work} working values; the limit is {WORK_LIMIT}"
    return [ErrorItem(("inputs", "targets"), msg)]


def _lengths(c: Checked) -> list[ErrorItem]:
    """input_lengths in [0, T], target_lengths in [0, S] (more labels than frames is allowed: inf)."""
    b, arrays = c.binding, c.arrays
    errors = in_range(arrays["input_lengths"], 0, b.size("T"), "input_lengths")
    return errors + in_range(arrays["target_lengths"], 0, b.size("S"), "target_lengths")


def _labels(c: Checked) -> list[ErrorItem]:
    """Within each sample's target length: class indices in [0, C), and never the blank."""
    targets, classes, blank = c.arrays["targets"], c.binding.size("C"), c.params.blank
    used = np.arange(targets.shape[1])[None, :] < c.arrays["target_lengths"][:, None]
    out = used & ((targets < 0) | (targets >= classes))
    found = (
        (out, lambda v: f"class index {v} out of range [0, {classes})"),
        (used & (targets == blank) & ~out, lambda v: f"label {v} is the blank (blank = {blank}), not a target label"),
    )
    return [
        ErrorItem(("inputs", "targets"), f"{text(first_value(targets, bad))} at position {position(targets, bad)}")
        for bad, text in found
        if bad.any()
    ]


# -- forward and reduction ------------------------------------------------------------------------


def _ctc(t: Inputs, p: CTCParams) -> Tensor:
    def fn(log_probs: Tensor) -> Tensor:
        return F.ctc_loss(
            log_probs,
            t["targets"],
            t["input_lengths"],
            t["target_lengths"],
            blank=p.blank,
            reduction="none",
            zero_infinity=p.zero_infinity,
        )

    return in_float32(fn, t["log_probs"])


def _terms(el: Tensor, t: Inputs, p: CTCParams, reduction: str) -> tuple[Tensor, Tensor]:
    """PyTorch's CTC mean is the mean over samples of each sample's loss over its target length (at
    least 1): S_i = loss_i / max(length_i, 1), W_i = 1. For sum, S_i = loss_i and W_i = 1 still (the
    mean's denominator, the sample count): then sum(S) / sum(W) is the mean of the per-sample losses
    not divided by their lengths, not CTC's mean."""
    losses = el.to(torch.float64)
    if reduction != "sum":
        losses = losses / t["target_lengths"].clamp_min(1).to(torch.float64)
    return losses, torch.ones_like(losses)


ROLES = (
    role(
        "log_probs",
        "(T, N, C)",
        batch_dim=1,
        ragged_dims=(0,),
        description="log-probabilities over C classes (the output of log_softmax), time first",
    ),
    role(
        "targets",
        "(N, S)",
        kind=INTEGER,
        differentiable=False,
        ragged_dims=(1,),
        description="label sequences, one row per sample, padded past its target length",
    ),
    role("input_lengths", "(N)", kind=INTEGER, differentiable=False, description="frames used per sample, in [0, T]"),
    role("target_lengths", "(N)", kind=INTEGER, differentiable=False, description="labels per sample, in [0, S]"),
)

LOSSES = [
    Loss(
        name="ctc",
        summary="Connectionist temporal classification: -log of the summed probability of every alignment"
        " of the target (PyTorch CTCLoss).",
        category="sequence",
        reference="pytorch",
        roles=ROLES,
        forward=_ctc,
        sample_terms=_terms,
        elementwise_shape="(N)",
        params=CTCParams,
        aliases=("CTCLoss", "ctc_loss"),
        validate=(_work, _blank, _lengths, _labels),
    ),
]
