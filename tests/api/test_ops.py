"""Health, readiness, info, metrics, request ids, logs and the OpenAPI document."""

from __future__ import annotations

import json
import logging

import torch

from service.observability.logging import JsonFormatter
from service.openapi import DEFAULT_PATH

from ..conftest import problem

MSE = {"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}}


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_when_worker_runs(client):
    assert client.get("/readyz").json() == {"status": "ready", "device": "cpu"}


def test_readyz_is_503_once_the_worker_stopped():
    from ..conftest import make_client

    with make_client() as c:
        c.app.state.engine.stop()
        body = problem(c.get("/readyz"), 503)
        assert body["detail"] == "the compute worker is not running"
        assert c.get("/readyz").headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200  # alive, just not ready


def test_info(client):
    info = client.get("/v1/info").json()
    assert info["device"] == "cpu"
    assert info["torch"] == torch.__version__
    assert info["batching"]["max_batch_requests"] == 64
    assert info["limits"]["max_body_bytes"] == 256 * 1024 * 1024


def test_metrics_count_requests_by_loss_and_status(client):
    client.post("/v1/evaluate", json=MSE)
    client.post("/v1/evaluate", json={**MSE, "loss": "nope"})
    text = client.get("/metrics").text
    assert 'loss_service_requests_total{loss="mse",route="/v1/evaluate",status="200"}' in text
    assert 'loss_service_requests_total{loss="unknown",route="/v1/evaluate",status="404"}' in text
    assert 'loss_service_request_seconds_bucket{le="0.001",loss="mse",route="/v1/evaluate"}' in text
    for name in (
        "queue_depth",
        "inflight_bytes",
        "batch_size_bucket",
        "queue_wait_seconds_bucket",
        "compute_seconds_bucket",
    ):
        assert f"loss_service_{name}" in text


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(made) == 32 and made.isalnum()


def test_access_log_line_per_request_without_tensor_contents(client):
    import io

    log = client.app.state.access_log
    log.enabled, log.stream = True, io.StringIO()
    try:
        body = {"loss": "mse", "inputs": {"input": [[123.456]], "target": [[654.321]]}}
        client.post("/v1/evaluate", json=body, headers={"X-Request-ID": "log-check"})
        log.flush()
        lines = [json.loads(x) for x in log.stream.getvalue().splitlines()]
    finally:
        log.enabled, log.stream = False, None
    (line,) = [x for x in lines if x["request_id"] == "log-check"]
    assert {k: line[k] for k in ("logger", "level", "msg", "method", "path", "status", "loss")} == {
        "logger": "service.access",
        "level": "info",
        "msg": "POST /v1/evaluate 200",
        "method": "POST",
        "path": "/v1/evaluate",
        "status": 200,
        "loss": "mse",
    }
    assert line["duration_ms"] > 0 and line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert line["ts"].endswith("Z")
    assert "123.456" not in json.dumps(line)


def test_access_log_writes_in_batches():
    import asyncio
    import io

    from service.observability.logging import AccessLog

    async def go():
        log = AccessLog(io.StringIO(), interval_s=0.01)
        log.enabled = True
        for i in range(3):
            log.request(f"id-{i}", "GET", f"/healthz/{i}", 200, "", 0.001, 0, 2, "127.0.0.1")
        assert log.stream.getvalue() == ""  # buffered
        await asyncio.sleep(0.05)
        return log.stream.getvalue().splitlines()

    assert [json.loads(x)["msg"] for x in asyncio.run(go())] == [
        "GET /healthz/0 200",
        "GET /healthz/1 200",
        "GET /healthz/2 200",
    ]


def test_json_log_format():
    rec = logging.LogRecord("service.access", logging.INFO, "x.py", 1, "GET %s", ("/healthz",), None)
    rec.request_id = "r1"
    line = json.loads(JsonFormatter().format(rec))
    assert line["msg"] == "GET /healthz"
    assert line["level"] == "info" and line["logger"] == "service.access" and line["request_id"] == "r1"
    assert line["ts"].endswith("Z")


def test_openapi_file_matches_served_document(client):
    served = client.get("/openapi.json").json()
    assert DEFAULT_PATH.exists(), "run: python -m service.openapi"
    assert json.loads(DEFAULT_PATH.read_text()) == served, (
        "openapi/openapi.json is stale: run python -m service.openapi"
    )


def test_openapi_describes_evaluate(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/evaluate"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "EvaluateRequest" in doc["components"]["schemas"]
    assert op["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }


def test_unknown_route_is_problem_json(client):
    body = problem(client.get("/v1/nothing"), 404)
    assert body["detail"] == "GET /v1/nothing: not found"


def test_wrong_method_is_problem_json(client):
    body = problem(client.get("/v1/evaluate"), 405)
    assert body["detail"] == "GET /v1/evaluate: method not allowed; allowed: POST"


def test_access_log_can_be_switched_off():
    from ..conftest import make_client

    with make_client(access_log=False) as c:
        assert c.app.state.access_log.enabled is False


def test_access_log_follows_the_log_level():
    from service.observability.logging import AccessLog

    logger = logging.getLogger("service.access")
    old = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert AccessLog(enabled=True).enabled is True
        logger.setLevel(logging.WARNING)
        assert AccessLog(enabled=True).enabled is False
    finally:
        logger.setLevel(old)


def test_cors_when_origins_are_configured():
    from ..conftest import make_client

    with make_client(cors_origins="https://app.example", auth={"api_keys": ["k"]}) as c:
        pre = c.options(
            "/v1/evaluate",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200  # preflight needs no key
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/healthz", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Request-ID" in r.headers["access-control-expose-headers"]
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_cors_is_off_by_default(client):
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://a.example"}).headers


def test_cors_headers_on_auth_errors():
    from ..conftest import make_client

    with make_client(cors_origins="https://app.example", auth={"api_keys": ["k"]}) as c:
        r = c.get("/v1/losses", headers={"Origin": "https://app.example"})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "https://app.example"
