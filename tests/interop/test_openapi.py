"""The served OpenAPI document describes what the service accepts: every request the README and
the examples show is valid against its EvaluateRequest schema (the short form ``"loss": "mse"``
was not), and the README's JSON requests are answered 200 by the server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.e2e.servers import ROOT

pytestmark = pytest.mark.e2e
JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", re.S | re.M)
CURL_DATA = re.compile(r"(?:-d|--data(?:-raw|-binary)?)\s+'(\{[^']*\})'")  # a curl body in single quotes
CURL_REQUEST_PART = re.compile(r"-F\s+'request=(\{[^']*\})'")  # the JSON part of a multipart request


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "examples").glob("**/README.md"))]


def json_requests() -> list[tuple[str, dict]]:
    """Every ```json block of the README and the examples' READMEs that is an evaluate request
    (it has ``loss`` or ``losses`` and is no answer)."""
    found = []
    for path in documents():
        for i, block in enumerate(JSON_BLOCK.findall(path.read_text())):
            if '"loss' not in block:
                continue
            value = json.loads(block)  # an example that mentions a loss is valid JSON
            if isinstance(value, dict) and not {"value", "meta", "results"} & set(value):
                found.append((f"{path.relative_to(ROOT)} json block {i + 1}", value))
    return found


def curl_requests() -> list[tuple[str, dict]]:
    """The bodies and request parts of the curl commands in the documents and curl examples."""
    found = []
    for path in [*documents(), *sorted((ROOT / "examples" / "curl").glob("*.sh"))]:
        text = path.read_text()
        for pattern in (CURL_DATA, CURL_REQUEST_PART):
            for i, body in enumerate(pattern.findall(text)):
                found.append((f"{path.relative_to(ROOT)} curl body {i + 1}", json.loads(body)))
    return found


@pytest.fixture(scope="module")
def validator(server) -> jsonschema.Draft202012Validator:
    components = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["components"]
    schema = {"$ref": "#/components/schemas/EvaluateRequest", "components": components}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, request: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(request)]


def test_the_schema_takes_the_loss_by_name_or_as_a_spec(validator):
    assert errors(validator, {"loss": "mse"}) == []
    assert errors(validator, {"loss": {"name": "focal", "params": {"gamma": 2.0}, "reduction": "sum"}}) == []
    assert errors(validator, {"loss": 3})
    assert errors(validator, {"loss": {"name": "mse", "gamma": 2.0}})
    assert errors(validator, {"loss": "mse", "inputs": {"input": "1.0"}})
    assert errors(validator, {"loss": "mse", "return_elementwise": "yes"})


def test_the_documents_show_both_forms_of_the_loss():
    losses = [request["loss"] for _, request in json_requests() + curl_requests() if "loss" in request]
    assert any(isinstance(loss, str) for loss in losses)
    assert any(isinstance(loss, dict) for loss in losses)


@pytest.mark.parametrize(
    "where, request_", json_requests() + curl_requests(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_documented_request_is_valid_against_the_served_schema(validator, where, request_):
    assert errors(validator, request_) == []


@pytest.mark.parametrize("where, request_", json_requests(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_json_request_of_the_documents_is_answered(server, where, request_):
    answer = httpx.post(f"{server.url}/v1/evaluate", json=request_, timeout=30)
    assert answer.status_code == 200, answer.text
