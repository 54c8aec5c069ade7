"""/docs (Swagger UI) and /redoc (ReDoc) work with no network: their pages load only what the
service serves itself (the assets of the fastapi-offline distribution, under /static/docs)."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.e2e
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")  # what a page loads
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.mark.parametrize(
    "page, expected",
    [
        (
            "/docs",
            [
                "/static/docs/swagger-ui.css",
                "/static/docs/favicon.png",
                "/static/docs/swagger-ui-bundle.js",
                "/openapi.json",
            ],
        ),
        ("/redoc", ["/static/docs/favicon.png", "/openapi.json", "/static/docs/redoc.standalone.js"]),
    ],
)
def test_the_pages_load_only_what_the_service_serves(server, page, expected):
    answer = httpx.get(server.url + page, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert references(answer.text) == expected
    assert "://" not in answer.text  # no CDN, no fonts, no validator badge: nothing from elsewhere
    for path in expected:
        asset = httpx.get(server.url + path, timeout=10)
        assert asset.status_code == 200, path
        assert asset.content, path
        suffix = path[path.rindex(".") :]
        assert asset.headers["content-type"] == TYPES.get(suffix, "application/json"), path


def test_the_assets_are_swagger_ui_and_redoc(server):
    def text(name: str) -> str:
        return httpx.get(f"{server.url}/static/docs/{name}", timeout=10).text

    assert "SwaggerUIBundle" in text("swagger-ui-bundle.js")
    assert ".swagger-ui" in text("swagger-ui.css")
    assert "Redoc" in text("redoc.standalone.js")
    assert httpx.get(f"{server.url}/static/docs/favicon.png", timeout=10).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_swagger_uis_oauth2_redirect_page_is_served(server):
    answer = httpx.get(f"{server.url}/docs/oauth2-redirect", timeout=10)
    assert answer.status_code == 200
    assert "://" not in answer.text


def test_only_the_docs_assets_are_served_from_the_static_path(server):
    for path in ("/static/docs/", "/static/docs/__init__.py", "/static/docs/../core.py", "/static/docs/nope.js"):
        answer = httpx.get(server.url + path, timeout=10)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json", path
