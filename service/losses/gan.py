"""GAN losses on critic outputs: the discriminator's and the generator's objectives of the usual
GAN families (minimax, non-saturating, Wasserstein, least squares, hinge), and the loss-sensitive
GAN's critic objective (Qi 2017).

Critic outputs are logits for minimax and non-saturating (D = sigmoid(output)), raw scores for
the others. Every loss is elementwise: one value per critic output (per sample for
loss_sensitive), averaged by the mean.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from .base import Inputs, Loss, Params
from .contract import role

REAL = role("real", "(N, *)", description="critic outputs on real samples (logits for minimax)")
FAKE = role("fake", "(N, *)", description="critic outputs on generated samples (logits for minimax), same shape")
FAKE_ONLY = role("fake", "(N, *)", description="critic outputs on generated samples (logits for minimax)")

PAPERS = (
    "Goodfellow et al. 2014 (minimax, non-saturating); Arjovsky et al. 2017 (Wasserstein); "
    "Mao et al. 2017 (least squares); Lim and Ye 2017 (hinge)"
)


class DiscriminatorParams(Params):
    kind: Literal["minimax", "wasserstein", "least_squares", "hinge"] = Field(
        "minimax",
        description=(
            "minimax: softplus(-real) + softplus(fake) (-log D(x) - log(1 - D(G(z))), D = sigmoid); "
            "wasserstein: fake - real; least_squares: ((real - 1)^2 + fake^2) / 2; "
            "hinge: relu(1 - real) + relu(1 + fake)"
        ),
    )


class GeneratorParams(Params):
    kind: Literal["minimax", "non_saturating", "wasserstein", "least_squares", "hinge"] = Field(
        "non_saturating",
        description=(
            "minimax: -softplus(fake) (log(1 - D(G(z))), D = sigmoid); non_saturating: softplus(-fake) "
            "(-log D(G(z))); wasserstein and hinge: -fake; least_squares: (fake - 1)^2 / 2"
        ),
    )


class LossSensitiveParams(Params):
    lambd: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="lambda, the weight of the margin term (PyTorch's spelling, as in Hardshrink's lambd)",
    )


def _discriminator(t: Inputs, p: DiscriminatorParams) -> Tensor:
    real, fake = t["real"], t["fake"]
    if p.kind == "minimax":
        return F.softplus(-real) + F.softplus(fake)
    if p.kind == "wasserstein":
        return fake - real
    if p.kind == "least_squares":
        return ((real - 1).square() + fake.square()) / 2
    return F.relu(1 - real) + F.relu(1 + fake)


def _generator(t: Inputs, p: GeneratorParams) -> Tensor:
    fake = t["fake"]
    if p.kind == "minimax":
        return -F.softplus(fake)
    if p.kind == "non_saturating":
        return F.softplus(-fake)
    if p.kind == "least_squares":
        return (fake - 1).square() / 2
    return -fake  # wasserstein, hinge


def _loss_sensitive(t: Inputs, p: LossSensitiveParams) -> Tensor:
    real_loss, fake_loss = t["real_loss"], t["fake_loss"]
    n = real_loss.shape[0]
    # the margin is a distance between the samples, a constant of the critic's objective
    delta = (t["real"] - t["fake"]).detach().abs().reshape(n, -1).mean(1)
    return real_loss + p.lambd * F.relu(delta + real_loss - fake_loss)


LOSSES = [
    Loss(
        name="gan_discriminator",
        summary=(
            "The discriminator's (critic's) GAN loss on its outputs for real and generated samples, "
            "by kind: minimax softplus(-real) + softplus(fake), wasserstein fake - real, least_squares "
            f"((real - 1)^2 + fake^2) / 2, hinge relu(1 - real) + relu(1 + fake) ({PAPERS})."
        ),
        category="gan",
        reference=PAPERS,
        roles=(REAL, FAKE),
        forward=_discriminator,
        elementwise_shape="(N, *)",
        params=DiscriminatorParams,
        aliases=("GANDiscriminatorLoss", "discriminator_loss", "gan_d"),
    ),
    Loss(
        name="gan_generator",
        summary=(
            "The generator's GAN loss on the critic's outputs for generated samples, by kind: minimax "
            "-softplus(fake) (log(1 - D)), non_saturating softplus(-fake) (-log D), wasserstein and hinge "
            f"-fake, least_squares (fake - 1)^2 / 2 ({PAPERS})."
        ),
        category="gan",
        reference=PAPERS,
        roles=(FAKE_ONLY,),
        forward=_generator,
        elementwise_shape="(N, *)",
        params=GeneratorParams,
        aliases=("GANGeneratorLoss", "generator_loss", "gan_g"),
    ),
    Loss(
        name="loss_sensitive",
        summary=(
            "The loss-sensitive GAN's critic loss real_loss + lambda relu(delta + real_loss - fake_loss) "
            "per sample pair, delta the mean absolute difference of real and fake over their non-batch "
            "dimensions: a fixed margin, so real and fake get no gradient (Qi 2017, Loss-Sensitive "
            "Generative Adversarial Networks on Lipschitz Densities)."
        ),
        category="gan",
        reference="Qi 2017, Loss-Sensitive Generative Adversarial Networks on Lipschitz Densities",
        roles=(
            role("real_loss", "(N)", description="the critic's loss L(x) of each real sample"),
            role("fake_loss", "(N)", description="the critic's loss L(G(z)) of each generated sample"),
            role("real", "(N, *)", differentiable=False, description="the real samples (for the margin)"),
            role(
                "fake",
                "(N, *)",
                differentiable=False,
                description="the generated samples, paired with the real ones (for the margin)",
            ),
        ),
        forward=_loss_sensitive,
        elementwise_shape="(N)",
        params=LossSensitiveParams,
        aliases=("LossSensitiveLoss", "loss_sensitive_gan", "LossSensitiveGANLoss"),
    ),
]
