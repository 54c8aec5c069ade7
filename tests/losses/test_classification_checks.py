"""The validators of cross_entropy, nll, bce, bce_with_logits, kl_div, poisson_nll and gaussian_nll
(exact messages), their params and shape forms, and a few behaviours the reference table cannot
express (nan means, batchmean of a 0-d input, which params allow batching)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from service.errors import ErrorItem, InvalidInput
from service.losses import catalog, classification
from service.losses.contract import FLOAT, INTEGER, check_shapes
from service.losses.registry import Registry

from .validators import REGISTRY, checked, errors


def shape_error(name, **arrays):
    with pytest.raises(InvalidInput) as exc:
        check_shapes(REGISTRY.get(name).roles, {k: v.shape for k, v in arrays.items()})
    return exc.value.errors


def floats(*shape, value=0.5):
    return np.full(shape, value, dtype=np.float32)


def array(rows, dtype=np.float32):
    return np.asarray(rows, dtype=dtype)


def indices(rows):
    return np.asarray(rows, dtype=np.int64)


def param_error(name, msg):
    return ErrorItem(("loss", "params", name), msg)


def input_error(role, msg):
    return ErrorItem(("inputs", role), msg)


# cross_entropy and nll


def test_cross_entropy_accepts_indices_and_ignored():
    assert errors("cross_entropy", {}, input=floats(2, 3, 2), target=indices([[0, 2], [-100, 1]])) == []
    assert errors("cross_entropy", {"ignore_index": 3}, input=floats(2, 3), target=indices([3, 2])) == []


def test_cross_entropy_class_index_out_of_range():
    got = errors("cross_entropy", {}, input=floats(3, 3), target=indices([0, 1, 3]))
    assert got == [input_error("target", "class index 3 out of range [0, 3) at position (2,)")]


def test_ignore_index_inside_the_classes_is_accepted_and_the_default_is_then_an_error():
    got = errors("nll", {"ignore_index": 1}, input=floats(2, 3, 2), target=indices([[1, 1], [0, -100]]))
    assert got == [input_error("target", "class index -100 out of range [0, 3) at position (1, 1)")]


def test_nll_spatial_position():
    target = indices([[[0, 1], [2, 4]]])
    got = errors("nll", {}, input=floats(1, 4, 2, 2), target=target)
    assert got == [input_error("target", "class index 4 out of range [0, 4) at position (0, 1, 1)")]


@pytest.mark.parametrize("name", ["cross_entropy", "nll"])
def test_class_weight_needs_one_value_per_class(name):
    got = errors(name, {"weight": [1.0, 2.0]}, input=floats(2, 3), target=indices([0, 1]))
    assert got == [param_error("weight", "expected C = 3 values; got 2")]
    assert errors(name, {"weight": [1.0, 2.0, 0.5]}, input=floats(2, 3), target=indices([0, 1])) == []


def test_cross_entropy_reports_index_and_weight_errors_together():
    got = errors("cross_entropy", {"weight": [1.0]}, input=floats(2, 3), target=indices([0, 7]))
    assert [e.text() for e in got] == [
        "inputs.target: class index 7 out of range [0, 3) at position (1,)",
        "loss.params.weight: expected C = 3 values; got 1",
    ]


def test_cross_entropy_target_shape_picks_indices_or_probabilities():
    c = checked("cross_entropy", {}, input=floats(2, 3, 4), target=indices([[0, 1, 2, 0], [1, 1, 1, 1]]))
    assert c.binding.forms["target"].kind == INTEGER
    c = checked("cross_entropy", {}, input=floats(2, 3, 4), target=floats(2, 3, 4))
    assert c.binding.forms["target"].kind == FLOAT


def test_cross_entropy_probabilities_must_lie_in_0_1():
    target = array([[0.2, 0.8, 0.0], [0.5, 1.5, -0.5]])
    got = errors("cross_entropy", {}, input=floats(2, 3), target=target)
    assert got == [input_error("target", "value 1.5 out of range [0, 1] at position (1, 1)")]


def test_cross_entropy_probabilities_refuse_an_ignore_index():
    """PyTorch refuses ignore_index with probability targets (a RuntimeError: it was a 500)."""
    assert errors("cross_entropy", {"ignore_index": 0}, input=floats(2, 3), target=floats(2, 3, value=0.0)) == [
        param_error(
            "ignore_index",
            "applies to class-index targets only; with class probabilities as the target leave it at -100; got 0",
        )
    ]
    assert errors("cross_entropy", {}, input=floats(2, 3), target=floats(2, 3, value=0.0)) == []


def test_cross_entropy_target_shape_error_names_both_forms():
    got = shape_error("cross_entropy", input=floats(2, 3, 4), target=indices([[0, 1, 2], [0, 1, 2]]))
    assert [e.text() for e in got] == [
        "inputs.target: expected shape (N, *) = (2, 4) or (N, C, *) = (2, 3, 4) from input (N, C, *) = (2, 3, 4);"
        " got (2, 3)"
    ]


@pytest.mark.parametrize("value", [-0.1, 1.01])
def test_label_smoothing_must_lie_in_0_1(value):
    with pytest.raises(ValidationError):
        classification.CrossEntropyParams.model_validate({"label_smoothing": value})
    assert classification.CrossEntropyParams.model_validate({"label_smoothing": 1}).label_smoothing == 1.0


@pytest.mark.parametrize("weight", [[1.0, float("nan")], [1.0, float("inf")]])
def test_class_weight_must_be_finite(weight):
    with pytest.raises(ValidationError):
        classification.NLLParams.model_validate({"weight": weight})


def test_ignore_index_must_fit_int64():
    with pytest.raises(ValidationError):
        classification.NLLParams.model_validate({"ignore_index": 2**63})


def test_mean_over_only_ignored_targets_is_nan_as_in_pytorch():
    loss = REGISTRY.get("cross_entropy")
    t = {"input": torch.randn(2, 3, dtype=torch.float64), "target": torch.tensor([-100, -100])}
    params = loss.params.model_validate({"label_smoothing": 0.1})
    got = loss.reduce(loss.forward(t, params), t, params, "mean")
    assert got.isnan() and F.cross_entropy(t["input"], t["target"], label_smoothing=0.1).isnan()


def test_only_probability_targets_are_differentiable():
    assert REGISTRY.get("cross_entropy").role("target").differentiable  # prepare grants it to the float form only
    assert not REGISTRY.get("nll").role("target").differentiable


# bce and bce_with_logits


def test_bce_input_and_target_must_be_probabilities():
    got = errors("bce", {}, input=array([[0.5, 1.25], [0.0, 1.0]]), target=array([[0.0, 1.0], [-0.5, 0.5]]))
    assert [e.text() for e in got] == [
        "inputs.input: value 1.25 out of range [0, 1] at position (0, 1)",
        "inputs.target: value -0.5 out of range [0, 1] at position (1, 0)",
    ]


def test_bce_with_logits_takes_any_logits_but_probability_targets():
    assert errors("bce_with_logits", {}, input=array([-30.0, 40.0]), target=array([0.0, 1.0])) == []
    got = errors("bce_with_logits", {}, input=floats(2), target=array([0.0, 2.0]))
    assert got == [input_error("target", "value 2.0 out of range [0, 1] at position (1,)")]


@pytest.mark.parametrize("weight", [2.0, [2.0], [1.0, 2.0, 3.0, 4.0], [[1.0], [2.0]], [[1.0, 2.0, 3.0, 4.0]]])
def test_bce_weight_broadcasting_to_the_input_is_accepted(weight):
    assert errors("bce", {"weight": weight}, input=floats(2, 4), target=floats(2, 4)) == []


@pytest.mark.parametrize(
    ("weight", "got"),
    [
        ([1.0, 2.0, 3.0], "(3,)"),
        ([[1.0, 2.0, 3.0, 4.0]] * 3, "(3, 4)"),
        ([[[1.0]], [[2.0]]], "(2, 1, 1)"),  # broadcasts, but would grow the input
        ([[1.0], [2.0, 3.0]], "a ragged array"),
    ],
)
def test_bce_weight_must_broadcast_to_the_input(weight, got):
    msg = f"expected a shape that broadcasts to input (2, 4); got {got}"
    assert errors("bce", {"weight": weight}, input=floats(2, 4), target=floats(2, 4)) == [param_error("weight", msg)]


def test_bce_with_logits_checks_weight_and_pos_weight():
    params = {"weight": [[1.0], [2.0], [3.0]], "pos_weight": [[[1.0, 2.0]]]}
    got = errors("bce_with_logits", params, input=floats(2, 4), target=floats(2, 4))
    assert [e.text() for e in got] == [
        "loss.params.weight: expected a shape that broadcasts to input (2, 4); got (3, 1)",
        "loss.params.pos_weight: expected a shape that broadcasts to input (2, 4); got (1, 1, 2)",
    ]
    ok = {"weight": [[1.0], [2.0]], "pos_weight": [1.0, 2.0, 3.0, 4.0]}
    assert errors("bce_with_logits", ok, input=floats(2, 4), target=floats(2, 4)) == []


@pytest.mark.parametrize("weight", [[1.0, float("nan")], [1.0, "a"], True, {"a": 1.0}])
def test_tensor_weight_must_hold_finite_numbers(weight):
    with pytest.raises(ValidationError) as exc:
        classification.BCEParams.model_validate({"weight": weight})
    assert [e["loc"] for e in exc.value.errors()] == [("weight",)]


@pytest.mark.parametrize(
    ("params", "shape", "batchable"),
    [
        ({}, (2, 2), True),
        ({"weight": 2.0}, (2, 2), True),
        ({"weight": [[1.0, 2.0]]}, (2, 2), True),
        ({"pos_weight": [1.0, 2.0]}, (2, 2), True),  # (C,) against (N, C): the same for any N
        ({"pos_weight": [1.0, 2.0]}, (2,), False),  # (C,) on a 1-d input is (N,)
        ({"weight": [[1.0], [2.0]]}, (2, 2), False),
    ],
)
def test_bce_with_logits_batches_only_weights_that_cannot_span_the_batch(params, shape, batchable):
    loss = REGISTRY.get("bce_with_logits")
    arrays = {"input": np.zeros(shape), "target": np.zeros(shape)}
    assert loss.batchable(loss.params.model_validate(params), arrays) is batchable


# kl_div


def test_kl_div_target_must_be_nonnegative_unless_log_target():
    target = array([[0.5, 0.5], [-0.5, 1.5]])
    got = errors("kl_div", {}, input=floats(2, 2), target=target)
    assert got == [input_error("target", "value -0.5 is below 0 at position (1, 0)")]
    assert errors("kl_div", {"log_target": True}, input=floats(2, 2), target=target) == []


def test_kl_div_batchmean_of_a_0d_input_is_the_sum_as_in_pytorch():
    loss = REGISTRY.get("kl_div")
    t = {"input": torch.tensor(-0.7, dtype=torch.float64), "target": torch.tensor(0.3, dtype=torch.float64)}
    params = loss.params.model_validate({})
    got = loss.reduce(loss.forward(t, params), t, params, "batchmean")
    torch.testing.assert_close(got, F.kl_div(t["input"], t["target"], reduction="batchmean"))


def test_kl_div_offers_batchmean():
    assert REGISTRY.get("kl_div").reductions == ("mean", "sum", "none", "batchmean")


# poisson_nll


def test_poisson_nll_target_must_be_nonnegative_when_full():
    target = array([[1.0, 0.0], [3.0, -2.0]])
    assert errors("poisson_nll", {}, input=floats(2, 2), target=target) == []
    got = errors("poisson_nll", {"full": True}, input=floats(2, 2), target=target)
    assert got == [input_error("target", "value -2.0 is below 0 at position (1, 1)")]


def test_poisson_nll_rates_must_be_nonnegative_unless_log_input():
    rates = array([0.5, -0.25, 0.0])
    assert errors("poisson_nll", {}, input=rates, target=floats(3)) == []
    got = errors("poisson_nll", {"log_input": False}, input=rates, target=floats(3))
    assert got == [input_error("input", "value -0.25 is below 0 at position (1,)")]


@pytest.mark.parametrize("params", [{"eps": 0.0}, {"eps": -1e-8}, {"eps": float("inf")}])
@pytest.mark.parametrize("name", ["poisson_nll", "gaussian_nll"])
def test_eps_must_be_positive_and_finite(name, params):
    with pytest.raises(ValidationError):
        REGISTRY.get(name).params.model_validate(params)


# gaussian_nll


@pytest.mark.parametrize("var_shape", [(4, 2, 3), (4, 2, 1), (4, 2)])
def test_gaussian_nll_accepts_each_var_form(var_shape):
    got = errors("gaussian_nll", {}, input=floats(4, 2, 3), target=floats(4, 2, 3), var=floats(*var_shape))
    assert got == []


def test_gaussian_nll_var_must_be_nonnegative():
    var = array([[0.5, 0.0], [2.0, -1.0]])
    got = errors("gaussian_nll", {}, input=floats(2, 2), target=floats(2, 2), var=var)
    assert got == [input_error("var", "value -1.0 is below 0 at position (1, 1)")]


def test_gaussian_nll_var_shape_error_lists_the_forms():
    got = shape_error("gaussian_nll", input=floats(4, 3), target=floats(4, 3), var=floats(4, 2))
    assert [e.text() for e in got] == [
        "inputs.var: expected shape (N, *, D) = (4, 3) or (N, *, 1) = (4, 1) or (N, *) = (4,)"
        " from input (N, *, D) = (4, 3); got (4, 2)"
    ]


def test_gaussian_nll_needs_a_last_dimension():
    got = shape_error("gaussian_nll", input=floats(5), target=floats(5), var=floats(5))
    assert [e.text() for e in got] == ["inputs.input: expected shape (N, *, D) (at least 2 dimensions); got (5,)"]


def test_gaussian_nll_elementwise_has_the_input_shape_for_every_var_form():
    loss = REGISTRY.get("gaussian_nll")
    params = loss.params.model_validate({})
    x = torch.zeros(4, 2, 3)
    for var in (torch.ones(4, 2, 3), torch.ones(4, 2, 1), torch.ones(4, 2)):
        assert loss.forward({"input": x, "target": x, "var": var}, params).shape == (4, 2, 3)


# names


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("CrossEntropyLoss", "cross_entropy"),
        ("NLLLoss", "nll"),
        ("nll_loss", "nll"),
        ("BCELoss", "bce"),
        ("binary_cross_entropy", "bce"),
        ("BCEWithLogitsLoss", "bce_with_logits"),
        ("binary_cross_entropy_with_logits", "bce_with_logits"),
        ("KLDivLoss", "kl_div"),
        ("PoissonNLLLoss", "poisson_nll"),
        ("poisson_nll_loss", "poisson_nll"),
        ("GaussianNLLLoss", "gaussian_nll"),
        ("gaussian_nll_loss", "gaussian_nll"),
    ],
)
def test_aliases(alias, name):
    assert REGISTRY.get(alias).name == name


def test_names_do_not_collide_with_the_rest_of_the_catalog():
    others = [loss for loss in catalog.ALL_LOSSES if all(loss is not ours for ours in classification.LOSSES)]
    assert len(Registry(others + classification.LOSSES)) == len(others) + len(classification.LOSSES)
