"""Shared fixtures: a clean environment, the app under a real ASGI client, request helpers."""

from __future__ import annotations

import os

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
