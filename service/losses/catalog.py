"""Every loss of the catalog, in the order GET /v1/losses lists them."""

from __future__ import annotations

from . import (
    boxes,
    classic,
    classification,
    ctc,
    dice,
    dice_ce,
    focal,
    gan,
    lovasz,
    margin,
    metric_learning,
    overlap,
    regression,
    robust,
    ssim,
)

FAMILIES = [
    regression,
    classification,
    margin,
    ctc,
    focal,
    dice,
    dice_ce,
    overlap,
    robust,
    gan,
    boxes,
    classic,
    metric_learning,
    lovasz,
    ssim,
]

ALL_LOSSES = [loss for family in FAMILIES for loss in family.LOSSES]
