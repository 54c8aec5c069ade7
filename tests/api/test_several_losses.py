"""Several losses on the same tensors, composites and dice_ce (v1.1), through the application's HTTP
stack: each result equals what the loss gives alone, composites equal the weighted sums of their
terms (values and gradients) and dice_ce equals MONAI's DiceCELoss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from service.core import json_text, working_bytes
from tests.conftest import alone_then_together, problem

G = np.random.default_rng(7)
LOGITS = G.standard_normal((4, 3, 5, 5))
INDICES = G.integers(0, 3, (4, 5, 5))
SEG = {
    "input": {"data": LOGITS.ravel().tolist(), "shape": list(LOGITS.shape), "dtype": "float64"},
    "target": INDICES.tolist(),
}
TRIO = {
    "focal": {"name": "focal", "params": {"gamma": 2.0}},
    "dice": {"name": "dice", "params": {"softmax": True}},
    "ce": "cross_entropy",
}


def _post(client, body: dict) -> dict:
    r = client.post("/v1/evaluate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _grad(result: dict, role: str = "input") -> np.ndarray:
    g = result["grad"][role]
    return np.array(g["data"], dtype=np.float64).reshape(g["shape"])


def test_each_of_several_losses_equals_the_loss_alone(client):
    both = _post(client, {"losses": TRIO, "inputs": SEG, "return_grad": True})
    assert set(both) == {"results", "meta"} and list(both["results"]) == ["focal", "dice", "ce"]
    for label, spec in TRIO.items():
        alone = _post(client, {"loss": spec, "inputs": SEG, "return_grad": True})
        got = both["results"][label]
        assert got["loss"] == alone["loss"] and got["reduction"] == "mean"
        assert got["value"] == alone["value"]  # float64, the same arithmetic: bitwise
        np.testing.assert_array_equal(_grad(got), _grad(alone))
        assert "meta" not in got and got["aggregate"] == alone["aggregate"]
    assert both["meta"]["dtype"] == "float64"


def test_a_role_only_some_losses_take_is_absent_from_the_others(client):
    x = G.standard_normal((3, 4)).tolist()
    y = G.standard_normal((3, 4)).tolist()
    var = (G.random((3, 4)) + 0.5).tolist()
    body = {
        "losses": {"mse": "mse", "gauss": "gaussian_nll"},
        "inputs": {"input": x, "target": y, "var": var},
        "return_grad": ["input", "var"],
    }
    out = _post(client, body)["results"]
    assert set(out["mse"]["grad"]) == {"input"} and set(out["gauss"]["grad"]) == {"input", "var"}
    alone = _post(client, {"loss": "gaussian_nll", "inputs": body["inputs"], "return_grad": ["input", "var"]})
    assert out["gauss"]["value"] == alone["value"]


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        (
            {"losses": {"a": "mse"}, "inputs": {"input": [[1.0]], "target": [[2.0]], "extra": [[1.0]]}},
            422,
            [(["inputs", "extra"], "no loss of the request takes this role; they take input, target")],
        ),
        (
            {"losses": {"a": "mse", "b": "l1"}, "inputs": {"input": [[1.0]], "target": [[2.0]]}, "return_grad": ["x"]},
            422,
            [(["return_grad", 0], "no loss of the request takes role 'x'")],
        ),
        (
            {
                "losses": {"a": "mse", "b": {"name": "huber", "params": {"delt": 1}}},
                "inputs": {"input": [[1.0]], "target": [[2.0]]},
            },
            422,
            [(["losses", "b", "params", "delt"], "unknown parameter 'delt' for huber; did you mean 'delta'?")],
        ),
        (
            {"losses": {"a": "mse", "b": "msee"}, "inputs": {"input": [[1.0]], "target": [[2.0]]}},
            404,
            [(["losses", "b"], "unknown loss 'msee'; did you mean 'mse'?")],
        ),
        (
            {"losses": {"a": "l1", "b": "nll"}, "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 1.0]]}},
            422,
            [
                (
                    ["inputs", "target"],
                    "b: expected shape (N, *) = (1,) from input (N, C, *) = (1, 2); got (1, 2)",
                )
            ],
        ),
        (
            {"loss": "mse", "losses": {"a": "mse"}, "inputs": {}},
            422,
            [(["losses"], "expected either 'loss' or 'losses', not both")],
        ),
        ({"losses": {}, "inputs": {}}, 422, [(["losses"], "expected at least one loss")]),
        (
            {"losses": {str(i): "mse" for i in range(17)}, "inputs": {}},
            422,
            [(["losses"], "expected at most 16 losses; got 17")],
        ),
    ],
    ids=[
        "unused-role",
        "grad-role-no-loss-takes",
        "param-of-one",
        "unknown-one",
        "shape-of-one",
        "both",
        "empty",
        "many",
    ],
)
def test_errors_of_several_losses_say_which(client, body, status, errors):
    got = problem(client.post("/v1/evaluate", json=body), status)
    assert [(e["loc"], e["msg"]) for e in got["errors"]] == errors


def test_a_composite_is_the_weighted_sum_of_its_terms(client):
    terms = [({"name": "dice", "params": {"softmax": True}, "reduction": "sum"}, 0.25), ("cross_entropy", 2.0)]
    body = {"loss": {"terms": [{"loss": s, "weight": w} for s, w in terms]}, "inputs": SEG, "return_grad": True}
    out = _post(client, body)
    alone = [_post(client, {"loss": s, "inputs": SEG, "return_grad": True}) for s, _ in terms]
    assert out["loss"] == "composite" and out["reduction"] is None and out["aggregate"] is None
    assert out["elementwise"] is None
    assert [(t["loss"], t["reduction"], t["weight"]) for t in out["terms"]] == [
        ("dice", "sum", 0.25),
        ("cross_entropy", "mean", 2.0),
    ]
    assert [t["value"] for t in out["terms"]] == [a["value"] for a in alone]
    assert out["value"] == pytest.approx(sum(w * a["value"] for (_, w), a in zip(terms, alone, strict=True)), rel=1e-13)
    want = sum(w * _grad(a) for (_, w), a in zip(terms, alone, strict=True))
    np.testing.assert_allclose(_grad(out), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("loss", "extra", "errors"),
    [
        (
            {"terms": [{"loss": {"name": "dice", "reduction": "none"}}]},
            {},
            [(["loss", "terms", 0, "loss", "reduction"], "a term reduces by 'mean' or 'sum', not 'none'")],
        ),
        (
            {"terms": [{"loss": "cross_entropy"}]},
            {"return_elementwise": True},
            [(["return_elementwise"], "composite has no elementwise values: it is a weighted sum")],
        ),
        (
            {"terms": [{"loss": {"terms": [{"loss": "mse"}]}}]},
            {},
            [(["loss", "terms", 0, "loss"], "a term is one loss, not a composite")],
        ),
        (
            {"terms": [{"loss": "cross_entropy"}], "reduction": "sum"},
            {},
            [(["loss"], "a composite takes only 'terms' (each term has its own name, params and reduction)")],
        ),
        (
            {"terms": [{"loss": "cross_entropy", "weight": "1"}]},
            {},
            [(["loss", "terms", 0, "weight"], "input should be a valid number")],
        ),
        (
            {"terms": [{"loss": "dice_ce"}]},
            {},
            [(["loss", "terms", 0, "loss", "name"], "dice_ce is a composite itself; give its terms instead")],
        ),
        (
            {"terms": [{"loss": "mse"}]},
            {},
            [
                (
                    ["inputs", "target"],
                    "mse: expected shape (*) = (4, 3, 5, 5) from input (*) = (4, 3, 5, 5); got (4, 5, 5)",
                )
            ],
        ),
    ],
    ids=["term-none", "elementwise", "nested", "reduction-on-composite", "weight-type", "named-in-terms", "term-shape"],
)
def test_composite_errors(client, loss, extra, errors):
    got = problem(client.post("/v1/evaluate", json={"loss": loss, "inputs": SEG, **extra}), 422)
    assert [(e["loc"], e["msg"]) for e in got["errors"]] == errors


@pytest.mark.parametrize("target", ["index", "index1", "onehot"])
def test_dice_ce_equals_monai_with_each_term_reported(client, target):
    x = torch.tensor(LOGITS, requires_grad=True)
    y = torch.tensor(INDICES)
    params = {"softmax": True, "weight": [0.5, 1.0, 2.0], "lambda_dice": 0.6, "lambda_ce": 1.4, "label_smoothing": 0.05}
    monai = DiceCELoss(
        to_onehot_y=target != "onehot", **{**params, "weight": torch.tensor(params["weight"], dtype=torch.float64)}
    )
    if target == "onehot":
        y_sent = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    else:
        y_sent = y.unsqueeze(1) if target == "index1" else y
    want = monai(x, y_sent if target != "index" else y.unsqueeze(1))
    want.backward()
    sent = {"input": SEG["input"], "target": y_sent.tolist()}
    if target == "onehot":
        sent["target"] = {"data": y_sent.ravel().tolist(), "shape": list(y_sent.shape), "dtype": "float64"}
    out = _post(client, {"loss": {"name": "DiceCELoss", "params": params}, "inputs": sent, "return_grad": ["input"]})
    assert out["loss"] == "dice_ce" and out["aggregate"] is None
    assert [(t["loss"], t["weight"]) for t in out["terms"]] == [("dice", 0.6), ("cross_entropy", 1.4)]
    assert out["value"] == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(_grad(out), x.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_dice_ce_refuses_none_and_elementwise(client):
    got = problem(
        client.post("/v1/evaluate", json={"loss": {"name": "dice_ce", "reduction": "none"}, "inputs": SEG}), 422
    )
    assert got["detail"] == "loss.reduction: dice_ce does not accept reduction 'none'; expected one of mean, sum"


def test_tensors_several_losses_share_are_counted_once(client):
    from service.codecs.tensors import Decoded
    from service.core import Ask, Spec

    core = client.app.state.core
    tensors = {"input": Decoded(LOGITS.copy(), "float64"), "target": Decoded(INDICES.copy(), None)}
    one = core.check(Ask({"": Spec("cross_entropy")}), tensors)
    three = core.check(Ask({"a": Spec("cross_entropy"), "b": Spec("focal"), "c": Spec("nll")}, several=True), tensors)
    assert working_bytes(list(one.values()), json_text) == LOGITS.nbytes + INDICES.nbytes
    # the three share their tensors, and hold one more of the input's size: their memo's log-softmax
    assert working_bytes(list(three.values()), json_text) == 2 * LOGITS.nbytes + INDICES.nbytes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_share_their_log_softmax_and_answer_as_alone(client, monkeypatch, dtype):
    """focal, cross_entropy and dice (its softmax) compute one log-softmax between them (values only),
    bitwise as alone."""
    calls = []
    real = torch.nn.functional.log_softmax
    monkeypatch.setattr(torch.nn.functional, "log_softmax", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs = {**SEG, "input": {**SEG["input"], "dtype": dtype}}
    both = _post(client, {"losses": TRIO, "inputs": inputs})["results"]
    assert len(calls) == 1
    for label, spec in TRIO.items():
        alone = _post(client, {"loss": spec, "inputs": inputs})
        assert both[label]["value"] == alone["value"] and both[label]["aggregate"] == alone["aggregate"]
    assert len(calls) == 3  # alone: focal and dice (its softmax as the exp of it); cross_entropy in F.cross_entropy


def test_a_composite_per_sample_is_the_weighted_sum_and_terms_carry_their_aggregates(client):
    terms = [({"name": "dice", "params": {"softmax": True}}, 1.5), ({"name": "cross_entropy", "reduction": "sum"}, 0.5)]
    body = {"loss": {"terms": [{"loss": s, "weight": w} for s, w in terms]}, "inputs": SEG, "return_per_sample": True}
    out = _post(client, body)
    alone = [_post(client, {"loss": s, "inputs": SEG, "return_per_sample": True}) for s, _ in terms]
    assert [t["aggregate"] for t in out["terms"]] == [a["aggregate"] for a in alone]
    per_sample = sum(w * np.array(a["per_sample"]["data"]) for (_, w), a in zip(terms, alone, strict=True))
    assert out["per_sample"]["shape"] == [4]
    np.testing.assert_allclose(out["per_sample"]["data"], per_sample, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_composites_batch_together_and_answer_as_alone(dtype):
    """Like composites share a compute call (meta.batch_size), with values, per-term values and
    aggregates, per-sample values and gradients bitwise those each gets alone."""
    import asyncio

    rng = np.random.default_rng(5)
    terms = [{"loss": {"name": "dice", "params": {"softmax": True}}, "weight": 0.7}, {"loss": "cross_entropy"}]
    bodies = []
    for _ in range(12):
        n = int(rng.integers(1, 4))
        x = rng.standard_normal((n, 3, 4, 4))
        body = {
            "loss": {"terms": terms},
            "inputs": {
                "input": {"data": x.ravel().tolist(), "shape": list(x.shape), "dtype": dtype},
                "target": rng.integers(0, 3, (n, 4, 4)).tolist(),
            },
            "return_grad": True,
            "return_per_sample": True,
        }
        bodies.append(body)

    answers = asyncio.run(alone_then_together(bodies, max_queue_delay_ms=20.0))
    alone, together = ([r.json() for r in rs] for rs in answers)
    assert max(a["meta"]["batch_size"] for a in together) > 1
    for a, b in zip(alone, together, strict=True):
        a.pop("meta"), b.pop("meta")
        assert a == b


def test_losses_that_convert_a_role_alike_hold_it_once(client):
    """int32 class indices become int64 for each loss: several losses (as a composite's terms)
    hold one int64 array between them, and the budget counts it once."""
    from service.codecs.tensors import Decoded
    from service.core import Ask, Spec

    core = client.app.state.core
    tensors = {"input": Decoded(LOGITS.copy(), "float64"), "target": Decoded(INDICES.astype(np.int32), "int32")}
    jobs = core.check(Ask({"ce": Spec("cross_entropy"), "focal": Spec("focal")}, several=True), tensors)
    assert jobs["ce"].arrays["target"] is jobs["focal"].arrays["target"]
    assert jobs["ce"].arrays["target"].dtype == np.int64
    assert working_bytes(list(jobs.values()), json_text) == 2 * LOGITS.nbytes + INDICES.size * 8


def test_a_composite_is_labelled_composite_in_metrics(client):
    body = {"loss": {"terms": [{"loss": "cross_entropy"}]}, "inputs": SEG}
    _post(client, body)
    assert 'loss="composite"' in client.get("/metrics").text
