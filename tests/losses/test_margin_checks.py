"""Value checks of the margin and CTC losses, on hand-built ``Checked`` requests."""

import numpy as np
import pytest
from pydantic import ValidationError

from service.errors import ErrorItem

from .validators import REGISTRY, errors

F32, I64 = np.float32, np.int64


def at(*loc):
    return lambda msg: ErrorItem(loc, msg)


TARGET, WEIGHT = at("inputs", "target"), at("loss", "params", "weight")
TARGETS = at("inputs", "targets")


# -- labels 1 or -1 -------------------------------------------------------------------------------

PLUS_MINUS = {
    "soft_margin": dict(input=np.zeros((2, 3), F32)),
    "hinge_embedding": dict(input=np.zeros((2, 3), F32)),
    "margin_ranking": dict(input1=np.zeros(2, F32), input2=np.zeros(2, F32)),
    "cosine_embedding": dict(input1=np.zeros((2, 4), F32), input2=np.zeros((2, 4), F32)),
}


@pytest.mark.parametrize("name", PLUS_MINUS)
def test_plus_minus_one_labels(name):
    inputs = PLUS_MINUS[name]
    shape = (2, 3) if "input" in inputs else (2,)
    good = np.where(np.arange(np.prod(shape)).reshape(shape) % 2 == 0, 1, -1).astype(F32)
    assert errors(name, target=good, **inputs) == []
    bad = good.copy()
    bad.flat[-1] = 0
    where = "(1, 2)" if len(shape) == 2 else "(1,)"
    assert errors(name, target=bad, **inputs) == [TARGET(f"expected 1 or -1; got 0.0 at position {where}")]


def test_plus_minus_one_reports_the_first_bad_value():
    target = np.array([[1, 1, 0.5], [2, -1, 1]], F32)
    assert errors("soft_margin", input=np.zeros((2, 3), F32), target=target) == [
        TARGET("expected 1 or -1; got 0.5 at position (0, 2)")
    ]


# -- class indices and per-class weights ----------------------------------------------------------


def test_multi_margin_class_indices_and_weight():
    scores = np.zeros((3, 4), F32)
    assert errors("multi_margin", {"weight": [1, 2, 3, 4]}, input=scores, target=np.array([0, 3, 1])) == []
    assert errors("multi_margin", {"weight": [1, 2, 3]}, input=scores, target=np.array([0, 4, -1])) == [
        TARGET("class index 4 out of range [0, 4) at position (1,)"),
        WEIGHT("expected C = 4 values; got 3"),
    ]


def test_multilabel_margin_lists_end_with_minus_one():
    scores = np.zeros((2, 4), F32)
    # PyTorch's own example: -1 ends the list, the 1 after it is ignored but must still be in range.
    assert errors("multilabel_margin", input=scores, target=np.array([[3, 0, -1, 1], [-1, -1, -1, -1]])) == []
    assert errors("multilabel_margin", input=scores, target=np.array([[3, 0, -1, 1], [0, -1, -2, 9]])) == [
        TARGET("class index -2 out of range [0, 4) (or -1 to end the list) at position (1, 2)")
    ]
    assert errors("multilabel_margin", input=scores, target=np.array([[4, 0, -1, 1], [0, 0, 0, 0]])) == [
        TARGET("class index 4 out of range [0, 4) (or -1 to end the list) at position (0, 0)")
    ]


def test_multilabel_soft_margin_labels_and_weight():
    scores = np.zeros((2, 3), F32)
    assert errors("multilabel_soft_margin", input=scores, target=np.array([[0, 1, 0.25], [1, 1, 0]], F32)) == []
    target = np.array([[0, 1, 1], [1.5, 0, -1]], F32)
    got = errors("multilabel_soft_margin", {"weight": [1, 2]}, input=scores, target=target)
    assert got == [TARGET("value 1.5 out of range [0, 1] at position (1, 0)"), WEIGHT("expected C = 3 values; got 2")]


# -- params PyTorch refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [
        ("multi_margin", {"p": 3}),
        ("multi_margin", {"weight": [1.0, float("inf")]}),
        ("triplet_margin", {"margin": 0.0}),
        ("triplet_margin", {"p": 0.0}),
        ("triplet_margin_with_distance", {"margin": -1.0}),
        ("triplet_margin_with_distance", {"distance": "manhattan"}),
        ("ctc", {"blank": -1}),
        ("hinge_embedding", {"margin": float("nan")}),
        ("soft_margin", {"margin": 1.0}),
    ],
)
def test_params_refused(name, params):
    with pytest.raises(ValidationError):
        REGISTRY.get(name).params.model_validate(params)


@pytest.mark.parametrize(
    "alias, name",
    [
        ("CTCLoss", "ctc"),
        ("ctc_loss", "ctc"),
        ("MultiLabelSoftMarginLoss", "multilabel_soft_margin"),
        ("multilabel_margin_loss", "multilabel_margin"),
        ("MultiMarginLoss", "multi_margin"),
        ("TripletMarginWithDistanceLoss", "triplet_margin_with_distance"),
        ("CosineEmbeddingLoss", "cosine_embedding"),
    ],
)
def test_aliases(alias, name):
    assert REGISTRY.get(alias).name == name


# -- ctc ------------------------------------------------------------------------------------------


def ctc_errors(params=None, T=6, C=5, targets=((1, 2, 0), (3, 3, 4)), input_lengths=(6, 4), target_lengths=(2, 3)):
    n = len(input_lengths)
    return errors(
        "ctc",
        params,
        log_probs=np.zeros((T, n, C), F32),
        targets=np.array(targets, I64).reshape(n, -1),
        input_lengths=np.array(input_lengths, I64),
        target_lengths=np.array(target_lengths, I64),
    )


def test_ctc_valid():
    assert ctc_errors() == []
    # Padding past each length is never read; a length 0 needs nothing; more labels than frames is an
    # impossible alignment, which PyTorch scores as inf (or 0 with zero_infinity), not an error.
    assert ctc_errors(targets=((0, -7, 99), (1, 2, 3)), input_lengths=(0, 2), target_lengths=(0, 3)) == []
    assert ctc_errors({"blank": 4}, targets=((0, 1, 4), (3, 3, 0)), target_lengths=(2, 3)) == []


def test_ctc_blank_out_of_range():
    assert ctc_errors({"blank": 5}, targets=((1, 2, 0), (3, 3, 4))) == [
        ErrorItem(("loss", "params", "blank"), "class index 5 out of range [0, 5) (C from log_probs)")
    ]
    # A label equal to an out-of-range blank is reported once, as out of range.
    assert ctc_errors({"blank": 5}, targets=((1, 5, 0), (3, 3, 4))) == [
        ErrorItem(("loss", "params", "blank"), "class index 5 out of range [0, 5) (C from log_probs)"),
        TARGETS("class index 5 out of range [0, 5) at position (0, 1)"),
    ]


def test_ctc_lengths():
    assert ctc_errors(targets=((1, 2, 1), (3, 3, 4)), input_lengths=(7, -1), target_lengths=(4, 3)) == [
        ErrorItem(("inputs", "input_lengths"), "value 7 out of range [0, 6] at position (0,)"),
        ErrorItem(("inputs", "target_lengths"), "value 4 out of range [0, 3] at position (0,)"),
    ]
    assert ctc_errors(target_lengths=(-1, 3)) == [
        ErrorItem(("inputs", "target_lengths"), "value -1 out of range [0, 3] at position (0,)")
    ]


def test_ctc_labels_within_lengths():
    assert ctc_errors(targets=((1, 5, 0), (3, -1, 4))) == [
        TARGETS("class index 5 out of range [0, 5) at position (0, 1)"),
    ]
    assert ctc_errors(targets=((1, 2, 0), (3, 0, 4))) == [
        TARGETS("label 0 is the blank (blank = 0), not a target label at position (1, 1)"),
    ]
    assert ctc_errors({"blank": 3}, targets=((1, 2, 0), (7, 3, 4))) == [
        TARGETS("class index 7 out of range [0, 5) at position (1, 0)"),
        TARGETS("label 3 is the blank (blank = 3), not a target label at position (1, 1)"),
    ]
