"""GET /v1/losses and /v1/losses/{name}: the names, aliases, contracts and params of the catalog."""

from __future__ import annotations

import pytest

from ..conftest import problem

CANONICAL = [
    "l1", "mse", "smooth_l1", "huber", "cross_entropy", "nll", "bce", "bce_with_logits", "kl_div",
    "poisson_nll", "gaussian_nll", "soft_margin", "multilabel_soft_margin", "multilabel_margin",
    "multi_margin", "hinge_embedding", "margin_ranking", "cosine_embedding", "triplet_margin",
    "triplet_margin_with_distance", "ctc", "focal", "sigmoid_focal", "dice",
]  # fmt: skip


# issue 14: the catalog beyond torch.nn (names are part of the contract)
BEYOND = [
    "tversky", "focal_tversky", "generalized_dice", "jaccard", "lovasz_hinge", "lovasz_softmax", "mcc", "ssim",
    "iou", "giou", "diou", "ciou", "eiou", "focal_eiou", "siou", "alpha_iou", "wiou",
    "arcface", "cosface", "poly1", "binary_focal", "hinge", "squared_hinge", "exponential", "zero_one",
    "contrastive", "gan_discriminator", "gan_generator", "loss_sensitive",
    "charbonnier", "cauchy", "geman_mcclure", "welsch", "log_cosh", "quantile",
    "dice_ce",  # issue 15: the named composite
]  # fmt: skip


def test_catalog_lists_every_loss(client):
    names = [entry["name"] for entry in client.get("/v1/losses").json()["losses"]]
    assert names[: len(CANONICAL)] == CANONICAL  # torch.nn's and v1's first, in their order
    assert sorted(names[len(CANONICAL) :]) == sorted(BEYOND)


@pytest.mark.parametrize("name", CANONICAL + BEYOND)
def test_each_entry_is_complete(client, name):
    info = client.get(f"/v1/losses/{name}").json()
    assert info["name"] == name
    assert info["summary"] and info["category"] and info["elementwise_shape"].startswith("(")
    assert info["reference"]  # the library (and function) or the paper
    if name in CANONICAL:
        assert info["reference"] in {"PyTorch", "MONAI", "torchvision", "the formula in the summary"}
    if info["decomposable"]:
        assert info["reductions"][:3] == ["mean", "sum", "none"]
    else:
        assert "none" not in info["reductions"]
    assert info["params"]["type"] == "object" and info["params"]["additionalProperties"] is False
    for prop in info["params"].get("properties", {}).values():
        assert "default" in prop, (name, prop)
    for role in info["roles"]:
        assert role["kind"] in {"float", "integer", "either"}
        assert role["shape"].startswith("(")


@pytest.mark.parametrize(
    "alias,name",
    [
        ("CrossEntropyLoss", "cross_entropy"), ("cross_entropy", "cross_entropy"),
        ("crossentropyloss", "cross_entropy"), ("NLLLoss", "nll"), ("BCEWithLogitsLoss", "bce_with_logits"),
        ("binary_cross_entropy", "bce"), ("KLDivLoss", "kl_div"), ("CTCLoss", "ctc"), ("DiceLoss", "dice"),
        ("sigmoid_focal_loss", "sigmoid_focal"), ("TripletMarginWithDistanceLoss", "triplet_margin_with_distance"),
        ("MultiLabelSoftMarginLoss", "multilabel_soft_margin"), ("SmoothL1Loss", "smooth_l1"),
    ],
)  # fmt: skip
def test_aliases_resolve_to_the_canonical_loss(client, alias, name):
    assert client.get(f"/v1/losses/{alias}").json()["name"] == name
    r = client.post("/v1/evaluate", json={"loss": alias, "inputs": {}})
    assert r.json()["detail"].startswith("inputs.")  # the loss was found: the error is about its inputs


def test_unknown_loss_suggests_close_names(client):
    body = problem(client.get("/v1/losses/cross_entropyy"), 404)
    assert body["detail"] == "path.name: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"
    assert body["errors"] == [
        {"loc": ["path", "name"], "msg": "unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"}
    ]


def test_unknown_loss_without_close_names(client):
    body = problem(client.post("/v1/evaluate", json={"loss": "zzzzqqq", "inputs": {}}), 404)
    assert body["detail"] == "loss: unknown loss 'zzzzqqq'; see GET /v1/losses for the catalog"


def test_focal_contract_uses_pytorch_letters(client):
    info = client.get("/v1/losses/focal").json()
    roles = {r["name"]: r for r in info["roles"]}
    assert roles["input"]["shape"] == "(N, C, *)" and roles["input"]["kind"] == "float"
    assert roles["target"]["shape"] == "(N, *)" and roles["target"]["kind"] == "integer"
    assert roles["target"]["differentiable"] is False
    assert info["params"]["properties"]["gamma"]["default"] == 2.0


def test_cross_entropy_target_is_either(client):
    roles = {r["name"]: r for r in client.get("/v1/losses/cross_entropy").json()["roles"]}
    assert roles["target"]["kind"] == "either"
    assert "(N, *)" in roles["target"]["shape"] and "(N, C, *)" in roles["target"]["shape"]


def test_kl_div_accepts_batchmean(client):
    assert "batchmean" in client.get("/v1/losses/kl_div").json()["reductions"]
    assert "batchmean" not in client.get("/v1/losses/mse").json()["reductions"]


def test_ctc_roles(client):
    roles = [r["name"] for r in client.get("/v1/losses/ctc").json()["roles"]]
    assert roles == ["log_probs", "targets", "input_lengths", "target_lengths"]
