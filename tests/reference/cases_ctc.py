"""Reference cases: ctc against torch.nn.functional.ctc_loss.

PyTorch's CTC gradient assumes log_softmax inputs, so gradcheck is off; the gradient is still
compared with PyTorch's own.
"""

import torch
import torch.nn.functional as F

from .case import Case


def _ctc(T, C, targets, input_lengths, target_lengths):
    """log_probs (T, N, C) from log_softmax; the integer roles as given."""

    def make(g, dtype):
        n = len(input_lengths)
        return {
            "log_probs": torch.randn(T, n, C, generator=g, dtype=dtype).log_softmax(2),
            "targets": torch.tensor(targets),
            "input_lengths": torch.tensor(input_lengths),
            "target_lengths": torch.tensor(target_lengths),
        }

    return make


def _reference(t, p, r):
    return F.ctc_loss(t["log_probs"], t["targets"], t["input_lengths"], t["target_lengths"], reduction=r, **p)


def _case(id, params, make, **kw):
    return Case(f"ctc-{id}", "ctc", params, make, _reference, grad_roles=("log_probs",), gradcheck=False, **kw)


PADDED = [[1, 2, 2, 0], [3, 0, 0, 0], [4, 4, 1, 3], [0, 0, 0, 0]]  # entries past each length are padding

CASES = [
    # Target lengths 0 (divided by 1 in the mean), repeated labels, shorter inputs.
    _case("padded", {}, _ctc(8, 5, PADDED, [8, 6, 8, 3], [3, 1, 4, 0])),
    # blank = 2: labels may be 0 but never 2.
    _case("blank2", {"blank": 2}, _ctc(7, 4, [[0, 1, 3], [3, 3, 0]], [7, 7], [3, 2])),
    # Sample 1 needs 3 frames for "1 1" but has 2, sample 2 has more labels than frames: inf, zeroed.
    _case(
        "zero_infinity", {"zero_infinity": True}, _ctc(6, 4, [[1, 2, 3], [1, 1, 0], [2, 3, 1]], [6, 2, 2], [3, 2, 3])
    ),
    # Without zero_infinity on possible alignments, and an empty input (length 0, no labels).
    _case(
        "no_zero_infinity",
        {"zero_infinity": False},
        _ctc(6, 4, [[1, 2, 3], [1, 1, 0], [2, 3, 1]], [6, 3, 0], [3, 2, 0]),
    ),
    # blank = C - 1, labels 0 included, every input at full length.
    _case("blank-last", {"blank": 4}, _ctc(6, 5, [[0, 3, 0], [2, 1, 1]], [6, 6], [3, 3])),
]
