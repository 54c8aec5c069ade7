"""The GAN and robust regression losses: exact texts of every check they add (through the app), and
what the reference table cannot show: finite values and gradients where a naive formula overflows,
the pinball loss's value and gradient at a tie, and loss_sensitive's fixed margin."""

from __future__ import annotations

import pytest
import torch

from service.errors import ErrorItem

from ..conftest import problem
from .validators import REGISTRY, errors


def evaluate(client, loss, inputs, params=None, **extra):
    spec = {"name": loss, "params": params or {}}
    return client.post("/v1/evaluate", json={"loss": spec, "inputs": inputs, **extra})


def errors_of(response) -> list[tuple[list, str]]:
    return [(e["loc"], e["msg"]) for e in problem(response, 422)["errors"]]


# -- quantile -------------------------------------------------------------------------------------

PREDICTIONS = {"input": [[1.0, 2.0, 3.0], [0.5, 1.5, 2.5]], "target": [2.0, 1.0]}


def test_quantile_one_level_per_prediction(client):
    r = evaluate(client, "quantile", PREDICTIONS, {"quantiles": [0.1, 0.9]})
    assert errors_of(r) == [(["loss", "params", "quantiles"], "expected Q = 3 values; got 2")]


def test_quantile_default_is_the_median_alone(client):
    r = evaluate(client, "quantile", PREDICTIONS)
    assert errors_of(r) == [(["loss", "params", "quantiles"], "expected Q = 3 values; got 1")]
    r = evaluate(client, "quantile", {"input": [[1.0], [3.0]], "target": [2.0, 2.0]})
    assert r.status_code == 200 and r.json()["value"] == 0.5  # 0.5 |y - x|, averaged


def test_quantile_validator_in_process():
    import numpy as np

    got = errors("quantile", {"quantiles": [0.5]}, input=np.zeros((2, 4, 3)), target=np.zeros((2, 4)))
    assert got == [ErrorItem(("loss", "params", "quantiles"), "expected Q = 3 values; got 1")]


@pytest.mark.parametrize(
    "quantiles,loc,msg",
    [
        ([0.1, 1.0, 0.5], ["loss", "params", "quantiles", 1], "input should be less than 1; got 1.0"),
        ([0.0, 0.5, 0.9], ["loss", "params", "quantiles", 0], "input should be greater than 0; got 0.0"),
        ([0.2, 0.5, -0.5], ["loss", "params", "quantiles", 2], "input should be greater than 0; got -0.5"),
        ([], ["loss", "params", "quantiles"], "list should have at least 1 item after validation, not 0; got []"),
        (0.5, ["loss", "params", "quantiles"], "input should be a valid list; got 0.5"),
        ([0.5, None, 0.2], ["loss", "params", "quantiles", 1], "input should be a valid number; got None"),
    ],
)
def test_quantile_levels_strictly_inside_0_1(client, quantiles, loc, msg):
    assert errors_of(evaluate(client, "quantile", PREDICTIONS, {"quantiles": quantiles})) == [(loc, msg)]


def test_quantile_shapes(client):
    r = evaluate(client, "quantile", {"input": [[1.0, 2.0]], "target": [[1.0, 2.0]]})
    assert errors_of(r) == [
        (["inputs", "target"], "expected shape (N, *) = (1,) from input (N, *, Q) = (1, 2); got (1, 2)")
    ]
    r = evaluate(client, "quantile", {"input": [1.0, 2.0], "target": [1.0, 2.0]})
    assert errors_of(r) == [(["inputs", "input"], "expected shape (N, *, Q) (at least 2 dimensions); got (2,)")]


def test_quantile_at_a_tie_is_zero_with_the_right_hand_derivative():
    """max(q e, (q - 1) e) at e = y - x = 0: the value +0 (never -0), and d/dx = -q (the derivative
    from e >= 0, alone and in any group: torch.maximum would halve it between the branches)."""
    loss = REGISTRY.get("quantile")
    params = loss.params.model_validate({"quantiles": [0.2, 0.7]})
    x = torch.tensor([[1.5, 1.5], [0.0, 3.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.5, 1.0], dtype=torch.float64)
    el = loss.forward({"input": x, "target": y}, params)
    assert el[0].tolist() == [0.0, 0.0] and not torch.signbit(el[0]).any()
    (grad,) = torch.autograd.grad(el.sum(), [x])
    assert grad.tolist() == [[-0.2, -0.7], [-0.2, 1 - 0.7]]


# -- GAN losses -----------------------------------------------------------------------------------

CRITIC = {"real": [[0.5, -1.0]], "fake": [[2.0, 0.0]]}


def test_discriminator_kinds(client):
    r = evaluate(client, "gan_discriminator", CRITIC, {"kind": "non_saturating"})
    assert errors_of(r) == [
        (
            ["loss", "params", "kind"],
            "input should be 'minimax', 'wasserstein', 'least_squares' or 'hinge'; got 'non_saturating'",
        )
    ]


def test_generator_kinds(client):
    r = evaluate(client, "gan_generator", {"fake": [1.0]}, {"kind": "wgan"})
    assert errors_of(r) == [
        (
            ["loss", "params", "kind"],
            "input should be 'minimax', 'non_saturating', 'wasserstein', 'least_squares' or 'hinge'; got 'wgan'",
        )
    ]


def test_real_and_fake_have_one_shape(client):
    r = evaluate(client, "gan_discriminator", {"real": [[1.0, 2.0]], "fake": [[1.0, 2.0, 3.0]]})
    assert errors_of(r) == [
        (["inputs", "fake"], "expected shape (N, *) = (1, 2) from real (N, *) = (1, 2); got (1, 3)")
    ]
    r = evaluate(client, "gan_discriminator", {"real": [[1.0, 2.0]]})
    assert errors_of(r) == [(["inputs", "fake"], "missing required role 'fake' with shape (N, *)")]


def test_the_generator_takes_fake_only(client):
    r = evaluate(client, "gan_generator", {"real": [1.0], "fake": [1.0]})
    assert errors_of(r) == [(["inputs", "real"], "unknown role 'real' for gan_generator; expected fake")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_gan_losses_saturate_without_overflow(dtype):
    """log(1 - D) and -log D of logits far out: finite (never log 0), with their limiting gradients."""
    x = torch.tensor([-100.0, 100.0], dtype=dtype, requires_grad=True)
    gen, disc = REGISTRY.get("gan_generator"), REGISTRY.get("gan_discriminator")
    got = {
        "minimax": gen.forward({"fake": x}, gen.params.model_validate({"kind": "minimax"})),
        "non_saturating": gen.forward({"fake": x}, gen.params.model_validate({})),
        "discriminator": disc.forward({"real": x, "fake": x}, disc.params.model_validate({})),
    }
    tiny = torch.tensor(-100.0, dtype=torch.float64).exp().item()  # e^-100, 0 in half precision
    want = {"minimax": [-tiny, -100.0], "non_saturating": [100.0, tiny], "discriminator": [100.0 + tiny, 100.0 + tiny]}
    for kind, values in want.items():
        torch.testing.assert_close(got[kind], torch.tensor(values, dtype=torch.float64).to(dtype), msg=kind)
    (grad,) = torch.autograd.grad(got["minimax"].sum(), [x])
    torch.testing.assert_close(grad, torch.tensor([-tiny, -1.0], dtype=torch.float64).to(dtype))


# -- loss_sensitive -------------------------------------------------------------------------------

PAIRS = {
    "real_loss": [1.0, 2.0],
    "fake_loss": [1.5, 0.5],
    "real": [[1.0, 0.0], [2.0, 2.0]],
    "fake": [[0.0, 0.0], [1.0, 3.0]],
}


def test_loss_sensitive_lambda(client):
    r = evaluate(client, "loss_sensitive", PAIRS, {"lambd": -1})
    assert errors_of(r) == [(["loss", "params", "lambd"], "input should be greater than or equal to 0; got -1")]
    r = evaluate(client, "loss_sensitive", PAIRS, {"lambda": 2})
    assert errors_of(r) == [
        (["loss", "params", "lambda"], "unknown parameter 'lambda' for loss_sensitive; did you mean 'lambd'?")
    ]


def test_loss_sensitive_shapes(client):
    r = evaluate(client, "loss_sensitive", {**PAIRS, "fake_loss": [1.0]})
    assert errors_of(r) == [(["inputs", "fake_loss"], "expected shape (N) = (2,) from real_loss (N) = (2,); got (1,)")]
    r = evaluate(client, "loss_sensitive", {**PAIRS, "fake": [[0.0], [1.0]]})
    assert errors_of(r) == [
        (
            ["inputs", "fake"],
            "expected shape (N, *) = (2, 2) from real_loss (N) = (2,) and real (N, *) = (2, 2); got (2, 1)",
        )
    ]


def test_loss_sensitive_samples_get_no_gradient(client):
    """The margin is a distance between the samples, a constant of the critic's objective (Qi 2017):
    real and fake are not differentiable; the critic's losses are."""
    r = evaluate(client, "loss_sensitive", PAIRS, return_grad=["real_loss", "fake"])
    assert errors_of(r) == [(["return_grad", 1], "role 'fake' of loss_sensitive is not differentiable")]
    r = evaluate(client, "loss_sensitive", PAIRS, return_grad=True, return_elementwise=True)
    assert r.status_code == 200, r.text
    body = r.json()
    # delta = (0.5, 1.0): sample 0: 1 + relu(0.5 + 1 - 1.5) = 1; sample 1: 2 + relu(1 + 2 - 0.5) = 4.5
    assert body["elementwise"]["data"] == [1.0, 4.5] and body["value"] == 2.75
    assert set(body["grad"]) == {"real_loss", "fake_loss"}
    assert body["grad"]["real_loss"]["data"] == [0.5, 1.0]  # relu'(0) = 0 at sample 0's kink
    assert body["grad"]["fake_loss"]["data"] == [0.0, -0.5]


# -- robust regression ----------------------------------------------------------------------------


def test_robust_losses_take_no_params(client):
    r = evaluate(client, "charbonnier", {"input": [1.0], "target": [0.0]}, {"c": 2})
    assert errors_of(r) == [(["loss", "params", "c"], "unknown parameter 'c' for charbonnier; expected no parameters")]


# Residuals far beyond where d^2 or cosh(d) overflow float32, with each loss's value and derivative
# in d there (the asymptotes: |d|, 2 log|d| - log 2, 2, 1, |d| - log 2).
FAR = 1e20
ASYMPTOTES = {
    "charbonnier": (FAR - 1, 1.0),
    "cauchy": (2 * torch.tensor(FAR, dtype=torch.float64).log().item() - torch.tensor(2.0).log().item(), 0.0),
    "geman_mcclure": (2.0, 0.0),
    "welsch": (1.0, 0.0),
    "log_cosh": (FAR - torch.tensor(2.0, dtype=torch.float64).log().item(), 1.0),
}


@pytest.mark.parametrize("name", sorted(ASYMPTOTES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_robust_losses_are_finite_for_huge_residuals(name, dtype):
    loss = REGISTRY.get(name)
    x = torch.tensor([FAR, -FAR, 0.0], dtype=dtype, requires_grad=True)
    el = loss.forward({"input": x, "target": torch.zeros(3, dtype=dtype)}, loss.params())
    (grad,) = torch.autograd.grad(el.sum(), [x])
    value, slope = ASYMPTOTES[name]
    want = torch.tensor([value, value, 0.0], dtype=torch.float64)
    torch.testing.assert_close(el.double(), want, rtol=1e-6, atol=0)
    torch.testing.assert_close(
        grad.double(), torch.tensor([slope, -slope, 0.0], dtype=torch.float64), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_robust_losses_evaluate_half_precision_in_float32(dtype):
    """As kornia does: a residual whose square passes float16's 65504 still has its finite loss."""
    x = torch.tensor([150.0, 1.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([-150.0, 1.0], dtype=dtype)
    for name in ASYMPTOTES:
        loss = REGISTRY.get(name)
        el = loss.forward({"input": x, "target": y}, loss.params())
        (grad,) = torch.autograd.grad(el.sum(), [x])
        assert el.dtype == dtype and grad.dtype == dtype
        assert torch.isfinite(el).all() and torch.isfinite(grad).all(), name


def test_log_cosh_is_accurate_near_zero():
    """log(cosh(d)) ~ d^2 / 2: the form near 0 loses no digits to cancellation."""
    d = torch.tensor([1e-3, 1e-6, 1e-10, 0.75, -1.0, 1.25], dtype=torch.float64)
    loss = REGISTRY.get("log_cosh")
    got = loss.forward({"input": d.float(), "target": torch.zeros(6)}, loss.params())
    want = torch.log(torch.cosh(d))
    want[:3] = d[:3] ** 2 / 2 - d[:3] ** 4 / 12  # the series, where cosh(d) rounds to 1 in float64
    torch.testing.assert_close(got.double(), want, rtol=4e-7, atol=0)


# -- the catalog ----------------------------------------------------------------------------------

REFERENCES = {
    "charbonnier": "kornia.losses.charbonnier_loss",
    "cauchy": "kornia.losses.cauchy_loss",
    "geman_mcclure": "kornia.losses.geman_mcclure_loss",
    "welsch": "kornia.losses.welsch_loss",
    "log_cosh": "the formula in the summary",
    "quantile": "the formula in the summary",
    "gan_discriminator": "Goodfellow et al. 2014",
    "gan_generator": "Goodfellow et al. 2014",
    "loss_sensitive": "Qi 2017",
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_catalog_entries(client, name):
    info = client.get(f"/v1/losses/{name}").json()
    assert info["name"] == name and info["decomposable"] is True
    assert info["reference"].startswith(REFERENCES[name])
    assert info["reductions"] == ["mean", "sum", "none"]
    assert info["params"]["type"] == "object" and info["params"]["additionalProperties"] is False
    for prop in info["params"].get("properties", {}).values():
        assert "default" in prop and prop.get("description"), (name, prop)


def test_catalog_contracts(client):
    def roles(name):
        return {r["name"]: (r["shape"], r["differentiable"]) for r in client.get(f"/v1/losses/{name}").json()["roles"]}

    assert roles("quantile") == {"input": ("(N, *, Q)", True), "target": ("(N, *)", True)}
    assert roles("gan_discriminator") == {"real": ("(N, *)", True), "fake": ("(N, *)", True)}
    assert roles("gan_generator") == {"fake": ("(N, *)", True)}
    assert roles("loss_sensitive") == {
        "real_loss": ("(N)", True),
        "fake_loss": ("(N)", True),
        "real": ("(N, *)", False),
        "fake": ("(N, *)", False),
    }
    quantiles = client.get("/v1/losses/quantile").json()["params"]["properties"]["quantiles"]
    assert quantiles["default"] == [0.5] and quantiles["minItems"] == 1
    assert (quantiles["items"]["exclusiveMinimum"], quantiles["items"]["exclusiveMaximum"]) == (0, 1)


@pytest.mark.parametrize(
    "alias,name",
    [
        ("CharbonnierLoss", "charbonnier"), ("CauchyLoss", "cauchy"), ("GemanMcclureLoss", "geman_mcclure"),
        ("WelschLoss", "welsch"), ("LogCoshLoss", "log_cosh"), ("pinball", "quantile"), ("QuantileLoss", "quantile"),
        ("GANDiscriminatorLoss", "gan_discriminator"), ("generator_loss", "gan_generator"),
        ("LossSensitiveLoss", "loss_sensitive"),
    ],
)  # fmt: skip
def test_aliases(client, alias, name):
    assert client.get(f"/v1/losses/{alias}").json()["name"] == name
