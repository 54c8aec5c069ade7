"""The protocol on the wire, with raw HTTP against a real server with small limits: the error body
and statuses (the Gateway's refusals included), the binary tensor data extension both ways
(byte layout, BF16, alignment), defaults, and the metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from tests.e2e.servers import Server, close, read_answer, start

BODY_LIMIT, ELEMENTS, BUDGET = 200_000, 5_000, 150_000
INFER = "/v2/models/cross_entropy/infer"
LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
LABELS = np.array([0, 2], np.int64)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv: Server = start(
        tmp_path_factory.mktemp("server"),
        limits__max_body_bytes=BODY_LIMIT,
        limits__max_elements=ELEMENTS,
        limits__read_timeout_s=1,
        engine__inflight_bytes=BUDGET,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server: Server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> str:
    """The protocol's error body: exactly ``{"error": <message>}``, as JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    return body["error"]


def binary_body(head: dict, *arrays: np.ndarray) -> dict:
    """httpx's arguments for the JSON ``head`` followed by the arrays' raw bytes."""
    text = json.dumps(head).encode()
    content = text + b"".join(a.tobytes() for a in arrays)
    return {"content": content, "headers": {"Inference-Header-Content-Length": str(len(text))}}


def binary_input(name: str, arr: np.ndarray, datatype: str) -> dict:
    size = {"binary_data_size": arr.nbytes}
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "parameters": size}


def json_input(name: str, arr: np.ndarray, datatype: str) -> dict:
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.tolist()}


def split(response: httpx.Response) -> tuple[dict, bytes]:
    n = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:n]), response.content[n:]


# --- errors ----------------------------------------------------------------------------------------
def test_413_from_content_length_in_the_protocols_form(http):
    message = error_of(http.post(INFER, content=b" " * (BODY_LIMIT + 1)), 413)
    assert message == f"request body is larger than the limit of {BODY_LIMIT} bytes"


def test_413_tensor_over_the_element_limit(http):
    big = np.zeros(ELEMENTS + 1, np.float32)
    head = {"inputs": [binary_input("input", big, "FP32"), binary_input("target", big, "FP32")]}
    message = error_of(http.post("/v2/models/mse/infer", **binary_body(head, big, big)), 413)
    assert message == f"inputs.input: tensor has {ELEMENTS + 1} elements; the limit is {ELEMENTS}"


def test_429_when_the_body_fills_the_budget(http):
    response = http.post(INFER, content=b" " * (BUDGET + 1000))
    assert error_of(response, 429) == "the in-flight byte budget is full; retry later"
    assert response.headers["retry-after"] == "1"


def test_400_body_read_timeout(server):
    async def slow() -> tuple[int, dict, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
        await writer.drain()
        try:
            return await read_answer(reader)
        finally:
            await close(writer)

    status, headers, body = asyncio.run(slow())
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body) == {"error": "the request body did not arrive within 1 s"}


def test_400_malformed_json_and_binary_data(http):
    assert error_of(http.post(INFER, content=b"{"), 400).startswith("body: malformed JSON: ")
    head = {"inputs": [binary_input("input", LOGITS, "FP32"), binary_input("target", LABELS, "INT64")]}
    sent = binary_body(head, LOGITS, LABELS)
    message = error_of(http.post(INFER, content=sent["content"][:-4], headers=sent["headers"]), 400)
    assert message == "body: the binary data is 36 bytes; the inputs' binary_data_size add up to 40"
    head["inputs"][0]["parameters"]["binary_data_size"] = 20
    sent = binary_body(head, LOGITS.reshape(-1)[:5], LABELS)
    message = error_of(http.post(INFER, **sent), 400)
    assert message == "inputs.input.parameters.binary_data_size: expected 24 bytes for shape (2, 3) of FP32; got 20"
    message = error_of(http.post(INFER, content=sent["content"], headers={"Inference-Header-Content-Length": "x"}), 400)
    assert message == "headers.Inference-Header-Content-Length: expected a number of bytes"


def test_header_length_beyond_the_body_and_compressed_bodies(http):
    sent = binary_body({"inputs": [json_input("input", LOGITS, "FP32"), json_input("target", LABELS, "INT64")]})
    size = len(sent["content"])
    response = http.post(INFER, content=sent["content"], headers={"Inference-Header-Content-Length": str(size + 1)})
    assert (
        error_of(response, 400)
        == f"headers.Inference-Header-Content-Length: {size + 1} bytes, more than the body's {size}"
    )
    response = http.post(INFER, content=sent["content"], headers={**sent["headers"], "Content-Encoding": "gzip"})
    assert error_of(response, 415) == "Content-Encoding 'gzip' is not supported; send the body uncompressed"
    chunked = iter([sent["content"][:9], sent["content"][9:]])  # no Content-Length: chunked
    response = http.post(INFER, content=chunked, headers={"Inference-Header-Content-Length": str(size + 1)})
    assert (
        error_of(response, 400)
        == f"headers.Inference-Header-Content-Length: {size + 1} bytes, more than the body's {size}"
    )


def test_chunked_binary_body(http):
    head = {"inputs": [binary_input("input", LOGITS, "FP32"), binary_input("target", LABELS, "INT64")]}
    sent = binary_body(head, LOGITS, LABELS)
    pieces = iter([sent["content"][:7], sent["content"][7:50], sent["content"][50:]])
    chunked = http.post(INFER, content=pieces, headers=sent["headers"])
    assert "content-length" not in chunked.request.headers
    assert chunked.json()["outputs"] == http.post(INFER, **sent).json()["outputs"]


def test_422_lists_every_error_under_the_detail(http):
    body = {"inputs": [{"name": "input", "shape": [2, -3], "datatype": "FP8", "data": [1]}], "extra": 1, "id": 7}
    message = error_of(http.post(INFER, json=body), 422)
    assert message == (
        "extra: unknown field 'extra' (and 3 more)\n"
        "extra: unknown field 'extra'\n"
        "id: expected a string\n"
        "inputs.input.shape: expected a list of non-negative integers\n"
        "inputs.input.datatype: unknown datatype 'FP8'; expected one of FP16, BF16, FP32, FP64, INT8, INT16, INT32, "
        "INT64, UINT8, BOOL"
    )


def test_422_values_checked_as_v1_checks_them(http):
    body = {"inputs": [json_input("input", LOGITS, "FP32"), json_input("target", np.array([0, 3]), "INT64")]}
    message = error_of(http.post(INFER, json=body), 422)
    assert message == "inputs.target: class index 3 out of range [0, 3) at position (1,)"
    body["inputs"][1] = {"name": "target", "shape": [2], "datatype": "INT8", "data": [0, 300]}
    message = error_of(http.post(INFER, json=body), 422)
    assert message == "inputs.target.data: value 300 out of range for int8 at position (1,)"
    body["inputs"][1]["data"] = [0, 1, 2]
    message = error_of(http.post(INFER, json=body), 422)
    assert message == "inputs.target.data: expected 2 values for shape (2,); got 3"


def test_404_and_405_on_protocol_paths(http):
    assert error_of(http.get("/v2/nothing"), 404) == "GET /v2/nothing: not found"
    response = http.post("/v2/health/live")
    assert error_of(response, 405) == "POST /v2/health/live: method not allowed; allowed: GET, HEAD"
    assert response.headers["allow"] == "GET, HEAD"
    assert error_of(http.post("/v2/models/mse/versions/3/infer", json={}), 404) == (
        "version: model 'mse' has no version '3'; its only version is 1"
    )


# --- answers ---------------------------------------------------------------------------------------
def test_binary_outputs_follow_the_json_in_order(http):
    head = {
        "id": "req-1",
        "inputs": [binary_input("input", LOGITS, "FP32"), binary_input("target", LABELS, "INT64")],
        "outputs": [{"name": "grad_input", "parameters": {"binary_data": True}}, {"name": "value"}],
        "parameters": {"binary_data_output": True},
    }
    response = http.post("/v2/models/CrossEntropyLoss/versions/1/infer", **binary_body(head, LOGITS, LABELS))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    meta, data = split(response)
    assert (meta["model_name"], meta["model_version"], meta["id"]) == ("CrossEntropyLoss", "1", "req-1")
    assert meta["outputs"] == [
        {"name": "grad_input", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "value", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}},
    ]
    v1 = http.post("/v1/evaluate", json={"loss": "cross_entropy", "inputs": {"input": LOGITS.tolist(),
                   "target": LABELS.tolist()}, "return_grad": ["input"]}).json()  # fmt: skip
    grad = np.frombuffer(data[:24], "<f4").reshape(2, 3)
    np.testing.assert_array_equal(grad, np.array(v1["grad"]["input"]["data"], np.float32).reshape(2, 3))
    assert np.frombuffer(data[24:], "<f4")[0] == np.float32(v1["value"])


def test_bf16_and_fp64_binary_inputs_compute_in_their_dtype(http):
    bf16 = (LOGITS.view(np.uint32) >> 16).astype("<u2")  # raw bfloat16: the upper halves of float32s
    exact = (bf16.astype(np.uint32) << 16).view(np.float32)  # the same values as float32, for v1
    head = {"inputs": [binary_input("input", bf16, "BF16"), json_input("target", LABELS, "INT64")],
            "outputs": [{"name": "value"}, {"name": "grad_input", "parameters": {"binary_data": True}}]}  # fmt: skip
    meta, data = split_or_json(http.post(INFER, **binary_body(head, bf16)))
    v1_input = {"data": exact.tolist(), "shape": [2, 3], "dtype": "bfloat16"}
    v1 = http.post("/v1/evaluate", json={"loss": "cross_entropy", "return_grad": ["input"],
                                         "inputs": {"input": v1_input, "target": LABELS.tolist()}}).json()  # fmt: skip
    assert meta["parameters"]["dtype"] == "bfloat16" and meta["outputs"][0]["datatype"] == "BF16"
    assert np.float32(meta["outputs"][0]["data"][0]) == np.float32(v1["value"])
    grad = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(grad, np.array(v1["grad"]["input"]["data"], np.float32))
    f64 = LOGITS.astype(np.float64)
    head = {"inputs": [binary_input("input", f64, "FP64"), json_input("target", LABELS, "INT32")]}
    meta, _ = split_or_json(http.post(INFER, **binary_body(head, f64)))
    assert (meta["parameters"]["dtype"], meta["outputs"][0]["datatype"]) == ("float64", "FP64")


def split_or_json(response: httpx.Response) -> tuple[dict, bytes]:
    assert response.status_code == 200, response.text
    if "inference-header-content-length" in response.headers:
        return split(response)
    return response.json(), b""


def test_unaligned_binary_data_and_nested_json_data(http):
    """An odd-sized first input puts the second off its alignment: it is copied, not misread."""
    x = np.arange(15, dtype=np.float32).reshape(5, 3) / 7
    t = np.array([0, 1, 2, 1, 0], np.int64)
    head = {"inputs": [binary_input("input", x, "FP32"), binary_input("target", t, "INT64")]}
    for pad in range(4):  # the JSON's length moves the binary data through every offset
        head["id"] = "x" * pad
        meta, _ = split_or_json(http.post(INFER, **binary_body(head, x, t)))
        nested = {"inputs": [{"name": "input", "shape": [5, 3], "datatype": "FP32", "data": x.tolist()},
                             json_input("target", t, "INT64")]}  # fmt: skip
        assert meta["outputs"] == http.post(INFER, json=nested).json()["outputs"]


def test_reduction_none_gives_elementwise_values_by_default(http):
    body = {"inputs": [json_input("input", LOGITS, "FP32"), json_input("target", LABELS, "INT64")],
            "parameters": {"reduction": "none"}}  # fmt: skip
    meta = http.post(INFER, json=body).json()
    assert [o["name"] for o in meta["outputs"]] == ["elementwise"]
    assert meta["parameters"]["reduction"] == "none"


def test_metrics_count_v2_requests_by_route_and_loss(server, http):
    http.post(INFER, json={"inputs": [json_input("input", LOGITS, "FP32"), json_input("target", LABELS, "INT64")]})
    text = http.get("/metrics").text
    line = 'loss_service_requests_total{loss="cross_entropy",route="/v2/models/{model_name}/infer",status="200"}'
    assert line in text
