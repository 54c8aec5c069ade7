"""tritonclient.http, unchanged, against a real server: health, metadata, the repository index,
and infer for every loss of the catalog (inputs as JSON and binary, outputs as JSON and binary),
each equal to v1's answer for the same tensors; errors carry the service's own messages."""

from __future__ import annotations

import dataclasses
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service import __version__
from service.losses import default_registry
from tests.e2e.servers import Server
from tests.reference.case import whole

from .conftest import one_case_per_loss, reduction_of, tensors_of, v1_answer, v1_array, v2_params

REGISTRY = default_registry()
CASES = one_case_per_loss()
COMBOS = [(False, False), (False, True), (True, False), (True, True)]  # (binary inputs, binary outputs)


@pytest.fixture(scope="module")
def client(server: Server):
    with triton.InferenceServerClient(url=f"127.0.0.1:{server.port}") as c:
        yield c


def test_server_live_ready_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "loss-service",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata_from_the_catalog(client):
    meta = client.get_model_metadata("CrossEntropyLoss")  # an alias is a model of its own name
    schema = REGISTRY.get("cross_entropy").params.model_json_schema()
    schema.pop("title")
    assert meta == {
        "name": "CrossEntropyLoss",
        "versions": ["1"],
        "platform": "loss_service",
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [-1, -1, -1],
                "parameters": {"shape": "(N, C, *)", "kind": "float", "differentiable": True, "optional": False},
            },
            {
                "name": "target",
                "datatype": "INT64",
                "shape": [-1, -1],
                "parameters": {
                    "shape": "(N, *) class indices or (N, C, *) class probabilities",
                    "kind": "either",
                    "differentiable": True,
                    "optional": False,
                },
            },
        ],
        "outputs": [
            {"name": "value", "datatype": "FP32", "shape": [1]},
            {"name": "elementwise", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "grad_input", "datatype": "FP32", "shape": [-1, -1, -1]},
            {"name": "grad_target", "datatype": "FP32", "shape": [-1, -1, -1]},
            {"name": "per_sample", "datatype": "FP32", "shape": [-1]},
            {"name": "aggregate_sum", "datatype": "FP64", "shape": [1]},
            {"name": "aggregate_weight", "datatype": "FP64", "shape": [1]},
        ],
        "parameters": {
            "loss": "cross_entropy",
            "summary": REGISTRY.get("cross_entropy").summary,
            "reductions": "mean, sum, none",
            "decomposable": True,
            "params": json.dumps(schema, separators=(",", ":")),
        },
    }
    assert client.get_model_metadata("cross_entropy", "1")["name"] == "cross_entropy"


def test_model_metadata_of_literal_dims_and_whole_request_losses(client):
    gaussian = client.get_model_metadata("gaussian_nll")
    assert [(i["name"], i["shape"]) for i in gaussian["inputs"]] == [
        ("input", [-1, -1, -1]),
        ("target", [-1, -1, -1]),
        ("var", [-1, -1, -1]),
    ]
    iou = client.get_model_metadata("iou")
    assert iou["inputs"][0]["shape"] == [-1, -1, 4]
    contrastive = client.get_model_metadata("contrastive")  # reduces the whole request
    assert [o["name"] for o in contrastive["outputs"]] == ["value", "grad_input", "grad_target", "per_sample"]


def test_model_ready(client):
    assert client.is_model_ready("mse")
    assert client.is_model_ready("MSELoss", "1")
    assert not client.is_model_ready("mse", "2")
    assert not client.is_model_ready("no_such_loss")


def test_repository_index_lists_every_loss(client):
    assert client.get_model_repository_index() == [
        {"name": loss.name, "version": "1", "state": "READY"} for loss in REGISTRY
    ]


def _inputs(tensors: dict[str, np.ndarray], binary: bool) -> list[triton.InferInput]:
    out = []
    for role, arr in tensors.items():
        item = triton.InferInput(role, list(arr.shape), np_to_triton_dtype(arr.dtype))
        item.set_data_from_numpy(arr, binary_data=binary)
        out.append(item)
    return out


@pytest.mark.parametrize("loss", list(CASES), ids=str)
def test_infer_every_loss_equals_v1(server, client, loss):
    case = CASES[loss]
    tensors = tensors_of(case)
    reduction = reduction_of(case)
    v1 = v1_answer(server.url, case, tensors, reduction)
    names = ["value"] + ([] if whole(case) else ["elementwise"]) + [f"grad_{r}" for r in case.grad_roles]
    for binary_in, binary_out in COMBOS:
        result = client.infer(
            loss,
            _inputs(tensors, binary_in),
            outputs=[triton.InferRequestedOutput(n, binary_data=binary_out) for n in names],
            parameters={**v2_params(case.params), "reduction": reduction},
        )
        how = f"binary inputs {binary_in}, binary outputs {binary_out}"
        got = result.get_response()
        assert [o["name"] for o in got["outputs"]] == names, how
        assert got["parameters"]["loss"] == loss and got["parameters"]["dtype"] == v1["meta"]["dtype"]
        np.testing.assert_array_equal(result.as_numpy("value"), np.array([v1["value"]], np.float32), err_msg=how)
        if "elementwise" in names:
            np.testing.assert_array_equal(result.as_numpy("elementwise"), v1_array(v1["elementwise"]), err_msg=how)
        for role in case.grad_roles:
            np.testing.assert_array_equal(result.as_numpy(f"grad_{role}"), v1_array(v1["grad"][role]), err_msg=how)


LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
LABELS = np.array([0, 2], np.int64)


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_list_param_as_a_json_string_equals_v1(server, client):
    weight = [1.0, 2.0, 0.5]
    result = client.infer(
        "cross_entropy",
        _inputs({"input": LOGITS, "target": LABELS}, True),
        parameters={"weight": "[1, 2, 0.5]", "label_smoothing": 0.1},
    )
    case = dataclasses.replace(CASES["cross_entropy"], params={"weight": weight, "label_smoothing": 0.1})
    v1 = v1_answer(server.url, case, {"input": LOGITS, "target": LABELS}, "mean")
    assert result.as_numpy("value")[0] == np.float32(v1["value"])
    assert result.get_response()["outputs"][0]["datatype"] == "FP32"


def test_unknown_model_raises_our_message(client):
    error = _error(lambda: client.infer("cross_entropyy", _inputs({"input": LOGITS, "target": LABELS}, True)))
    assert error.status() == "404"
    assert error.message() == "model: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"
    error = _error(lambda: client.get_model_metadata("cross_entropyy"))
    assert str(error) == "[404] model: unknown loss 'cross_entropyy'; did you mean 'cross_entropy'?"
    error = _error(lambda: client.get_model_metadata("mse", "2"))
    assert str(error) == "[404] version: model 'mse' has no version '2'; its only version is 1"


def test_bad_shape_raises_our_message(client):
    tensors = {"input": LOGITS, "target": np.array([0, 2, 1], np.int64)}
    error = _error(lambda: client.infer("cross_entropy", _inputs(tensors, False)))
    assert str(error) == (
        "[422] inputs.target: expected shape (N, *) = (2,) or (N, C, *) = (2, 3) from input (N, C, *) = (2, 3); "
        "got (3,)"
    )


def test_bad_params_raise_our_message_with_every_error(client):
    tensors = _inputs({"input": LOGITS, "target": LABELS}, True)
    error = _error(lambda: client.infer("focal", tensors, parameters={"gama": 2}))
    assert str(error) == "[422] parameters.gama: unknown parameter 'gama' for focal; did you mean 'gamma'?"
    error = _error(lambda: client.infer("focal", tensors, parameters={"gama": 2, "reduction": "batchmean"}))
    assert error.message() == (
        "parameters.reduction: focal does not accept reduction 'batchmean'; expected one of mean, sum, none "
        "(and 1 more)\n"
        "parameters.reduction: focal does not accept reduction 'batchmean'; expected one of mean, sum, none\n"
        "parameters.gama: unknown parameter 'gama' for focal; did you mean 'gamma'?"
    )


def test_outputs_the_loss_has_not_raise_our_message(client):
    tensors = _inputs({"input": LOGITS, "target": LABELS}, True)
    outputs = [triton.InferRequestedOutput("grad_target"), triton.InferRequestedOutput("gradient")]
    error = _error(lambda: client.infer("nll", tensors, outputs=outputs))
    assert str(error) == (
        "[422] outputs.gradient: unknown output 'gradient' for nll; expected value, elementwise, grad_input, "
        "per_sample, aggregate_sum, aggregate_weight"
    )
    error = _error(lambda: client.infer("nll", tensors, outputs=outputs[:1]))
    assert str(error) == "[422] outputs.grad_target: role 'target' of nll is not differentiable"


def test_large_json_data_equals_binary(client):
    """A JSON body over the size where its arrays are parsed straight into numpy (256 KiB)."""
    rng = np.random.default_rng(3)
    tensors = {
        "input": rng.standard_normal((300, 300)).astype(np.float32),
        "target": rng.random((300, 300), np.float32),
    }
    answers = []
    for binary in (False, True):
        outputs = [triton.InferRequestedOutput("value"), triton.InferRequestedOutput("grad_input", binary_data=True)]
        result = client.infer("mse", _inputs(tensors, binary), outputs=outputs)
        answers.append((result.as_numpy("value"), result.as_numpy("grad_input")))
    np.testing.assert_array_equal(answers[0][0], answers[1][0])
    np.testing.assert_array_equal(answers[0][1], answers[1][1])
    np.testing.assert_allclose(
        answers[0][1], 2 * (tensors["input"] - tensors["target"]) / tensors["input"].size, rtol=1e-6
    )


def test_aggregate_and_per_sample_outputs_equal_v1(server, client):
    body = {"loss": {"name": "cross_entropy", "params": {"weight": [1.0, 2.0, 0.5]}},
            "inputs": {"input": LOGITS.tolist(), "target": LABELS.tolist()}, "return_per_sample": True}  # fmt: skip
    v1 = httpx.post(f"{server.url}/v1/evaluate", json=body).json()
    names = ["aggregate_sum", "aggregate_weight", "per_sample"]
    for binary in (False, True):
        result = client.infer(
            "cross_entropy",
            _inputs({"input": LOGITS, "target": LABELS}, True),
            outputs=[triton.InferRequestedOutput(n, binary_data=binary) for n in names],
            parameters={"weight": "[1, 2, 0.5]"},
        )
        assert [o["datatype"] for o in result.get_response()["outputs"]] == ["FP64", "FP64", "FP32"]
        assert result.as_numpy("aggregate_sum").tolist() == [v1["aggregate"]["sum"]]
        assert result.as_numpy("aggregate_weight").tolist() == [v1["aggregate"]["weight"]]
        np.testing.assert_array_equal(result.as_numpy("per_sample"), v1_array(v1["per_sample"]))


def test_outputs_a_result_has_not_are_left_out(client):
    """The value under reduction none, an aggregate of a loss that reduces the whole request."""
    outputs = [triton.InferRequestedOutput(n) for n in ("value", "elementwise", "aggregate_sum")]
    result = client.infer("mse", _inputs({"input": LOGITS, "target": LOGITS * 2}, True), outputs=outputs,
                          parameters={"reduction": "none"})  # fmt: skip
    assert [o["name"] for o in result.get_response()["outputs"]] == ["elementwise"]
    np.testing.assert_array_equal(result.as_numpy("elementwise"), LOGITS**2)
