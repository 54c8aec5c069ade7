"""Reference cases: the margin and embedding losses against torch.nn.functional."""

import torch
import torch.nn.functional as F

from .case import Case


def _randn(g, dtype, *shape):
    return torch.randn(*shape, generator=g, dtype=dtype)


def _signs(g, dtype, *shape):
    return torch.randint(0, 2, shape, generator=g).to(dtype) * 2 - 1


def _with_labels(shape, label_shape=None, *names):
    """``names`` (default input) random normal of ``shape``, target labels 1 or -1."""

    def make(g, dtype):
        t = {n: _randn(g, dtype, *shape) for n in names or ("input",)}
        t["target"] = _signs(g, dtype, *(label_shape or shape))
        return t

    return make


def _scores(n, c, target):
    def make(g, dtype):
        return {"input": _randn(g, dtype, n, c), "target": target(g, dtype)}

    return make


def _triplet(n, d):
    def make(g, dtype):
        return {k: _randn(g, dtype, n, d) for k in ("anchor", "positive", "negative")}

    return make


def _weight(p, like):
    w = p.get("weight")
    return None if w is None else torch.as_tensor(w, dtype=like.dtype)


def _ref_soft_margin(t, p, r):
    return F.soft_margin_loss(t["input"], t["target"], reduction=r)


def _ref_multilabel_soft_margin(t, p, r):
    return F.multilabel_soft_margin_loss(t["input"], t["target"], weight=_weight(p, t["input"]), reduction=r)


def _ref_multilabel_margin(t, p, r):
    return F.multilabel_margin_loss(t["input"], t["target"], reduction=r)


def _ref_multi_margin(t, p, r):
    kw = {k: v for k, v in p.items() if k != "weight"}
    return F.multi_margin_loss(t["input"], t["target"], weight=_weight(p, t["input"]), reduction=r, **kw)


def _ref_hinge(t, p, r):
    return F.hinge_embedding_loss(t["input"], t["target"], reduction=r, **p)


def _ref_ranking(t, p, r):
    return F.margin_ranking_loss(t["input1"], t["input2"], t["target"], reduction=r, **p)


def _ref_cosine(t, p, r):
    return F.cosine_embedding_loss(t["input1"], t["input2"], t["target"], reduction=r, **p)


def _ref_triplet(t, p, r):
    return F.triplet_margin_loss(t["anchor"], t["positive"], t["negative"], reduction=r, **p)


def _ref_triplet_distance(t, p, r):
    kw = dict(p)
    if kw.pop("distance", "pairwise") == "cosine":
        kw["distance_function"] = lambda x, y: 1 - F.cosine_similarity(x, y)
    else:
        kw["distance_function"] = torch.nn.PairwiseDistance()
    return F.triplet_margin_with_distance_loss(t["anchor"], t["positive"], t["negative"], reduction=r, **kw)


LABEL_LISTS = [[3, 0, -1, 1, 1], [1, -1, -1, -1, 4], [0, 1, 2, 4, -1], [-1, 2, 2, 2, 2]]  # -1 ends a list
PAIR = ("input1", "input2")
TRIPLET = ("anchor", "positive", "negative")
W4 = [0.5, 1.0, 2.0, 0.25]

CASES = [
    Case("soft_margin", "soft_margin", {}, _with_labels((3, 4)), _ref_soft_margin),
    Case(
        "soft_margin-3d-nested",
        "soft_margin",
        {},
        _with_labels((2, 3, 2)),
        _ref_soft_margin,
        nested=("input", "target"),
    ),
    Case(
        "multilabel_soft_margin",
        "multilabel_soft_margin",
        {},
        _scores(3, 4, lambda g, dt: torch.randint(0, 2, (3, 4), generator=g).to(dt)),
        _ref_multilabel_soft_margin,
    ),
    Case(
        "multilabel_soft_margin-weight-soft",
        "multilabel_soft_margin",
        {"weight": W4},
        _scores(3, 4, lambda g, dt: torch.rand(3, 4, generator=g, dtype=dt)),
        _ref_multilabel_soft_margin,
        grad_roles=("input", "target"),
    ),
    Case(
        "multilabel_margin",
        "multilabel_margin",
        {},
        _scores(4, 5, lambda g, dt: torch.tensor(LABEL_LISTS)),
        _ref_multilabel_margin,
    ),
    Case(
        "multi_margin",
        "multi_margin",
        {},
        _scores(5, 4, lambda g, dt: torch.randint(0, 4, (5,), generator=g)),
        _ref_multi_margin,
    ),
    Case(
        "multi_margin-p2-margin-weight",
        "multi_margin",
        {"p": 2, "margin": 0.7, "weight": W4},
        _scores(5, 4, lambda g, dt: torch.randint(0, 4, (5,), generator=g)),
        _ref_multi_margin,
    ),
    Case("hinge_embedding", "hinge_embedding", {}, _with_labels((3, 4)), _ref_hinge),
    Case("hinge_embedding-margin", "hinge_embedding", {"margin": 2.0}, _with_labels((6,)), _ref_hinge),
    Case("margin_ranking", "margin_ranking", {}, _with_labels((5,), None, *PAIR), _ref_ranking, grad_roles=PAIR),
    Case(
        "margin_ranking-margin",
        "margin_ranking",
        {"margin": 0.5},
        _with_labels((5,), None, *PAIR),
        _ref_ranking,
        grad_roles=PAIR,
    ),
    Case("cosine_embedding", "cosine_embedding", {}, _with_labels((4, 3), (4,), *PAIR), _ref_cosine, grad_roles=PAIR),
    Case(
        "cosine_embedding-margin",
        "cosine_embedding",
        {"margin": -0.2},
        _with_labels((4, 3), (4,), *PAIR),
        _ref_cosine,
        grad_roles=PAIR,
    ),
    Case("triplet_margin", "triplet_margin", {}, _triplet(4, 3), _ref_triplet, grad_roles=TRIPLET),
    Case(
        "triplet_margin-p1-eps-margin",
        "triplet_margin",
        {"p": 1.0, "eps": 1e-3, "margin": 2.5},
        _triplet(4, 3),
        _ref_triplet,
        grad_roles=TRIPLET,
    ),
    Case(
        "triplet_margin-swap-p3",
        "triplet_margin",
        {"swap": True, "p": 3.0, "margin": 1.5},
        _triplet(5, 3),
        _ref_triplet,
        grad_roles=TRIPLET,
    ),
    Case(
        "triplet_margin_with_distance",
        "triplet_margin_with_distance",
        {},
        _triplet(4, 3),
        _ref_triplet_distance,
        grad_roles=TRIPLET,
    ),
    Case(
        "triplet_margin_with_distance-cosine-swap",
        "triplet_margin_with_distance",
        {"distance": "cosine", "swap": True, "margin": 0.8},
        _triplet(5, 3),
        _ref_triplet_distance,
        grad_roles=TRIPLET,
    ),
    Case(
        "triplet_margin_with_distance-pairwise-swap",
        "triplet_margin_with_distance",
        {"distance": "pairwise", "swap": True, "margin": 2.0},
        _triplet(5, 3),
        _ref_triplet_distance,
        grad_roles=TRIPLET,
    ),
]
