"""One tensor, any form, one answer.

A valid request (a reference case, ``tests/reference``: every catalog loss) in any float dtype is
sent with each role in a drawn form: {data, shape, dtype} flat or nested, nested arrays (a float
role adopts the dtype stated for the other float roles; integer roles as integers or as integral
floats), base64 .npy (either byte order, C or Fortran order, integer roles in any integer dtype
that holds their values), a multipart .npy part; the answer asked as JSON or as .npy. Every such
request must get exactly the answer of the plain one (every role as {data, shape, dtype}, the
answer as JSON): the same status, and for a 200 bitwise the same value, elementwise values and
gradients (each request is alone: nothing else is in flight).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ..conftest import make_client
from ..reference.case import reductions_of, whole
from ..reference.tables import CASES
from .conftest import examples
from .strategies import NP_DTYPES, Sent, b64, check_answer, multipart_body, npy_bytes, send, tensor_out

TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
FLOAT_FORMS = ["dsd", "dsd-nested", "nested", "npy", "part"]
INT_FORMS = ["dsd", "dsd-nested", "nested", "nested-floats", "npy", "part"]


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


def _fits(values: np.ndarray, dtype: str) -> bool:
    info = np.iinfo(NP_DTYPES[dtype])
    return values.size == 0 or (values.min() >= info.min and values.max() <= info.max)


@st.composite
def variants(draw):
    """(case, dtype, reduction, the plain request, a variant of it)."""
    case = draw(st.sampled_from(CASES))
    dtype = draw(st.sampled_from(list(TORCH)))
    reduction = draw(st.sampled_from(reductions_of(case)))
    tensors = case.make(torch.Generator().manual_seed(draw(st.integers(0, 1000))), torch.float64)
    arrays = {}
    for role, t in tensors.items():
        arrays[role] = (t.to(TORCH[dtype]).double() if t.is_floating_point() else t).numpy()
    spec = {"name": case.loss, "params": case.params, "reduction": reduction}
    elementwise = not whole(case)  # a whole-request loss (contrastive, dice with batch=true) has none
    common = {"return_elementwise": elementwise, "return_grad": list(case.grad_roles)}

    plain = {"loss": spec, **common, "inputs": {}}
    for role, a in arrays.items():
        name = dtype if a.dtype.kind == "f" else "int64"
        plain["inputs"][role] = {"data": a.reshape(-1).tolist(), "shape": list(a.shape), "dtype": name}

    forms = {}
    for role, a in arrays.items():
        allowed = list(FLOAT_FORMS if a.dtype.kind == "f" else INT_FORMS)
        if a.dtype.kind == "f" and dtype == "bfloat16":
            allowed = ["dsd", "dsd-nested", "nested"]  # numpy has no bfloat16: no .npy form
        forms[role] = draw(st.sampled_from(allowed))
    stated = [r for r, a in arrays.items() if a.dtype.kind == "f" and forms[r] != "nested"]
    for role, a in arrays.items():  # nested float roles adopt a stated float dtype, else float32
        if a.dtype.kind == "f" and forms[role] == "nested" and dtype != "float32" and not stated:
            forms[role] = "dsd"
            stated.append(role)
    inputs, files, notes = {}, {}, []
    for role, a in arrays.items():
        form = forms[role]
        if a.dtype.kind == "f":
            np_dtype = NP_DTYPES.get(dtype)
        else:
            int_name = draw(st.sampled_from([n for n in ("int64", "int32", "int16", "int8", "uint8") if _fits(a, n)]))
            np_dtype = NP_DTYPES[int_name]
        name = dtype if a.dtype.kind == "f" else int_name
        notes.append(f"{role}: {form} {name}")
        if form == "dsd":
            inputs[role] = {"data": a.reshape(-1).tolist(), "shape": list(a.shape), "dtype": name}
        elif form == "dsd-nested":
            inputs[role] = {"data": a.tolist(), "dtype": name}
        elif form == "nested":
            inputs[role] = a.tolist()
        elif form == "nested-floats":
            inputs[role] = a.astype(np.float64).tolist()
        else:
            big, fortran = draw(st.booleans()), draw(st.booleans())
            notes[-1] += " big-endian" * big + " fortran" * fortran
            raw = npy_bytes(a.astype(np_dtype), big_endian=big, fortran=fortran)
            if form == "npy":
                inputs[role] = {"npy": b64(raw)}
            else:
                files[role] = raw
    encoding = draw(st.sampled_from(["json", "npy"]))
    notes.append(f"answer as {encoding}")
    variant = {"loss": spec, **common, "inputs": inputs, "response_encoding": encoding}
    if files:
        content, ctype = multipart_body(
            [("request", None, json.dumps(variant).encode())] + [(r, f"{r}.npy", raw) for r, raw in files.items()],
            "bnd",
        )
    else:
        content, ctype = json.dumps(variant).encode(), "application/json"
    plain_sent = Sent(json.dumps(plain).encode(), "application/json", [case.id, dtype, reduction])
    return case, dtype, plain_sent, Sent(content, ctype, [case.id, dtype, reduction, *notes])


def answer_of(body: dict) -> dict:
    out = {"loss": body["loss"], "reduction": body["reduction"], "value": body["value"], "dtype": body["meta"]["dtype"]}
    for key in ("elementwise",):
        if body[key] is not None:
            out[key] = (body[key]["dtype"], tensor_out(body[key]).tolist())
    for role, g in sorted((body["grad"] or {}).items()):
        out[f"grad[{role}]"] = (g["dtype"], tensor_out(g).tolist())
    return out


@hsettings(max_examples=examples(2))
@given(v=variants())
def test_every_form_gives_the_plain_answer(client, v):
    _, dtype, plain, variant = v
    a = send(client, plain)
    b = send(client, variant)
    check_answer(a, plain)
    check_answer(b, variant)
    if dtype in ("float32", "float64"):
        assert a.status_code == 200, f"a reference case refused: {plain!r}\n{a.text[:500]}"
    assert a.status_code == b.status_code, f"{variant!r}\n{b.status_code} {b.text[:300]} vs plain {a.text[:300]}"
    if a.status_code == 200:
        want, got = answer_of(a.json()), answer_of(b.json())
        diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
        assert not diff, f"{variant!r}\nanswers differ from the plain request's: {str(diff)[:1500]}"
