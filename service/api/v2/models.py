"""Models as the protocol describes them, generated from the catalog: each loss and each alias is a
model, its roles are the inputs, and what it computes the outputs.

Shapes: a fixed-rank list, ``-1`` for a variable dimension. A letter of the contract (``N``,
``C``) is ``-1``, a number is itself, and ``*`` (any number of dimensions, none included) is
one ``-1``: ``(N, C, *)`` is ``[-1, -1, -1]``, the shape of one valid input, not the only rank.
A role with several forms (cross_entropy's ``target``: class indices or probabilities) shows its
first. Each input's ``parameters`` give the contract itself: ``shape`` (every form, as in the
catalog), ``kind`` (float / integer / either), ``differentiable`` and ``optional``. The
datatype shown is FP32 for a float form and INT64 for an integer one; every float datatype is
accepted, and computed in (FP16, BF16, FP32, FP64), and integer roles take any integer one.
"""

from __future__ import annotations

import re

import orjson

from ... import __version__
from ...errors import NotFound, clip
from ...losses.base import Loss
from ...losses.contract import FLOAT, Form, Role, form

VERSION = "1"  # a loss's definition is the catalog's: one version, whatever the service's
PLATFORM = "loss_service"
EXTENSIONS = ["binary_tensor_data"]
FLOAT_TYPE, INTEGER_TYPE, STAT_TYPE = "FP32", "INT64", "FP64"
_LEADING = re.compile(r"^\(([^)]*)\)")


def server_metadata() -> dict:
    return {"name": "loss-service", "version": __version__, "extensions": EXTENSIONS}


def check_version(loss: Loss, name: str, version: str | None) -> str:
    """The version a path names (its only one when it names none), or 404."""
    if version is None or version == VERSION:
        return VERSION
    raise NotFound.at(("version",), f"model {clip(name)} has no version {clip(version)}; its only version is {VERSION}")


def dims(f: Form) -> list[int]:
    """``(N, C, *)`` -> ``[-1, -1, -1]``; numbers stay."""
    return [int(t) if t.isdigit() else -1 for t in f.pattern]


def _input(r: Role) -> dict:
    first = r.forms[0]
    return {
        "name": r.name,
        "datatype": FLOAT_TYPE if first.kind == FLOAT else INTEGER_TYPE,
        "shape": dims(first),
        "parameters": {"shape": r.shape, "kind": r.kind, "differentiable": r.differentiable, "optional": r.optional},
    }


def _elementwise_dims(text: str) -> list[int]:
    """The elementwise shape's dims from the catalog's text, e.g. ``(N, C'); C' = ...``."""
    m = _LEADING.match(text)
    return dims(form(m.group(1))) if m else [-1]


def outputs(loss: Loss) -> list[dict]:
    """Every output a request may ask of ``loss``: ``value``; for a decomposable loss
    ``elementwise`` and the data set aggregate; ``grad_<role>`` for each role it can
    differentiate; ``per_sample``."""
    out = [{"name": "value", "datatype": FLOAT_TYPE, "shape": [1]}]
    if loss.decomposable:
        out.append({"name": "elementwise", "datatype": FLOAT_TYPE, "shape": _elementwise_dims(loss.elementwise_shape)})
    for r in loss.roles:
        floats = [f for f in r.forms if f.kind == FLOAT]
        if r.differentiable and floats:
            out.append({"name": f"grad_{r.name}", "datatype": FLOAT_TYPE, "shape": dims(floats[0])})
    out.append({"name": "per_sample", "datatype": FLOAT_TYPE, "shape": [-1]})
    if loss.decomposable:
        out += [{"name": n, "datatype": STAT_TYPE, "shape": [1]} for n in ("aggregate_sum", "aggregate_weight")]
    return out


def model_metadata(loss: Loss, name: str) -> dict:
    """The metadata of model ``name`` (the loss or one of its aliases)."""
    schema = loss.params.model_json_schema()
    schema.pop("title", None)
    return {
        "name": name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [_input(r) for r in loss.roles],
        "outputs": outputs(loss),
        "parameters": {
            "loss": loss.name,
            "summary": loss.summary,
            "reductions": ", ".join(loss.reductions),
            "decomposable": loss.decomposable,
            "params": orjson.dumps(schema).decode(),  # a JSON Schema, as GET /v1/losses/{name} gives it
        },
    }


def output_names(loss: Loss) -> list[str]:
    return [o["name"] for o in outputs(loss)]


def repository_index(losses: list[Loss]) -> list[dict]:
    """Every loss, by its canonical name (its aliases are the same models)."""
    return [{"name": loss.name, "version": VERSION, "state": "READY"} for loss in losses]
