"""Margin and embedding losses: soft margin, multi-label and multi-class margins, hinge embedding,
margin ranking, cosine embedding and the triplet losses."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, FiniteFloat
from torch import Tensor

from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params, param_tensor
from .checks import (
    class_indices,
    first_value,
    one_of,
    per_class,
    position,
    probabilities,
)
from .contract import INTEGER, Role, role

LABELS = "labels 1 or -1"


# -- value checks ---------------------------------------------------------------------------------


def _plus_minus_one(c: Checked) -> list[ErrorItem]:
    """The target holds the labels 1 and -1 (as PyTorch documents them)."""
    return one_of(c.arrays["target"], (1, -1), "target")


def _class_targets(c: Checked) -> list[ErrorItem]:
    return class_indices(c.arrays["target"], c.binding.size("C"), "target")


def _label_lists(c: Checked) -> list[ErrorItem]:
    """multilabel_margin: class indices in [0, C), or -1, which ends a sample's list."""
    arr, classes = c.arrays["target"], c.binding.size("C")
    bad = (arr < -1) | (arr >= classes)
    if not bad.any():
        return []
    msg = (
        f"class index {first_value(arr, bad)} out of range [0, {classes}) (or -1 to end the list)"
        f" at position {position(arr, bad)}"
    )
    return [ErrorItem(("inputs", "target"), msg)]


# -- params ---------------------------------------------------------------------------------------

WEIGHT = "per-class rescaling weights, one per class (C values); none means all 1"
SWAP = "use min(d(a, n), d(p, n)) as the negative distance"


def _finite(default: float, description: str, **constraints: float):
    return Field(default, allow_inf_nan=False, description=description, **constraints)  # type: ignore[call-overload]


def _triplet_margin_field():
    return _finite(1.0, "the margin: loss max(0, d(a, p) - d(a, n) + margin); > 0", gt=0)


class MultiLabelSoftMarginParams(Params):
    weight: list[FiniteFloat] | None = Field(None, description=WEIGHT)


class MultiMarginParams(Params):
    p: Literal[1, 2] = Field(1, description="exponent of the hinge: 1 or 2")
    margin: float = _finite(1.0, "the margin the target class's score must exceed others by")
    weight: list[FiniteFloat] | None = Field(None, description=WEIGHT)


class HingeEmbeddingParams(Params):
    margin: float = _finite(1.0, "the margin for pairs labelled -1: loss max(0, margin - x)")


class MarginRankingParams(Params):
    margin: float = _finite(0.0, "the margin: loss max(0, -y (x1 - x2) + margin)")


class CosineEmbeddingParams(Params):
    margin: float = _finite(0.0, "for pairs labelled -1: loss max(0, cos - margin); 0 to 0.5 suggested")


class TripletMarginParams(Params):
    margin: float = _triplet_margin_field()
    p: float = _finite(2.0, "the norm degree of the pairwise distance; > 0", gt=0)
    eps: float = _finite(1e-6, "added to the differences before the norm")
    swap: bool = Field(False, description=SWAP)


class TripletDistanceParams(Params):
    distance: Literal["pairwise", "cosine"] = Field(
        "pairwise",
        description="pairwise: torch.nn.PairwiseDistance() (p=2, eps=1e-6); cosine: 1 - cosine_similarity",
    )
    margin: float = _triplet_margin_field()
    swap: bool = Field(False, description=SWAP)


# -- forwards -------------------------------------------------------------------------------------


def in_float32(fn: Callable[..., Tensor], first: Tensor, *rest: Tensor) -> Tensor:
    """``fn(first, *rest)``, computed in float32 when ``first`` is float16/bfloat16 (PyTorch's CPU
    kernels for multi_margin, multilabel_margin and ctc lack them), returned in ``first``'s dtype."""
    if first.dtype not in (torch.float16, torch.bfloat16):
        return fn(first, *rest)
    return fn(first.float(), *rest).to(first.dtype)


def _soft_margin(t: Inputs, p: Params) -> Tensor:
    return F.soft_margin_loss(t["input"], t["target"], reduction="none")


def _multilabel_soft_margin(t: Inputs, p: MultiLabelSoftMarginParams) -> Tensor:
    weight = param_tensor(p.weight, t["input"])
    return F.multilabel_soft_margin_loss(t["input"], t["target"], weight=weight, reduction="none")


def _multilabel_margin(t: Inputs, p: Params) -> Tensor:
    return in_float32(partial(F.multilabel_margin_loss, reduction="none"), t["input"], t["target"])


def _multi_margin(t: Inputs, p: MultiMarginParams) -> Tensor:
    def fn(x: Tensor, y: Tensor) -> Tensor:
        weight = param_tensor(p.weight, x)
        return F.multi_margin_loss(x, y, p=p.p, margin=p.margin, weight=weight, reduction="none")

    return in_float32(fn, t["input"], t["target"])


def _hinge_embedding(t: Inputs, p: HingeEmbeddingParams) -> Tensor:
    return F.hinge_embedding_loss(t["input"], t["target"], margin=p.margin, reduction="none")


def _margin_ranking(t: Inputs, p: MarginRankingParams) -> Tensor:
    return F.margin_ranking_loss(t["input1"], t["input2"], t["target"], margin=p.margin, reduction="none")


def _cosine_embedding(t: Inputs, p: CosineEmbeddingParams) -> Tensor:
    return F.cosine_embedding_loss(t["input1"], t["input2"], t["target"], margin=p.margin, reduction="none")


def _triplet(t: Inputs) -> tuple[Tensor, Tensor, Tensor]:
    return t["anchor"], t["positive"], t["negative"]


def _triplet_margin(t: Inputs, p: TripletMarginParams) -> Tensor:
    return F.triplet_margin_loss(*_triplet(t), margin=p.margin, p=p.p, eps=p.eps, swap=p.swap, reduction="none")


def cosine_distance(x1: Tensor, x2: Tensor) -> Tensor:
    return 1 - F.cosine_similarity(x1, x2)


def _triplet_with_distance(t: Inputs, p: TripletDistanceParams) -> Tensor:
    fn = cosine_distance if p.distance == "cosine" else None  # None: PairwiseDistance()
    return F.triplet_margin_with_distance_loss(
        *_triplet(t), distance_function=fn, margin=p.margin, swap=p.swap, reduction="none"
    )


# -- roles ----------------------------------------------------------------------------------------


def _labels(form: str) -> Role:
    return role("target", form, differentiable=False, description=LABELS)


SAME_LABELS = (role("input", "(*)"), _labels("(*)"))
SCORES = role("input", "(N, C)", description="one score per class")
PAIR = (role("input1", "(N)"), role("input2", "(N)"), _labels("(N)"))
EMBEDDING_PAIR = (role("input1", "(N, D)"), role("input2", "(N, D)"), _labels("(N)"))
TRIPLET = (
    role("anchor", "(N, D)"),
    role("positive", "(N, D)", description="embeddings close to the anchors"),
    role("negative", "(N, D)", description="embeddings far from the anchors"),
)


def _loss(name: str, cls: str, summary: str, roles: tuple, forward, shape: str, **kw) -> Loss:
    aliases = (f"{cls}Loss", f"{name}_loss", *kw.pop("aliases", ()))
    return Loss(
        name=name,
        summary=f"{summary} (PyTorch {cls}Loss).",
        category="margin",
        reference="pytorch",
        roles=roles,
        forward=forward,
        elementwise_shape=shape,
        aliases=aliases,
        **kw,
    )


LOSSES = [
    _loss(
        "soft_margin",
        "SoftMargin",
        "Two-class logistic loss log(1 + exp(-y x)), y = 1 or -1",
        SAME_LABELS,
        _soft_margin,
        "(*)",
        validate=(_plus_minus_one,),
        aliases=("logistic", "logistic_loss"),
    ),
    _loss(
        "multilabel_soft_margin",
        "MultiLabelSoftMargin",
        "Multi-label one-versus-all logistic loss,"
        " -mean_c w_c [y_c log sigmoid(x_c) + (1 - y_c) log sigmoid(-x_c)], y_c in [0, 1]",
        (SCORES, role("target", "(N, C)", description="labels 0 or 1 per class (soft labels in [0, 1] allowed)")),
        _multilabel_soft_margin,
        "(N)",
        params=MultiLabelSoftMarginParams,
        validate=(probabilities("target"), per_class("weight")),
    ),
    _loss(
        "multilabel_margin",
        "MultiLabelMargin",
        "Multi-label hinge loss, sum over target classes j and non-target classes i of max(0, 1 - (x_j - x_i)) / C",
        (
            SCORES,
            role(
                "target",
                "(N, C)",
                kind=INTEGER,
                differentiable=False,
                description="each sample's target class indices, ended by -1 (later entries are ignored)",
            ),
        ),
        _multilabel_margin,
        "(N)",
        validate=(_label_lists,),
    ),
    _loss(
        "multi_margin",
        "MultiMargin",
        "Multi-class hinge loss, sum over i != y of w_y max(0, margin - x_y + x_i)^p / C",
        (SCORES, role("target", "(N)", kind=INTEGER, differentiable=False, description="class indices in [0, C)")),
        _multi_margin,
        "(N)",
        params=MultiMarginParams,
        validate=(_class_targets, per_class("weight")),
    ),
    _loss(
        "hinge_embedding",
        "HingeEmbedding",
        "x where y = 1, max(0, margin - x) where y = -1",
        SAME_LABELS,
        _hinge_embedding,
        "(*)",
        params=HingeEmbeddingParams,
        validate=(_plus_minus_one,),
    ),
    _loss(
        "margin_ranking",
        "MarginRanking",
        "max(0, -y (x1 - x2) + margin), y = 1 when x1 should rank higher",
        PAIR,
        _margin_ranking,
        "(N)",
        params=MarginRankingParams,
        validate=(_plus_minus_one,),
    ),
    _loss(
        "cosine_embedding",
        "CosineEmbedding",
        "1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1",
        EMBEDDING_PAIR,
        _cosine_embedding,
        "(N)",
        params=CosineEmbeddingParams,
        validate=(_plus_minus_one,),
    ),
    _loss(
        "triplet_margin",
        "TripletMargin",
        "max(0, ||a - p||_p - ||a - n||_p + margin)",
        TRIPLET,
        _triplet_margin,
        "(N)",
        params=TripletMarginParams,
    ),
    _loss(
        "triplet_margin_with_distance",
        "TripletMarginWithDistance",
        "max(0, d(a, p) - d(a, n) + margin) with d the pairwise or cosine distance",
        TRIPLET,
        _triplet_with_distance,
        "(N)",
        params=TripletDistanceParams,
    ),
]
