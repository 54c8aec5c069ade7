"""Hostile names, params and request shapes (issue 12, items 2, 4 and 5).

Each gets an exact answer whose size does not follow the input's (at most ``MAX_ERRORS`` errors and
one that counts the rest; names quoted by their first 64 characters and their length), and no cache
keeps what a client sent beyond its budget.
"""

from __future__ import annotations

import contextlib
import gc
import tracemalloc

import numpy as np
import orjson

from service.codecs import numeric
from service.codecs.tensors import Decoded
from service.errors import ErrorItem, InvalidInput, UnknownLoss
from service.losses import default_registry
from service.losses import prepare as prepare_module
from service.losses.prepare import prepare

from ..conftest import problem

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
MB = 2**20
JSON = {"Content-Type": "application/json"}
REGISTRY = default_registry()


def post(client, body: dict):
    return client.post("/v1/evaluate", content=orjson.dumps(body), headers=JSON)


def mse(**fields) -> dict:
    return {"loss": "mse", "inputs": {"input": X, "target": X}, **fields}


def errors(body: dict) -> list[tuple[list, str]]:
    return [(e["loc"], e["msg"]) for e in body["errors"]]


def retained(fn, warm) -> int:
    """Bytes of Python allocations that calling ``fn`` leaves behind (after ``warm`` was called once
    untraced, so that imports and first-use caches are not counted)."""
    warm()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# -- loss names (items 2 and 4) ------------------------------------------------------------------


def test_a_ten_megabyte_loss_name_is_a_small_404(client):
    r = post(client, mse(loss="x" * (10 * MB)))
    msg = f"unknown loss '{'x' * 64}'... ({10 * MB} characters); see GET /v1/losses for the catalog"
    body = problem(r, 404)
    assert body["detail"] == f"loss: {msg}"
    assert errors(body) == [(["loss"], msg)]
    assert len(r.content) < 4096


def test_a_long_name_in_the_catalog_path_is_a_small_404(client):
    # (in-process: a server refuses a request target over 8 KB with a 414 before any route)
    r = client.get("/v1/losses/" + "y" * 60_000)
    msg = f"unknown loss '{'y' * 64}'... (60000 characters); see GET /v1/losses for the catalog"
    body = problem(r, 404)
    assert body["detail"] == f"path.name: {msg}"
    assert errors(body) == [(["path", "name"], msg)]
    assert len(r.content) < 4096


def test_a_name_over_64_characters_is_neither_normalized_nor_compared(client):
    name = "cross_entropy" * 5  # 65 characters; a suggestion would be cross_entropy
    msg = f"unknown loss '{name[:64]}'... (65 characters); see GET /v1/losses for the catalog"
    assert errors(problem(client.get(f"/v1/losses/{name}"), 404)) == [(["path", "name"], msg)]
    padded = "mse" + " " * 62  # normalizes to mse, but no loss name is this long
    msg = f"unknown loss {padded[:64]!r}... (65 characters); see GET /v1/losses for the catalog"
    assert errors(problem(post(client, mse(loss=padded)), 404)) == [(["loss"], msg)]
    # shorter names are normalized and compared as before
    msg = "unknown loss 'CrossEntropyLos'; did you mean 'cross_entropy'?"
    assert errors(problem(post(client, mse(loss="CrossEntropyLos")), 404)) == [(["loss"], msg)]
    assert REGISTRY.get("Cross Entropy Loss").name == "cross_entropy"


def test_no_cache_keeps_long_names():
    """The name cache held every name it was asked (+203 MB after twenty 10 MB names)."""

    def ask(i: int) -> None:
        with contextlib.suppress(UnknownLoss):
            REGISTRY.get("mse" + " " * (MB + i))  # normalizes to a real name (it was found)

    def twenty() -> None:
        for i in range(1, 21):
            ask(i)

    assert retained(twenty, lambda: ask(0)) < 64 * 1024


# -- params (items 2 and 5) ----------------------------------------------------------------------


def test_a_million_unknown_params_is_one_small_422(client):
    params = {f"bet{i}": 0 for i in range(10**6)}
    r = post(client, mse(loss={"name": "smooth_l1", "params": params}))
    first = [
        (["loss", "params", f"bet{i}"], f"unknown parameter 'bet{i}' for smooth_l1; did you mean 'beta'?")
        for i in range(20)
    ]
    body = problem(r, 422)
    assert errors(body) == [*first, (["loss", "params"], "... and 999980 more errors")]
    assert body["detail"] == f"loss.params.bet0: {first[0][1]} (and 999999 more)"
    assert len(r.content) < 8192


def test_a_ten_megabyte_param_name_is_quoted_by_its_start(client):
    r = post(client, mse(loss={"name": "smooth_l1", "params": {"b" * (10 * MB): 1}}))
    msg = f"unknown parameter '{'b' * 64}'... ({10 * MB} characters) for smooth_l1; expected beta"
    body = problem(r, 422)
    assert errors(body) == [(["loss", "params"], msg)]  # the loc stops before the name it cannot hold
    assert len(r.content) < 4096


def test_a_list_param_of_a_million_wrong_values_is_one_error(client):
    r = post(client, mse(loss={"name": "cross_entropy", "params": {"weight": ["a"] * 10**6}}))
    msg = "input should be a valid number; got 'a'"
    assert errors(problem(r, 422)) == [(["loss", "params", "weight", 0], msg)]


def test_a_ten_megabyte_param_value_is_quoted_by_its_ends(client):
    r = post(client, mse(loss={"name": "smooth_l1", "params": {"beta": "z" * (10 * MB)}}))
    msg = f"input should be a valid number; got '{'z' * 17}...{'z' * 18}'"
    body = problem(r, 422)
    assert errors(body) == [(["loss", "params", "beta"], msg)]
    assert len(r.content) < 4096


# -- the request's own schema (item 5) ------------------------------------------------------------


def test_a_hundred_thousand_unknown_fields_is_one_small_422(client):
    r = post(client, mse(**{f"k{i}": 0 for i in range(10**5)}))
    first = [([f"k{i}"], f"unknown field 'k{i}'") for i in range(20)]
    body = problem(r, 422)
    assert errors(body) == [*first, ([], "... and 99980 more errors")]
    assert body["detail"] == "k0: unknown field 'k0' (and 99999 more)"
    assert len(r.content) < 8192


def test_unknown_fields_of_the_loss_object_are_counted_under_it(client):
    r = post(client, mse(loss={"name": "mse", **{f"k{i}": 0 for i in range(10**5)}}))
    first = [(["loss", f"k{i}"], f"unknown field 'k{i}'") for i in range(20)]
    assert errors(problem(r, 422)) == [*first, (["loss"], "... and 99980 more errors")]


def test_return_grad_with_a_million_names_is_refused_at_once(client):
    r = post(client, mse(return_grad=["input"] * 10**6))
    assert errors(problem(r, 422)) == [(["return_grad"], "expected at most 64 role names; got 1000000")]


def test_inputs_with_a_hundred_thousand_roles_are_refused_at_once(client):
    r = post(client, mse(inputs={f"r{i}": [1.0] for i in range(10**5)}))
    assert errors(problem(r, 422)) == [(["inputs"], "expected at most 64 roles; got 100000")]


def test_many_wrong_roles_give_twenty_errors_and_a_count(client):
    r = post(client, mse(inputs={f"r{i}": [1.0] for i in range(64)}))
    first = [(["inputs", f"r{i}"], f"unknown role 'r{i}' for mse; expected input, target") for i in range(20)]
    body = problem(r, 422)
    assert errors(body) == [*first, (["inputs"], "... and 46 more errors")]  # 64 unknown, 2 missing
    assert body["detail"] == f"inputs.r0: {first[0][1]} (and 65 more)"


def test_every_error_list_is_capped_where_errors_are_made():
    exc = InvalidInput(errors=[ErrorItem(("inputs", f"r{i}"), "wrong") for i in range(1000)])
    assert [e.loc for e in exc.errors] == [*(("inputs", f"r{i}") for i in range(20)), ("inputs",)]
    assert exc.errors[-1].msg == "... and 980 more errors"
    assert exc.detail == "inputs.r0: wrong (and 999 more)"
    one_more = InvalidInput(errors=[ErrorItem(("a", i), "wrong") for i in range(21)] + [ErrorItem(("b",), "x")])
    assert one_more.errors[-1] == ErrorItem((), "... and 2 more errors")


# -- the plan cache (item 2) ----------------------------------------------------------------------


def _prepare(params: dict, classes: int):
    tensors = {
        "input": Decoded(np.zeros((1, classes), np.float32), None),
        "target": Decoded(np.zeros(1, np.int64), None),
    }
    return prepare(REGISTRY, "cross_entropy", params, "mean", tensors, False, False)


def test_the_plan_cache_stays_within_its_budget_and_serves_repeated_params():
    """Plans are keyed by the params: 10 requests with 200k-value weights kept +179 MB."""
    cache = prepare_module._PLANS
    cache.clear()
    classes = 50_000
    for i in range(40):
        _prepare({"weight": [float(i + 1)] * classes}, classes)
    # what the plans hold at least: their keys (the params' JSON), and a float object (24 bytes)
    # and its slot (8) for each weight
    held = sum(len(key[1]) + 32 * len(plan.params.weight) for key, plan in cache.items())
    assert 0 < held <= 32 * MB
    assert cache.nbytes <= prepare_module.PLAN_BYTES == 32 * MB
    # a client sending batch after batch with the same params still gets the plan it made
    for params, classes in (({}, 3), ({"label_smoothing": 0.1}, 3), ({"weight": [1.0] * 100_000}, 100_000)):
        first, again = _prepare(params, classes), _prepare(orjson.loads(orjson.dumps(params)), classes)
        assert again.plan is first.plan


# -- other caches keyed by what a client sent -----------------------------------------------------


def test_the_json_codec_keeps_no_large_row_structure():
    """The structure of each distinct row shape seen in a large nested array was cached (64 of
    them, each as large as a row: hundreds of MB for rows of millions of values)."""

    def body(n: int) -> bytes:
        return orjson.dumps({"inputs": {"input": np.ones((2, n)).tolist()}})

    bodies = [body(200_000 + i) for i in range(4)]

    def parse(raw: bytes) -> None:
        assert numeric.loads(raw, lambda path: True)["inputs"]["input"].shape[0] == 2

    assert retained(lambda: [parse(b) for b in bodies[1:]], lambda: parse(bodies[0])) < 64 * 1024
