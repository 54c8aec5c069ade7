"""HTTP details that clients and proxies rely on: HEAD, Allow on 405, no redirects on a trailing
slash, OPTIONS behind API keys, problems with an empty ``errors`` where no field is at fault."""

from __future__ import annotations

from tests.conftest import make_client, problem


def test_head_answers_like_get_without_a_body(client):
    for path in ("/healthz", "/v1/losses", "/v1/losses/mse", "/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers["content-type"] == got.headers["content-type"]


def test_head_of_an_unknown_loss_is_the_404_without_a_body(client):
    head = client.head("/v1/losses/nope")
    assert head.status_code == 404
    assert head.content == b""
    assert head.headers["content-type"] == "application/problem+json"


def test_405_says_which_methods_are_allowed(client):
    body = problem(client.post("/healthz"), 405)
    assert body["detail"] == "POST /healthz: method not allowed; allowed: GET, HEAD"
    assert client.post("/healthz").headers["allow"] == "GET, HEAD"
    response = client.put("/v1/evaluate")
    assert problem(response, 405)["detail"] == "PUT /v1/evaluate: method not allowed; allowed: POST"
    assert response.headers["allow"] == "POST"
    assert client.head("/v1/evaluate").status_code == 405


def test_a_trailing_slash_is_a_404_that_names_the_route_not_a_redirect(client):
    response = client.post("/v1/evaluate/", json={"loss": "mse"}, follow_redirects=False)
    body = problem(response, 404)
    assert body["detail"] == "POST /v1/evaluate/: not found; did you mean /v1/evaluate?"
    assert body["errors"] == []
    assert problem(client.get("/v1/losses/"), 404)["detail"] == "GET /v1/losses/: not found; did you mean /v1/losses?"
    assert problem(client.get("/nothing/"), 404)["detail"] == "GET /nothing/: not found"


def test_options_needs_the_api_key_like_any_other_method():
    """With CORS off, OPTIONS is an ordinary method: without a key it learns nothing (it got
    307/405/404 before, which told which routes exist)."""
    with make_client(auth={"api_keys": ["k1"]}) as c:
        for path in ("/v1/evaluate", "/v1/evaluate/", "/v1/losses", "/nothing"):
            response = c.options(path)
            assert (
                problem(response, 401)["detail"]
                == "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            )
        with_key = c.options("/v1/evaluate", headers={"X-API-Key": "k1"})
        assert problem(with_key, 405)["detail"] == "OPTIONS /v1/evaluate: method not allowed; allowed: POST"
        assert (
            problem(c.options("/nothing", headers={"X-API-Key": "k1"}), 404)["detail"] == "OPTIONS /nothing: not found"
        )


def test_cors_preflight_still_answers_without_a_key():
    with make_client(auth={"api_keys": ["k1"]}, cors_origins=["https://app.example"]) as c:
        response = c.options(
            "/v1/evaluate",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
