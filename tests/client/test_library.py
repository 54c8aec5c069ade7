"""loss_client.Client against a real server: values, gradients and elementwise values equal to
torch's (computed here in float64), the API key from the environment, and error answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from loss_client import Client, LossServiceError

from tests.client.conftest import API_KEY

pytestmark = pytest.mark.e2e

TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def client(server):
    with Client(server.url, api_key=API_KEY) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(13)


def close(actual, expected: torch.Tensor) -> None:
    np.testing.assert_allclose(actual, expected.detach().numpy(), **TOL)


def test_losses_lists_the_catalog(client):
    losses = {entry["name"]: entry for entry in client.losses()}
    assert {"mse", "cross_entropy", "focal", "dice"} <= set(losses)
    assert losses["mse"]["category"] == "regression"
    assert losses["mse"]["summary"] == "Mean squared error (x - y)^2 (PyTorch MSELoss)."


def test_loss_by_alias(client):
    entry = client.loss("CrossEntropyLoss")
    assert entry["name"] == "cross_entropy"
    assert [role["name"] for role in entry["roles"]] == ["input", "target"]


def test_mse_float64_in_float64_out(client, rng):
    x, y = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    result = client.evaluate("mse", {"input": x, "target": y})
    assert isinstance(result.value, float)
    close(result.value, F.mse_loss(torch.from_numpy(x), torch.from_numpy(y)))
    assert (result.loss, result.reduction) == ("mse", "mean")
    assert result.meta["dtype"] == "float64"
    assert result.elementwise is None
    assert result.grad == {}
    assert result.aggregate == {"sum": result.aggregate["sum"], "weight": 20.0}  # S and the element count
    assert result.aggregate["sum"] / 20.0 == result.value
    assert result.per_sample is None
    assert result.raw["value"] == result.value


def test_mse_gradients_of_every_role(client, rng):
    x, y = rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2, 2))
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    F.mse_loss(tx, ty, reduction="sum").backward()
    result = client.evaluate("mse", {"input": x, "target": y}, reduction="sum", return_grad=True)
    assert set(result.grad) == {"input", "target"}
    assert result.grad["input"].dtype == np.float64
    close(result.grad["input"], tx.grad)
    close(result.grad["target"], ty.grad)


def test_cross_entropy_index_targets_and_class_weights(client, rng):
    x, t, w = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6), [0.5, 1.0, 2.0, 0.25]
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, dtype=torch.float64)
    expected = F.cross_entropy(tx, torch.from_numpy(t), weight=tw)
    expected.backward()
    result = client.evaluate(
        "cross_entropy", {"input": x, "target": t}, params={"weight": w}, return_grad=["input"], return_elementwise=True
    )
    close(result.value, expected)
    close(result.grad["input"], tx.grad)
    assert list(result.grad) == ["input"]
    elementwise = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t), weight=tw, reduction="none")
    assert result.elementwise.shape == (6,)
    close(result.elementwise, elementwise)


def focal(x: torch.Tensor, t: torch.Tensor, gamma: float, alpha: list[float]) -> torch.Tensor:
    """Softmax focal loss written out: -alpha_t (1 - p_t)^gamma log p_t, mean over elements."""
    log_p_t = torch.log_softmax(x, dim=1).gather(1, t.unsqueeze(1)).squeeze(1)
    alpha_t = torch.tensor(alpha, dtype=x.dtype)[t]
    return (-alpha_t * (1 - log_p_t.exp()) ** gamma * log_p_t).mean()


def test_focal_with_params(client, rng):
    x, t = rng.normal(size=(2, 3, 4, 4)), rng.integers(0, 3, size=(2, 4, 4))
    params = {"gamma": 1.5, "alpha": [0.25, 0.75, 0.5]}
    tx = torch.tensor(x, requires_grad=True)
    expected = focal(tx, torch.from_numpy(t), **params)
    expected.backward()
    result = client.evaluate("focal", {"input": x, "target": t}, params=params, return_grad="input")
    close(result.value, expected)
    close(result.grad["input"], tx.grad)


def test_reduction_none_gives_elementwise_and_no_value(client, rng):
    x, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    result = client.evaluate("l1", {"input": x, "target": y}, reduction="none")
    assert result.value is None
    close(result.elementwise, F.l1_loss(torch.from_numpy(x), torch.from_numpy(y), reduction="none"))


def test_float32_in_float32_out(client, rng):
    x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    result = client.evaluate("smooth_l1", {"input": x, "target": y}, return_grad=["input"])
    assert result.meta["dtype"] == "float32"
    assert result.grad["input"].dtype == np.float32
    tx = torch.tensor(x, requires_grad=True)
    F.smooth_l1_loss(tx, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(result.grad["input"], tx.grad.numpy(), rtol=1e-6)


def test_url_and_api_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("LOSS_SERVICE_URL", server.url + "/")
    monkeypatch.setenv("LOSS_SERVICE_API_KEY", API_KEY)
    with Client() as c:
        assert c.url == server.url
        assert c.loss("mse")["name"] == "mse"


def test_401_without_a_key(server, monkeypatch):
    monkeypatch.delenv("LOSS_SERVICE_API_KEY", raising=False)
    with Client(server.url) as c, pytest.raises(LossServiceError) as info:
        c.losses()
    exc = info.value
    assert (exc.status, exc.title, exc.errors) == (401, "Unauthorized", [])
    assert str(exc) == exc.detail == "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


def test_401_with_a_wrong_key(server):
    with Client(server.url, api_key="wrong") as c, pytest.raises(LossServiceError) as info:
        c.evaluate("mse", {"input": np.ones((1, 2)), "target": np.ones((1, 2))})
    assert (info.value.status, str(info.value)) == (401, "the API key is not valid")


def test_404_unknown_loss_in_the_catalog(client):
    with pytest.raises(LossServiceError) as info:
        client.loss("cross_entropyy")
    exc = info.value
    assert (exc.status, exc.title) == (404, "Unknown loss")
    assert exc.detail == "path.name: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"
    assert exc.errors == [
        {"loc": ["path", "name"], "msg": "unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"}
    ]
    assert str(exc) == "path.name: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"


def test_404_unknown_loss_to_evaluate(client):
    with pytest.raises(LossServiceError) as info:
        client.evaluate("msee", {"input": np.ones((1, 2)), "target": np.ones((1, 2))})
    assert info.value.status == 404
    assert str(info.value) == "loss: unknown loss 'msee'; did you mean 'mse'?"


def test_422_unknown_param(client, rng):
    with pytest.raises(LossServiceError) as info:
        client.evaluate("focal", {"input": rng.normal(size=(2, 3)), "target": np.array([0, 2])}, params={"gama": 2})
    exc = info.value
    assert (exc.status, exc.title) == (422, "Invalid input")
    assert exc.detail == "loss.params.gama: unknown parameter 'gama' for focal; did you mean 'gamma'?"
    assert exc.errors == [
        {"loc": ["loss", "params", "gama"], "msg": "unknown parameter 'gama' for focal; did you mean 'gamma'?"}
    ]


def test_422_with_several_errors_lists_each(client):
    with pytest.raises(LossServiceError) as info:
        client.evaluate("mse", {"input": np.ones((2, 2)), "targt": np.ones((2, 2))})
    assert info.value.status == 422
    assert str(info.value) == (
        "inputs.targt: unknown role 'targt' for mse; expected input, target (and 1 more)\n"
        "  inputs.targt: unknown role 'targt' for mse; expected input, target\n"
        "  inputs.target: missing required role 'target' with shape (*)"
    )
