"""The tensor forms of the contract give one answer; dtypes in, dtypes out; non-finite results."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ..conftest import problem

X = [[0.1, -1.25, 3.5], [2.0, 0.7, -0.3]]
Y = [[1.0, -1.0, 3.0], [0.0, 1.0, 0.5]]
WANT = {"return_elementwise": True, "return_grad": True}


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def b64npy(arr: np.ndarray) -> str:
    return base64.b64encode(npy(arr)).decode("ascii")


def flat(values) -> list:
    return np.asarray(values).reshape(-1).tolist()


def evaluate(client, request: dict) -> dict:
    r = client.post("/v1/evaluate", json=request)
    assert r.status_code == 200, r.text
    return r.json()


def tensor(out: dict) -> np.ndarray:
    """A response tensor, JSON or npy encoded, as a numpy array of its shape."""
    if "npy" in out:
        arr = np.load(io.BytesIO(base64.b64decode(out["npy"])), allow_pickle=False)
    else:
        # JSON numbers are the shortest text that reads back to the dtype's value (float32 0.81)
        storage = np.float32 if out["dtype"] == "bfloat16" else np.dtype(out["dtype"])
        arr = np.array([float(v) for v in out["data"]], dtype=np.float64).astype(storage)
    return arr.reshape(out["shape"])


def answer(body: dict) -> dict:
    """What a response says about the loss, without timings."""
    return {
        "loss": body["loss"],
        "reduction": body["reduction"],
        "value": body["value"],
        "elementwise": body["elementwise"],
        "grad": body["grad"],
        "dtype": body["meta"]["dtype"],
    }


def torch_mse(x, y, dtype, reduction="mean"):
    xt = torch.tensor(x, dtype=torch.float64).to(dtype).requires_grad_(True)
    yt = torch.tensor(y, dtype=torch.float64).to(dtype).requires_grad_(True)
    el = F.mse_loss(xt, yt, reduction="none")
    value = F.mse_loss(xt, yt, reduction=reduction)
    gx, gy = torch.autograd.grad(value.sum(), [xt, yt])
    return value.detach(), el.detach(), gx, gy


# -- one answer, whatever the form --------------------------------------------------------------

JSON_FORMS = {
    "nested": (X, Y),
    "nested-ints-for-a-float-role": (X, [[1, -1, 3], [0, 1, 0.5]]),
    "data-shape-dtype": (
        {"data": flat(X), "shape": [2, 3], "dtype": "float32"},
        {"data": flat(Y), "shape": [2, 3], "dtype": "float32"},
    ),
    "data-shape": ({"data": flat(X), "shape": [2, 3]}, {"data": flat(Y), "shape": [2, 3]}),
    "nested-data-dtype": ({"data": X, "dtype": "float32"}, {"data": Y, "dtype": "float32"}),
    "nested-data-checked-shape": ({"data": X, "shape": [2, 3]}, {"data": Y, "shape": [2, 3], "dtype": "float32"}),
    "npy": ({"npy": b64npy(np.array(X, np.float32))}, {"npy": b64npy(np.array(Y, np.float32))}),
    "npy-big-endian-fortran": (
        {"npy": b64npy(np.asfortranarray(np.array(X, ">f4")))},
        {"npy": b64npy(np.asfortranarray(np.array(Y, ">f4")))},
    ),
    "mixed": (X, {"npy": b64npy(np.array(Y, np.float32))}),
}


@pytest.fixture(scope="module")
def reference(client):
    return answer(evaluate(client, {"loss": "mse", "inputs": {"input": X, "target": Y}, **WANT}))


def test_npy_tensor_reaches_torch(client):
    """The first .npy-decoded array that torch sees must not raise the non-writable-array warning."""
    body = evaluate(client, {"loss": "mse", "inputs": {"input": {"npy": b64npy(np.array(X, np.float32))}, "target": Y}})
    assert body["meta"]["dtype"] == "float32"


def test_reference_agrees_with_torch(reference):
    value, el, gx, gy = torch_mse(X, Y, torch.float32)
    assert reference["dtype"] == "float32"
    assert reference["value"] == value.item()
    np.testing.assert_array_equal(tensor(reference["elementwise"]), el.numpy())
    np.testing.assert_array_equal(tensor(reference["grad"]["input"]), gx.numpy())
    np.testing.assert_array_equal(tensor(reference["grad"]["target"]), gy.numpy())


@pytest.mark.parametrize("form", JSON_FORMS)
def test_json_forms_give_identical_answers(client, reference, form):
    x, y = JSON_FORMS[form]
    assert answer(evaluate(client, {"loss": "mse", "inputs": {"input": x, "target": y}, **WANT})) == reference


def _multipart(client, request_part):
    files = {
        "request": request_part,
        "input": ("input.npy", npy(np.array(X, np.float32)), "application/octet-stream"),
        "target": ("target.npy", npy(np.array(Y, np.float32)), "application/octet-stream"),
    }
    r = client.post("/v1/evaluate", files=files)
    assert r.status_code == 200, r.text
    return r.json()


REQUEST = json.dumps({"loss": "mse", **WANT})


def test_multipart_with_npy_files(client, reference):
    assert answer(_multipart(client, (None, REQUEST))) == reference


def test_multipart_with_the_request_as_a_file_part(client, reference):
    assert answer(_multipart(client, ("request.json", REQUEST.encode(), "application/json"))) == reference


def test_multipart_mixes_json_and_file_roles(client, reference):
    request = json.dumps({"loss": "mse", "inputs": {"target": Y}, **WANT})
    files = {"request": (None, request), "input": ("input.npy", npy(np.array(X, np.float32)))}
    r = client.post("/v1/evaluate", files=files)
    assert r.status_code == 200, r.text
    assert answer(r.json()) == reference


def test_npy_response_encoding_matches_the_json_one(client, reference):
    body = evaluate(client, {"loss": "mse", "inputs": {"input": X, "target": Y}, **WANT, "response_encoding": "npy"})
    assert body["value"] == reference["value"]
    for got, want in [
        (body["elementwise"], reference["elementwise"]),
        (body["grad"]["input"], reference["grad"]["input"]),
        (body["grad"]["target"], reference["grad"]["target"]),
    ]:
        assert set(got) == {"shape", "dtype", "npy"}
        assert got["shape"] == want["shape"] == [2, 3]
        assert got["dtype"] == "float32"
        arr = tensor(got)
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, tensor(want))


def test_zero_dimensional_tensors_agree_across_forms(client):
    """A 0-d .npy stays 0-d: shape () like {data: [2.0], shape: []}."""
    json_form = {"data": [2.0], "shape": []}
    npy_form = {"npy": b64npy(np.array(2.0, np.float32))}
    target = {"data": [0.5], "shape": []}
    for x in (json_form, npy_form):
        body = evaluate(client, {"loss": "mse", "inputs": {"input": x, "target": target}, **WANT})
        assert body["value"] == 2.25
        assert body["elementwise"] == {"shape": [], "dtype": "float32", "data": [2.25]}
        assert body["grad"]["input"] == {"shape": [], "dtype": "float32", "data": [3.0]}


def test_zero_dimensional_npy_response(client):
    request = {"loss": "mse", "inputs": {"input": {"data": [2.0], "shape": []}, "target": {"data": [0.5], "shape": []}}}
    body = evaluate(client, {**request, **WANT, "response_encoding": "npy"})
    el = np.load(io.BytesIO(base64.b64decode(body["elementwise"]["npy"])), allow_pickle=False)
    assert el.shape == ()
    assert el.item() == 2.25


# -- the request's other spellings ------------------------------------------------------------


@pytest.mark.parametrize(
    "loss", ["mse", {"name": "mse"}, {"name": "MSELoss"}, "mse_loss", {"name": "mse", "params": {}}]
)
def test_loss_spellings(client, reference, loss):
    assert answer(evaluate(client, {"loss": loss, "inputs": {"input": X, "target": Y}, **WANT})) == reference


def test_default_reduction_is_mean(client):
    body = evaluate(client, {"loss": "mse", "inputs": {"input": X, "target": Y}})
    assert body["reduction"] == "mean"
    assert body["elementwise"] is None and body["grad"] is None
    summed = evaluate(client, {"loss": {"name": "mse", "reduction": "sum"}, "inputs": {"input": X, "target": Y}})
    assert body["value"] == pytest.approx(summed["value"] / 6, rel=1e-6)
    assert body["value"] == torch_mse(X, Y, torch.float32)[0].item()


def test_reduction_none_returns_elementwise_and_no_value(client, reference):
    body = evaluate(client, {"loss": {"name": "mse", "reduction": "none"}, "inputs": {"input": X, "target": Y}})
    assert body["value"] is None
    assert body["elementwise"] == reference["elementwise"]


# -- dtypes --------------------------------------------------------------------------------------

X64 = [[0.1, 1 / 3, -2.0 / 7], [1e-3, 12345.678901234, -0.2]]
Y64 = [[0.2, 1 / 7, 0.5], [-1e-3, 12345.6789, 0.3]]


def test_float64_in_is_float64_out_at_full_precision(client):
    request = {
        "loss": "mse",
        "inputs": {
            "input": {"data": X64, "dtype": "float64"},
            "target": {"data": flat(Y64), "shape": [2, 3], "dtype": "float64"},
        },
        **WANT,
    }
    body = evaluate(client, request)
    value, el, gx, gy = torch_mse(X64, Y64, torch.float64)
    assert body["meta"]["dtype"] == "float64"
    assert abs(body["value"] - value.item()) <= 1e-12 * abs(value.item())
    assert abs(body["value"] - torch_mse(X64, Y64, torch.float32)[0].item()) > 1e-9  # float32 would not do
    for out, want in [(body["elementwise"], el), (body["grad"]["input"], gx), (body["grad"]["target"], gy)]:
        assert out["dtype"] == "float64"
        np.testing.assert_allclose(tensor(out), want.numpy(), rtol=1e-12, atol=0)
    encoded = evaluate(client, {**request, "response_encoding": "npy"})
    for part in ("elementwise", "grad"):
        got, want = encoded[part], body[part]
        for key in ("input", "target") if part == "grad" else (None,):
            arr = tensor(got[key] if key else got)
            assert arr.dtype == np.float64  # '<f8' in the .npy itself
            np.testing.assert_array_equal(arr, tensor(want[key] if key else want))


def test_float64_npy_in_is_float64_out(client):
    request = {
        "loss": "mse",
        "inputs": {"input": {"npy": b64npy(np.array(X64))}, "target": {"npy": b64npy(np.array(Y64))}},
    }
    body = evaluate(client, request)
    assert body["meta"]["dtype"] == "float64"
    assert abs(body["value"] - torch_mse(X64, Y64, torch.float64)[0].item()) <= 1e-12 * body["value"]


def test_float64_and_float32_promote_to_float64(client):
    request = {
        "loss": "mse",
        "inputs": {"input": {"data": X64, "dtype": "float64"}, "target": {"data": Y64, "dtype": "float32"}},
    }
    assert evaluate(client, request)["meta"]["dtype"] == "float64"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_computed_in_that_dtype(client, dtype):
    name = str(dtype).removeprefix("torch.")
    request = {
        "loss": "mse",
        "inputs": {"input": {"data": X, "dtype": name}, "target": {"data": Y, "dtype": name}},
        **WANT,
    }
    body = evaluate(client, request)
    value, el, gx, gy = torch_mse(X, Y, dtype)
    assert body["meta"]["dtype"] == name
    # the value is one of that dtype's numbers, and torch's own in that dtype
    assert torch.tensor(body["value"], dtype=dtype).item() == body["value"]
    torch.testing.assert_close(torch.tensor(body["value"], dtype=dtype), value)
    assert body["value"] != torch_mse(X, Y, torch.float32)[0].item()
    for out, want in [(body["elementwise"], el), (body["grad"]["input"], gx), (body["grad"]["target"], gy)]:
        assert out["dtype"] == name and out["shape"] == [2, 3]
        torch.testing.assert_close(torch.tensor(tensor(out), dtype=dtype), want)


# -- non-finite results ------------------------------------------------------------------------


def test_overflow_in_float32_is_written_as_infinity_strings(client):
    request = {"loss": "mse", "inputs": {"input": [3e38, 1.0], "target": [-3e38, 1.0]}, **WANT}
    body = evaluate(client, request)
    value, el, gx, gy = torch_mse([3e38, 1.0], [-3e38, 1.0], torch.float32)
    assert [value.item(), *el.tolist(), *gx.tolist(), *gy.tolist()] == [np.inf, np.inf, 0.0, np.inf, 0.0, -np.inf, 0.0]
    assert body["value"] == "Infinity"
    assert body["elementwise"]["data"] == ["Infinity", 0.0]
    assert body["grad"]["input"]["data"] == ["Infinity", 0.0]
    assert body["grad"]["target"]["data"] == ["-Infinity", 0.0]
    encoded = evaluate(client, {**request, "response_encoding": "npy"})
    assert encoded["value"] == "Infinity"
    np.testing.assert_array_equal(tensor(encoded["grad"]["target"]), np.array([-np.inf, 0.0], np.float32))


def test_overflow_in_float16(client):
    request = {
        "loss": "mse",
        "inputs": {
            "input": {"data": [300.0, 1.0], "dtype": "float16"},
            "target": {"data": [-300.0, 1.0], "dtype": "float16"},
        },
        **WANT,
    }
    body = evaluate(client, request)
    assert torch_mse([300.0, 1.0], [-300.0, 1.0], torch.float16)[0].item() == np.inf
    assert body["value"] == "Infinity"
    assert body["elementwise"] == {"shape": [2], "dtype": "float16", "data": ["Infinity", 0.0]}
    assert body["grad"]["input"] == {"shape": [2], "dtype": "float16", "data": [600.0, 0.0]}


def test_empty_tensors_are_refused(client):
    # PyTorch's mean of nothing is NaN (and some of its losses return uninitialised memory)
    body = problem(client.post("/v1/evaluate", json={"loss": "mse", "inputs": {"input": [], "target": []}}), 422)
    assert body["detail"] == "inputs.input: expected at least one element; got shape (0,)"


def test_non_finite_strings_are_not_accepted_as_input(client):
    body = problem(
        client.post("/v1/evaluate", json={"loss": "mse", "inputs": {"input": ["Infinity"], "target": [1.0]}}), 422
    )
    assert body["errors"] == [{"loc": ["inputs", "input"], "msg": "expected numbers; got strings"}]


# -- large nested arrays (codecs.numeric parses them piece by piece) -----------------------------

LARGE_X = np.random.default_rng(3).standard_normal((4000, 20)).astype(np.float32)  # ~1.6 MB as JSON
LARGE_T = np.random.default_rng(4).integers(0, 20, 4000)


def test_large_nested_arrays_agree_with_npy_and_torch(client):
    want = {"loss": "cross_entropy", "return_grad": ["input"]}
    body = json.dumps({**want, "inputs": {"input": LARGE_X.tolist(), "target": LARGE_T.tolist()}})
    nested = client.post("/v1/evaluate", content=body, headers={"content-type": "application/json"})
    assert nested.status_code == 200, nested.text
    assert len(nested.request.content) > 4 * 256 * 1024  # several pieces of the large-array parser
    as_npy = evaluate(
        client, {**want, "inputs": {"input": {"npy": b64npy(LARGE_X)}, "target": {"npy": b64npy(LARGE_T)}}}
    )
    assert answer(nested.json()) == answer(as_npy)
    x = torch.from_numpy(LARGE_X).requires_grad_(True)
    value = F.cross_entropy(x, torch.from_numpy(LARGE_T))
    (grad,) = torch.autograd.grad(value, [x])
    # the mean of PyTorch's elementwise values, summed exactly and rounded once to float32 (PyTorch's
    # fused kernel accumulates in float32, and here lands an ulp away)
    elementwise = F.cross_entropy(x.detach(), torch.from_numpy(LARGE_T), reduction="none")
    assert nested.json()["value"] == elementwise.double().mean().float().item()
    assert nested.json()["value"] == pytest.approx(value.item(), rel=2 * torch.finfo(torch.float32).eps)
    np.testing.assert_array_equal(tensor(nested.json()["grad"]["input"]), grad.numpy())


@pytest.mark.parametrize(
    ("last_row", "detail"),
    [
        ("[1.0]", "expected a rectangular nested array of numbers; got a ragged one"),
        ("[1.0, null" + ", 1.0" * 18 + "]", "expected numbers; got null"),
    ],
)
def test_large_irregular_nested_arrays_get_the_small_ones_errors(client, last_row, detail):
    rows = ",".join(json.dumps(r) for r in LARGE_X.tolist()) + "," + last_row
    r = client.post("/v1/evaluate", content=f'{{"loss": "mse", "inputs": {{"input": [{rows}], "target": [{rows}]}}}}',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert problem(r, 422)["errors"][0] == {"loc": ["inputs", "input"], "msg": detail}


def test_large_malformed_json_is_a_400_with_orjsons_position(client):
    rows = ",".join(json.dumps(r) for r in LARGE_X.tolist())
    text = f'{{"loss": "mse", "inputs": {{"input": [{rows}, [01]]}}}}'
    r = client.post("/v1/evaluate", content=text, headers={"content-type": "application/json"})
    at = text.index("[01]") + 1  # orjson points at the leading zero, counted in the whole body
    assert problem(r, 400)["detail"] == (
        f"body: malformed JSON: number with leading zero is not allowed: line 1 column {at + 1} (char {at})"
    )
