"""The focal, sigmoid_focal and dice validators (exact messages), their params, and a few
behaviours the reference table cannot express: focal with gamma 0 is cross entropy, and dice agrees
with MONAI's own ``to_onehot_y`` path."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from service.errors import ErrorItem
from service.losses import dice, focal
from service.losses.contract import FLOAT, INTEGER

from .validators import REGISTRY, checked, errors


def logits(*shape):
    return np.zeros(shape, dtype=np.float32)


def indices(rows):
    return np.asarray(rows, dtype=np.int64)


def param_error(name, msg):
    return ErrorItem(("loss", "params", name), msg)


def target_error(msg):
    return ErrorItem(("inputs", "target"), msg)


# focal


def test_focal_accepts_indices_and_ignored():
    assert errors("focal", {}, input=logits(2, 3, 2), target=indices([[0, 2], [-100, 1]])) == []
    assert errors("focal", {"ignore_index": 3}, input=logits(2, 3), target=indices([3, 2])) == []


def test_focal_class_index_out_of_range():
    got = errors("focal", {}, input=logits(2, 3, 2), target=indices([[0, 2], [1, 3]]))
    assert got == [target_error("class index 3 out of range [0, 3) at position (1, 1)")]


def test_focal_negative_index_is_not_ignored_unless_it_is_ignore_index():
    got = errors("focal", {"ignore_index": 5}, input=logits(2, 3), target=indices([-100, 1]))
    assert got == [target_error("class index -100 out of range [0, 3) at position (0,)")]


def test_focal_alpha_length():
    got = errors("focal", {"alpha": [0.5, 0.5]}, input=logits(2, 3), target=indices([0, 1]))
    assert got == [param_error("alpha", "expected C = 3 values; got 2")]


@pytest.mark.parametrize(
    "params", [{"gamma": -1.0}, {"alpha": [0.5, -0.1]}, {"alpha": [float("inf")]}, {"ignore_index": 1.5}, {"beta": 1}]
)
def test_focal_params_refused(params):
    with pytest.raises(ValidationError):
        focal.FocalParams.model_validate(params)


def test_focal_gamma0_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (4, 3), generator=g)
    t[0, 1] = t[2, 2] = -100
    loss = REGISTRY.get("focal")
    params = loss.params.model_validate({"gamma": 0.0})
    el = loss.forward({"input": x, "target": t}, params)
    torch.testing.assert_close(el, F.cross_entropy(x, t, reduction="none"), rtol=1e-12, atol=1e-12)
    for reduction in ("mean", "sum"):
        got = loss.reduce(el, {"input": x, "target": t}, params, reduction)
        torch.testing.assert_close(got, F.cross_entropy(x, t, reduction=reduction), rtol=1e-12, atol=1e-12)
    alpha = [0.5, 1.0, 2.0, 0.25, 1.5]
    weighted = loss.forward({"input": x, "target": t}, loss.params.model_validate({"gamma": 0.0, "alpha": alpha}))
    want = F.cross_entropy(x, t, weight=torch.tensor(alpha, dtype=x.dtype), reduction="none")
    torch.testing.assert_close(weighted, want, rtol=1e-12, atol=1e-12)


def test_focal_mean_of_nothing_is_nan_like_cross_entropy():
    x, t = torch.randn(2, 3, dtype=torch.float64), torch.full((2,), -100)
    loss = REGISTRY.get("focal")
    params = loss.params.model_validate({})
    got = loss.reduce(loss.forward({"input": x, "target": t}, params), {"input": x, "target": t}, params, "mean")
    assert got.isnan() and F.cross_entropy(x, t).isnan()


# sigmoid_focal


def test_sigmoid_focal_target_range():
    x = logits(2, 2)
    assert errors("sigmoid_focal", {}, input=x, target=np.array([[0, 0.3], [1, 0.5]], np.float32)) == []
    got = errors("sigmoid_focal", {}, input=x, target=np.array([[0, 1.5], [-0.5, 1]], np.float32))
    assert got == [target_error("value 1.5 out of range [0, 1] at position (0, 1)")]


@pytest.mark.parametrize("alpha", [-1, -1.0, None, 0.0, 0.25, 1.0])
def test_sigmoid_focal_alpha_accepted(alpha):
    assert errors("sigmoid_focal", {"alpha": alpha}, input=logits(3), target=np.zeros(3, np.float32)) == []


def test_sigmoid_focal_alpha_between_minus_one_and_zero():
    got = errors("sigmoid_focal", {"alpha": -0.5}, input=logits(3), target=np.zeros(3, np.float32))
    assert got == [param_error("alpha", "expected a value in [0, 1], or -1 or null to disable; got -0.5")]


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"alpha": -2}, {"gamma": -0.5}, {"gamma": float("nan")}])
def test_sigmoid_focal_params_refused(params):
    with pytest.raises(ValidationError):
        focal.SigmoidFocalParams.model_validate(params)


# dice


def _target_kind(input, target):
    return checked("dice", {}, input=input, target=target).binding.forms["target"].kind


def test_dice_target_forms():
    assert _target_kind(logits(2, 3, 4), logits(2, 3, 4)) == FLOAT
    assert _target_kind(logits(2, 3, 4), indices(np.zeros((2, 4)))) == INTEGER
    assert _target_kind(logits(2, 3, 4), indices(np.zeros((2, 1, 4)))) == INTEGER
    # With C = 1 the (N, 1, *) shape is the input's: a float mask, as in MONAI without to_onehot_y.
    assert _target_kind(logits(2, 1, 4), logits(2, 1, 4)) == FLOAT


def test_dice_accepts():
    x = logits(2, 3, 2, 2)
    assert errors("dice", {"softmax": True, "weight": [1, 2, 3]}, input=x, target=indices(np.ones((2, 2, 2)))) == []
    assert errors("dice", {"include_background": False, "weight": [1, 2]}, input=x, target=logits(2, 3, 2, 2)) == []
    assert errors("dice", {"sigmoid": True, "weight": 2.0}, input=logits(2, 1, 3), target=logits(2, 1, 3)) == []


def test_dice_needs_a_spatial_dimension():
    got = errors("dice", {}, input=logits(2, 3), target=indices([0, 1]))
    msg = "expected at least one spatial dimension after (N, C); got (2, 3)"
    assert got == [ErrorItem(("inputs", "input"), msg)]


def test_dice_sigmoid_and_softmax():
    got = errors("dice", {"sigmoid": True, "softmax": True}, input=logits(2, 3, 2), target=logits(2, 3, 2))
    assert got == [param_error("softmax", "softmax and sigmoid cannot both be true")]


def test_dice_single_class_options():
    got = errors("dice", {"softmax": True, "include_background": False}, input=logits(2, 1, 2), target=logits(2, 1, 2))
    assert got == [
        param_error("softmax", "softmax needs C > 1 classes; got C = 1"),
        param_error("include_background", "include_background=false drops class 0 and needs C > 1 classes; got C = 1"),
    ]


def test_dice_index_target_with_one_class():
    got = errors("dice", {"sigmoid": True}, input=logits(2, 1, 3), target=indices([[0, 1, 0], [1, 1, 0]]))
    msg = "class-index targets need C > 1 classes; with C = 1 send a float mask of the input's shape"
    assert got == [target_error(msg)]


def test_dice_weight_length():
    x, y = logits(2, 3, 2), logits(2, 3, 2)
    got = errors("dice", {"weight": [1.0, 2.0]}, input=x, target=y)
    assert got == [param_error("weight", "expected C = 3 values; got 2")]
    got = errors("dice", {"weight": [1.0, 2.0, 3.0], "include_background": False}, input=x, target=y)
    assert got == [param_error("weight", "expected C - 1 = 2 values; got 3")]


def test_dice_class_index_range():
    got = errors("dice", {}, input=logits(2, 3, 2), target=indices([[[0, 1]], [[3, 0]]]))
    assert got == [target_error("class index 3 out of range [0, 3) at position (1, 0, 0)")]
    got = errors("dice", {}, input=logits(2, 3, 2), target=indices([[0, -1], [2, 0]]))
    assert got == [target_error("class index -1 out of range [0, 3) at position (0, 1)")]


def test_dice_float_target_range():
    y = np.full((2, 2, 2), 0.5, np.float32)
    y[1, 0, 1] = 1.25
    got = errors("dice", {}, input=logits(2, 2, 2), target=y)
    assert got == [target_error("value 1.25 out of range [0, 1] at position (1, 0, 1)")]


@pytest.mark.parametrize(
    "params",
    [
        {"weight": -1.0},
        {"weight": [1.0, -0.5]},
        {"smooth_dr": -1e-5},
        {"smooth_nr": float("inf")},
        {"to_onehot_y": True},
    ],
)
def test_dice_params_refused(params):
    with pytest.raises(ValidationError):
        dice.DiceParams.model_validate(params)


def test_dice_batchable_only_without_batch():
    loss = REGISTRY.get("dice")
    arrays = {"input": np.zeros((2, 3, 4)), "target": np.zeros((2, 3, 4))}
    assert loss.batchable(loss.params.model_validate({}), arrays)
    assert not loss.batchable(loss.params.model_validate({"batch": True}), arrays)


def _dice_value(params, x, y, reduction="mean"):
    loss = REGISTRY.get("dice")
    p = loss.params.model_validate(params)
    el = loss.forward({"input": x, "target": y}, p)
    return el if reduction == "none" else loss.reduce(el, {"input": x, "target": y}, p, reduction)


@pytest.mark.parametrize(
    "params", [{"softmax": True}, {"softmax": True, "squared_pred": True, "weight": [0.3, 0.3, 0.4]}]
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dice_agrees_with_monai_to_onehot_y(params, reduction):
    """MONAI's own one-hot path (float32 one-hot, float32 weights) agrees to float32 precision."""
    from monai.losses import DiceLoss

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 1, 4, 4), generator=g)
    want = DiceLoss(to_onehot_y=True, reduction=reduction, **params)(x, y)
    assert want.dtype == torch.float64
    torch.testing.assert_close(_dice_value(params, x, y, reduction), want, rtol=1e-6, atol=1e-7)


def test_dice_weight_has_no_effect_on_a_single_scored_class_like_monai():
    from monai.losses import DiceLoss

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (2, 5), generator=g)
    params = {"softmax": True, "include_background": False, "weight": [5.0]}
    got = _dice_value(params, x, y)
    torch.testing.assert_close(got, _dice_value({"softmax": True, "include_background": False}, x, y))
    torch.testing.assert_close(got, DiceLoss(to_onehot_y=True, **params)(x, y.unsqueeze(1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gradients_stay_finite_where_p_t_saturates(gamma, dtype):
    """Where p_t rounds to 1, (1 - p_t)^gamma would give 0 * inf = NaN gradients for gamma < 1."""
    x = torch.tensor([[1000.0, 0.0, 0.0], [0.0, 50.0, 0.0]], dtype=dtype, requires_grad=True)
    loss = REGISTRY.get("focal")
    params = loss.params.model_validate({"gamma": gamma})
    loss.forward({"input": x, "target": torch.tensor([0, 0])}, params).sum().backward()
    assert x.grad.isfinite().all()
    x = torch.tensor([1000.0, -1000.0, 40.0, 0.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=dtype)
    loss = REGISTRY.get("sigmoid_focal")
    el = loss.forward({"input": x, "target": y}, loss.params.model_validate({"gamma": gamma}))
    el.sum().backward()
    assert x.grad.isfinite().all() and el[:2].abs().max() < 1e-30
