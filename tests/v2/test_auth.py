"""API keys on the protocol's paths, against a real server with keys set: refusals in the protocol's
error form (tritonclient raises them with our message), health open as /healthz is."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.servers import Server, start

KEY = "v2-test-key"
REQUIRED = "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv: Server = start(tmp_path_factory.mktemp("server"), auth__api_keys=f"other-key,{KEY}")
    yield srv
    srv.stop()


def _inputs() -> list[triton.InferInput]:
    x = triton.InferInput("input", [2, 2], "FP32")
    x.set_data_from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    y = triton.InferInput("target", [2, 2], "FP32")
    y.set_data_from_numpy(np.zeros((2, 2), np.float32), binary_data=False)
    return [x, y]


def test_401_in_the_protocols_form(server):
    for path, method in (("/v2", "GET"), ("/v2/models/mse", "GET"), ("/v2/models/mse/infer", "POST")):
        response = httpx.request(method, server.url + path)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"] == 'Bearer realm="loss-service"'
        assert response.json() == {"error": REQUIRED}
    response = httpx.get(server.url + "/v2", headers={"X-API-Key": "wrong"})
    assert (response.status_code, response.json()) == (401, {"error": "the API key is not valid"})
    assert httpx.get(server.url + "/v1/losses").headers["content-type"] == "application/problem+json"


def test_health_is_open_as_healthz_and_readyz_are(server):
    with triton.InferenceServerClient(url=f"127.0.0.1:{server.port}") as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        with pytest.raises(InferenceServerException) as info:
            client.infer("mse", _inputs())
        assert str(info.value) == f"[401] {REQUIRED}"
        assert not client.is_model_ready("mse")


def test_tritonclient_with_a_key(server):
    with triton.InferenceServerClient(url=f"127.0.0.1:{server.port}") as client:
        headers = {"Authorization": f"Bearer {KEY}"}
        assert client.is_model_ready("mse", headers=headers)
        result = client.infer("mse", _inputs(), headers=headers)
        assert result.as_numpy("value").tolist() == [7.5]
