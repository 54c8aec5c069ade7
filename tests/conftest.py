"""Shared fixtures: a clean environment, the app under a real ASGI client, request helpers."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests never read the developer's LOSS_SERVICE_* variables."""
    for key in list(os.environ):
        if key.startswith("LOSS_SERVICE_"):
            monkeypatch.delenv(key)


def make_client(**overrides) -> TestClient:
    """A client of an app built with ``Settings(**overrides)``; use as a context manager."""
    return TestClient(create_app(Settings(**overrides)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


async def alone_then_together(
    bodies: list[dict], order: list[int] | None = None, max_queue_delay_ms: float = 5.0
) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """POST each of ``bodies`` to /v1/evaluate alone, one after another, then all at once in
    ``order`` (default: as given), through the app's HTTP stack with the worker waiting up to
    ``max_queue_delay_ms`` for company; the answers, both lists in the bodies' order."""
    order = list(range(len(bodies))) if order is None else order
    app = create_app(Settings(engine={"max_queue_delay_ms": max_queue_delay_ms}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:
            alone = [await client.post("/v1/evaluate", json=b) for b in bodies]
            shuffled = await asyncio.gather(*(client.post("/v1/evaluate", json=bodies[i]) for i in order))
    together: list = [None] * len(bodies)
    for i, r in zip(order, shuffled, strict=True):
        together[i] = r
    return alone, together


def problem(response, status: int) -> dict:
    """Assert a problem+json response of ``status`` and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert set(body) == {"type", "title", "status", "detail", "errors"}
    return body


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
