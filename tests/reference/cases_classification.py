"""Reference cases: cross_entropy, nll, bce, bce_with_logits, kl_div, poisson_nll, gaussian_nll
against torch.nn.functional."""

import warnings

import torch
import torch.nn.functional as F

from .case import Case

ALL = ("mean", "sum", "none")


def _make(**parts):
    """make(g, dtype) -> {role: part(g, dtype)}, in the order given."""
    return lambda g, dtype: {name: part(g, dtype) for name, part in parts.items()}


def _randn(*shape, then=None, scale=1.0):
    def part(g, dtype):
        x = torch.randn(*shape, generator=g, dtype=dtype) * scale
        return then(x) if then else x

    return part


def _rand(*shape, low=0.0, high=1.0):
    return lambda g, dtype: low + (high - low) * torch.rand(*shape, generator=g, dtype=dtype)


def _classes(classes, *shape, ignore=None):
    """Class indices, every third one set to ``ignore`` when given."""

    def part(g, dtype):
        t = torch.randint(0, classes, shape, generator=g)
        if ignore is not None:
            t.view(-1)[::3] = ignore
        return t

    return part


def _counts(*shape):
    return lambda g, dtype: torch.poisson(torch.full(shape, 2.0, dtype=dtype), generator=g)


def _probs(dim):
    return lambda x: x.softmax(dim)


def _log_probs(dim):
    return lambda x: x.log_softmax(dim)


def _positive(x):
    return 0.5 * x.exp() + 0.1


def _kl_div(*args, **kw):
    with warnings.catch_warnings():  # reduction="mean" warns that it is not "batchmean"
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(*args, **kw)


def _ref(fn, *roles, lists=()):
    """reference(t, p, r) = fn(*t[roles], reduction=r, **p), the params named in ``lists`` as tensors."""

    def reference(t, p, r):
        x = t["input"]
        kw = {k: torch.tensor(v, dtype=x.dtype) if k in lists else v for k, v in p.items()}
        return fn(*(t[name] for name in roles), reduction=r, **kw)

    return reference


CE = _ref(F.cross_entropy, "input", "target", lists=("weight",))
NLL = _ref(F.nll_loss, "input", "target", lists=("weight",))
BCE = _ref(F.binary_cross_entropy, "input", "target", lists=("weight",))
BCE_LOGITS = _ref(F.binary_cross_entropy_with_logits, "input", "target", lists=("weight", "pos_weight"))
KL = _ref(_kl_div, "input", "target")
POISSON = _ref(F.poisson_nll_loss, "input", "target")
GAUSSIAN = _ref(F.gaussian_nll_loss, "input", "target", "var")
W5 = [0.5, 1.0, 2.0, 0.25, 1.5]
W3 = [2.0, 0.5, 1.0]
BOTH = ("input", "target")

CASES = [
    # cross_entropy with class indices
    Case("cross_entropy-indices", "cross_entropy", {}, _make(input=_randn(6, 5), target=_classes(5, 6)), CE),
    Case(
        "cross_entropy-weight-ignore",
        "cross_entropy",
        {"weight": W5},
        _make(input=_randn(7, 5), target=_classes(5, 7, ignore=-100)),
        CE,
    ),
    Case(
        "cross_entropy-ignore-in-range",
        "cross_entropy",
        {"weight": W5, "ignore_index": 2},
        _make(input=_randn(7, 5), target=_classes(5, 7, ignore=2)),
        CE,
    ),
    Case(
        "cross_entropy-smoothing-ignore",
        "cross_entropy",
        {"label_smoothing": 0.2, "ignore_index": -1},
        _make(input=_randn(7, 5), target=_classes(5, 7, ignore=-1)),
        CE,
    ),
    Case(
        "cross_entropy-smoothing-weight-ignore",
        "cross_entropy",
        {"weight": W5, "label_smoothing": 0.1},
        _make(input=_randn(7, 5), target=_classes(5, 7, ignore=-100)),
        CE,
    ),
    Case(
        "cross_entropy-spatial",
        "cross_entropy",
        {"weight": W3, "ignore_index": 255, "label_smoothing": 0.05},
        _make(input=_randn(2, 3, 4, 5), target=_classes(3, 2, 4, 5, ignore=255)),
        CE,
    ),
    # cross_entropy with class probabilities
    Case(
        "cross_entropy-probs",
        "cross_entropy",
        {},
        _make(input=_randn(4, 5), target=_randn(4, 5, then=_probs(1))),
        CE,
        grad_roles=BOTH,
    ),
    Case(
        "cross_entropy-probs-spatial-smoothing-weight",
        "cross_entropy",
        {"weight": W3, "label_smoothing": 0.15},
        _make(input=_randn(2, 3, 2, 3), target=_randn(2, 3, 2, 3, then=_probs(1))),
        CE,
        grad_roles=BOTH,
    ),
    # nll
    Case("nll", "nll", {}, _make(input=_randn(6, 4, then=_log_probs(1)), target=_classes(4, 6)), NLL),
    Case(
        "nll-spatial-weight-ignore",
        "nll",
        {"weight": W3, "ignore_index": -1},
        _make(input=_randn(2, 3, 3, 2, then=_log_probs(1)), target=_classes(3, 2, 3, 2, ignore=-1)),
        NLL,
    ),
    # bce (soft targets inside (0, 1): gradcheck steps must not leave [0, 1])
    Case(
        "bce",
        "bce",
        {},
        _make(input=_randn(3, 4, then=torch.sigmoid), target=_rand(3, 4, low=0.1, high=0.9)),
        BCE,
        grad_roles=BOTH,
    ),
    Case(
        "bce-weight-row",
        "bce",
        {"weight": [0.5, 1.0, 2.0, 3.0]},
        _make(input=_randn(3, 4, then=torch.sigmoid), target=_rand(3, 4, low=0.1, high=0.9)),
        BCE,
        grad_roles=BOTH,
    ),
    Case(
        "bce-weight-full-3d",
        "bce",
        {"weight": [[[1.0, 2.0]], [[0.5, 0.0]]]},
        _make(input=_randn(2, 3, 2, then=torch.sigmoid), target=_rand(2, 3, 2, low=0.1, high=0.9)),
        BCE,
        grad_roles=BOTH,
    ),
    # bce_with_logits
    Case(
        "bce_with_logits",
        "bce_with_logits",
        {},
        _make(input=_randn(3, 4, scale=2), target=_rand(3, 4)),
        BCE_LOGITS,
        grad_roles=BOTH,
    ),
    Case(
        "bce_with_logits-hard-labels-pos_weight",
        "bce_with_logits",
        {"pos_weight": [1.0, 2.0, 0.5, 3.0]},
        _make(input=_randn(5, 4, scale=2), target=lambda g, d: torch.randint(0, 2, (5, 4), generator=g).to(d)),
        BCE_LOGITS,
        grad_roles=BOTH,
    ),
    Case(
        "bce_with_logits-weight-pos_weight-spatial",
        "bce_with_logits",
        {"weight": [[0.5], [1.0], [2.0]], "pos_weight": [[[1.5]], [[0.5]], [[2.0]]]},
        _make(input=_randn(2, 3, 3, 2), target=_rand(2, 3, 3, 2)),
        BCE_LOGITS,
        grad_roles=BOTH,
    ),
    # kl_div (targets strictly positive: at 0 PyTorch's target gradient is nan)
    Case(
        "kl_div",
        "kl_div",
        {},
        _make(input=_randn(3, 5, then=_log_probs(1)), target=_randn(3, 5, then=_probs(1))),
        KL,
        reductions=(*ALL, "batchmean"),
        grad_roles=BOTH,
    ),
    Case(
        "kl_div-log_target",
        "kl_div",
        {"log_target": True},
        _make(input=_randn(2, 4, 3, then=_log_probs(1)), target=_randn(2, 4, 3, then=_log_probs(1))),
        KL,
        reductions=(*ALL, "batchmean"),
        grad_roles=BOTH,
    ),
    # poisson_nll
    Case("poisson_nll", "poisson_nll", {}, _make(input=_randn(4, 5), target=_counts(4, 5)), POISSON, grad_roles=BOTH),
    Case(
        "poisson_nll-rates-eps",
        "poisson_nll",
        {"log_input": False, "eps": 1e-3},
        _make(input=_randn(4, 5, then=_positive), target=_counts(4, 5)),
        POISSON,
        grad_roles=BOTH,
    ),
    # full=True: targets away from 0 (nan target gradient in PyTorch) and from 1 (where the term switches on)
    Case(
        "poisson_nll-full",
        "poisson_nll",
        {"full": True},
        _make(input=_randn(4, 5), target=_rand(4, 5, low=0.05, high=4.0)),
        POISSON,
        grad_roles=BOTH,
    ),
    Case(
        "poisson_nll-full-rates",
        "poisson_nll",
        {"full": True, "log_input": False},
        _make(input=_randn(3, 4, then=_positive), target=_rand(3, 4, low=0.05, high=4.0)),
        POISSON,
        grad_roles=BOTH,
    ),
    # gaussian_nll, one case per form of var
    Case(
        "gaussian_nll-var-per-element",
        "gaussian_nll",
        {},
        _make(input=_randn(4, 3), target=_randn(4, 3), var=_randn(4, 3, then=_positive)),
        GAUSSIAN,
        grad_roles=("input", "target", "var"),
    ),
    Case(
        "gaussian_nll-var-last-dim-1-full",
        "gaussian_nll",
        {"full": True},
        _make(input=_randn(3, 2, 4), target=_randn(3, 2, 4), var=_randn(3, 2, 1, then=_positive)),
        GAUSSIAN,
        grad_roles=("input", "target", "var"),
    ),
    Case(
        "gaussian_nll-var-without-last-dim-eps",
        "gaussian_nll",
        {"eps": 1e-3},
        _make(input=_randn(5, 3), target=_randn(5, 3), var=_randn(5, then=_positive)),
        GAUSSIAN,
        grad_roles=("input", "target", "var"),
    ),
]
