"""Reference cases: l1, mse, smooth_l1, huber against torch.nn.functional."""

import torch
import torch.nn.functional as F

from .case import Case


def _pair(shape):
    def make(g, dtype):
        return {
            "input": torch.randn(*shape, generator=g, dtype=dtype),
            "target": torch.randn(*shape, generator=g, dtype=dtype),
        }

    return make


CASES = [
    Case(
        "l1",
        "l1",
        {},
        _pair((3, 4)),
        lambda t, p, r: F.l1_loss(t["input"], t["target"], reduction=r),
        grad_roles=("input", "target"),
    ),
    Case(
        "mse-3d",
        "mse",
        {},
        _pair((2, 3, 5)),
        lambda t, p, r: F.mse_loss(t["input"], t["target"], reduction=r),
        grad_roles=("input", "target"),
    ),
    Case(
        "mse-1d-nested",
        "mse",
        {},
        _pair((7,)),
        lambda t, p, r: F.mse_loss(t["input"], t["target"], reduction=r),
        nested=("input", "target"),
    ),
    Case(
        "smooth_l1-beta",
        "smooth_l1",
        {"beta": 0.5},
        _pair((4, 6)),
        lambda t, p, r: F.smooth_l1_loss(t["input"], t["target"], reduction=r, beta=p["beta"]),
        grad_roles=("input", "target"),
    ),
    Case(
        "huber-delta",
        "huber",
        {"delta": 0.7},
        _pair((4, 6)),
        lambda t, p, r: F.huber_loss(t["input"], t["target"], reduction=r, delta=p["delta"]),
        grad_roles=("input", "target"),
    ),
]
