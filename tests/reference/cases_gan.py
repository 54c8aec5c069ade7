"""Reference cases: the GAN losses (gan_discriminator, gan_generator: each kind's formula from its
paper, written with D = sigmoid(output) where the paper writes probabilities) and loss_sensitive
(Qi 2017's critic objective, its margin taken sample by sample)."""

import torch

from .case import Case


def _reduce(el, reduction):
    if reduction == "none":
        return el
    return el.sum() if reduction == "sum" else el.mean()


def _critic(shape, roles=("real", "fake"), scale=2.0):
    def make(g, dtype):
        return {r: (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype) for r in roles}

    return make


def discriminator_reference(t, p, reduction):
    real, fake = t["real"], t["fake"]
    kind = p.get("kind", "minimax")
    if kind == "minimax":  # -log D(x) - log(1 - D(G(z)))
        el = -torch.log(torch.sigmoid(real)) - torch.log1p(-torch.sigmoid(fake))
    elif kind == "wasserstein":  # the critic maximises E[C(x)] - E[C(G(z))]
        el = fake - real
    elif kind == "least_squares":  # 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2
        el = 0.5 * (real - 1) ** 2 + 0.5 * fake**2
    else:  # hinge: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))
        el = torch.clamp(1 - real, min=0) + torch.clamp(1 + fake, min=0)
    return _reduce(el, reduction)


def generator_reference(t, p, reduction):
    fake = t["fake"]
    kind = p.get("kind", "non_saturating")
    if kind == "minimax":  # log(1 - D(G(z)))
        el = torch.log1p(-torch.sigmoid(fake))
    elif kind == "non_saturating":  # -log D(G(z))
        el = -torch.log(torch.sigmoid(fake))
    elif kind == "least_squares":  # 1/2 (D(G(z)) - 1)^2
        el = 0.5 * (fake - 1) ** 2
    else:  # wasserstein and hinge: -C(G(z))
        el = -fake
    return _reduce(el, reduction)


def _pairs(sample_shape):
    """Critic losses (N) and the samples (N, *) whose mean absolute difference is the margin."""

    def make(g, dtype):
        n = sample_shape[0]
        tensors = {
            "real_loss": torch.randn(n, generator=g, dtype=torch.float64),
            "fake_loss": torch.randn(n, generator=g, dtype=torch.float64) + 0.5,
            "real": torch.randn(*sample_shape, generator=g, dtype=torch.float64) * 0.5,
            "fake": torch.randn(*sample_shape, generator=g, dtype=torch.float64) * 0.5,
        }
        return {k: v.to(dtype) for k, v in tensors.items()}

    return make


def loss_sensitive_reference(t, p, reduction):
    real_loss, fake_loss = t["real_loss"], t["fake_loss"]
    lam = p.get("lambd", 1.0)
    delta = torch.stack([(x - z).abs().mean() for x, z in zip(t["real"], t["fake"], strict=True)])
    el = real_loss + lam * torch.clamp(delta + real_loss - fake_loss, min=0)
    return _reduce(el, reduction)


def _d(kind, shape, **kw):
    return Case(
        f"gan_discriminator-{kind}",
        "gan_discriminator",
        {"kind": kind},
        _critic(shape),
        discriminator_reference,
        grad_roles=("real", "fake"),
        **kw,
    )


def _g(kind, shape, **kw):
    return Case(
        f"gan_generator-{kind}",
        "gan_generator",
        {"kind": kind},
        _critic(shape, ("fake",)),
        generator_reference,
        grad_roles=("fake",),
        **kw,
    )


def _ls(id, params, shape, **kw):
    return Case(
        f"loss_sensitive-{id}",
        "loss_sensitive",
        params,
        _pairs(shape),
        loss_sensitive_reference,
        grad_roles=("real_loss", "fake_loss"),
        **kw,
    )


CASES = [
    _d("minimax", (6, 1)),
    _d("wasserstein", (5,)),
    _d("least_squares", (4, 3)),
    _d("hinge", (3, 2, 4)),
    Case(
        "gan_discriminator-default",
        "gan_discriminator",
        {},
        _critic((4, 2)),
        discriminator_reference,
        grad_roles=("real", "fake"),
        nested=("real", "fake"),
    ),
    _g("minimax", (6, 1)),
    _g("non_saturating", (5,)),
    _g("wasserstein", (4, 3)),
    _g("least_squares", (3, 2, 4)),
    _g("hinge", (7, 1)),
    Case(
        "gan_generator-default",
        "gan_generator",
        {},
        _critic((4, 2), ("fake",)),
        generator_reference,
        grad_roles=("fake",),
        nested=("fake",),
    ),
    _ls("default", {}, (6, 4)),
    _ls("images", {"lambd": 0.5}, (4, 2, 3, 3)),
    _ls("scalars", {"lambd": 2.0}, (5,), nested=("real", "fake")),
    _ls("no-margin-term", {"lambd": 0.0}, (3, 5)),
]
