"""float16 / bfloat16: a request's answer never depends on its batch-mates, and it is PyTorch's.

PyTorch reduces half-precision values by summing them in float32 and rounding the result to the
dtype once (``sum``; ``mean`` divides the float32 sum first); the engine reduces each request from
its own values the same way, alone or in a group. For every reference case (together they cover
every loss of the catalog), every reduction, in float16 and bfloat16: the value, the elementwise
values and the gradients computed alone (``run_group([job])``) and in a group of 8 requests of
different values are bitwise equal, and equal to PyTorch's own call with that reduction on the
request's tensors in that dtype: exactly where PyTorch's kernel is the reference, to the dtype's
tolerance where the service's arithmetic legitimately differs (``why_tolerant`` says where, and
why; ``POSITION_DEPENDENT`` holds the one PyTorch kernel that is not bitwise alike alone and in a
group). Losses whose PyTorch CPU kernel has no half precision (ctc, multi_margin,
multilabel_margin: the service computes them in float32) are found by trying the reference, and
skip only the comparison with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.codecs.tensors import Decoded
from service.engine.compute import Outcome, group_key, run_group
from service.losses import default_registry
from service.losses.catalog import ALL_LOSSES
from service.losses.prepare import Job, prepare

from ..aggregate.split import samples
from ..reference.case import Case, reductions_of, whole
from ..reference.tables import CASES

CPU = torch.device("cpu")
REGISTRY = default_registry()
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
EPS = {dtype: torch.finfo(dtype).eps for dtype in HALF.values()}
GROUP = 8  # requests in a group, each of its own values (seeds 0..7)


# -- requests -------------------------------------------------------------------------------------


def half_tensors(case: Case, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The case's tensors for ``seed``, drawn in float32 and rounded to ``dtype`` (what a client
    holding half-precision values sends); integer roles as they are."""
    tensors = case.make(torch.Generator().manual_seed(seed), torch.float32)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}


def make_job(loss: str, params: dict, reduction: str, tensors: dict[str, torch.Tensor], grad) -> Job:
    """A checked job, the tensors stated in their own dtype (bfloat16 travels as float32 values),
    asking for the elementwise and per-sample values wherever the loss has them."""
    decoded = {}
    for name, t in tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        decoded[name] = Decoded((t.float() if t.dtype == torch.bfloat16 else t).numpy(), dtype)
    entry = REGISTRY.get(loss)
    elementwise = not entry.whole(entry.params.model_validate(params))  # a whole-request loss has none
    per_sample = elementwise and reduction != "none"
    return prepare(REGISTRY, loss, params, reduction, decoded, grad, elementwise, return_per_sample=per_sample)


def case_job(case: Case, tensors: dict[str, torch.Tensor], reduction: str) -> Job:
    return make_job(case.loss, case.params, reduction, tensors, list(case.grad_roles))


def mixed(case: Case, reduction: str) -> list[str]:
    """The group's reductions: request 0 (and every other one) takes ``reduction``, the rest cycle
    through the case's reductions, so that the group mixes them."""
    others = [r for r in reductions_of(case) if r != reduction] or [reduction]
    return [reduction if i % 2 == 0 else others[(i // 2) % len(others)] for i in range(GROUP)]


def alone_and_together(case: Case, dtype: torch.dtype, reduction: str):
    """Per request of a group: its tensors, its reduction, its outcome alone, its outcome in the
    group (None where the loss never batches these requests), for a group of one reduction and a
    group of mixed reductions."""
    tensors = [half_tensors(case, seed, dtype) for seed in range(GROUP)]
    rows = []
    for reductions in ([reduction] * GROUP, mixed(case, reduction)):
        jobs = [case_job(case, t, r) for t, r in zip(tensors, reductions, strict=True)]
        alone = [run_group([j], CPU)[0] for j in jobs]
        keys = {group_key(j) for j in jobs}
        if keys == {None}:  # never batched (dice with batch=True, a weight spanning the batch)
            together: list[Outcome | None] = [None] * GROUP
        else:
            assert len(keys) == 1, "the requests of a case share a group"
            together = list(run_group(jobs, CPU))
            assert {o.batch_size for o in together} == {GROUP}
        rows += list(zip(tensors, reductions, alone, together, strict=True))
    return rows


# -- comparisons ----------------------------------------------------------------------------------


def bits(x) -> bytes:
    """The exact bits of a value or an array (so -0.0 != 0.0 and NaN == NaN of the same payload)."""
    arr = np.ascontiguousarray(np.asarray(x))
    return arr.dtype.str.encode() + repr(arr.shape).encode() + arr.tobytes()


def assert_bitwise_equal(
    got: Outcome,
    want: Outcome,
    where: str,
    grads_tolerant: str | None = None,
    tolerant: str | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Bit for bit; ``tolerant`` (the reason) allows a few ulps in every part, ``grads_tolerant``
    in the gradients only: ulps of ``dtype`` (bfloat16 arrays travel as float32, exactly). The
    aggregate (S, W) and the per-sample values too."""
    assert (got.value is None) == (want.value is None), where
    assert (got.aggregate is None) == (want.aggregate is None), where
    assert (got.per_sample is None) == (want.per_sample is None), where
    if tolerant is not None:
        if got.value is not None:
            assert_matches(torch.tensor(got.value), torch.tensor(want.value), tolerant, f"{where}: value")
        if got.aggregate is not None:
            g, w = torch.tensor(got.aggregate), torch.tensor(want.aggregate)  # float64: ulps of the dtype
            assert_matches(g, w, tolerant, f"{where}: aggregate", eps=torch.finfo(dtype).eps)
        for part in ("elementwise", "per_sample"):
            if getattr(want, part) is not None:
                g, w = (torch.from_numpy(getattr(o, part)).to(dtype) for o in (got, want))
                assert_matches(g, w, tolerant, f"{where}: {part}")
        grads_tolerant = tolerant
    else:
        assert bits(np.float64(np.nan if got.value is None else got.value)) == bits(
            np.float64(np.nan if want.value is None else want.value)
        ), f"{where}: value {got.value!r} != {want.value!r}"
        assert bits(got.elementwise) == bits(want.elementwise), f"{where}: elementwise differs"
        assert bits(got.aggregate) == bits(want.aggregate), f"{where}: aggregate {got.aggregate} != {want.aggregate}"
        assert bits(got.per_sample) == bits(want.per_sample), f"{where}: per_sample differs"
    assert got.grads.keys() == want.grads.keys(), where
    for role in got.grads:
        if grads_tolerant is None:
            assert bits(got.grads[role]) == bits(want.grads[role]), f"{where}: grad[{role}] differs"
        else:
            g, w = torch.from_numpy(got.grads[role]).to(dtype), torch.from_numpy(want.grads[role]).to(dtype)
            assert_matches(g, w, grads_tolerant, f"{where}: grad[{role}]")


def pytorch_reference(case: Case, tensors: dict[str, torch.Tensor], reduction: str):
    """PyTorch's value and gradients of the request alone, in its dtype. A reference that is not
    PyTorch's kernel (MONAI's module, a formula written out) is evaluated in float32 on the same
    values and rounded to the dtype: written out in half precision, it overflows where the
    service's own formula does not (focal's 1 / p_t gradient passes 65504 in float16)."""
    dtype = next(t.dtype for t in tensors.values() if t.is_floating_point())
    if REGISTRY.get(case.loss).reference != "pytorch":
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    leaves = {r: tensors[r].detach().clone().requires_grad_(True) for r in case.grad_roles}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # kl_div's "mean" warning
        out = case.reference({**tensors, **leaves}, case.params, reduction)
    total = out.sum() if reduction == "none" else out
    grads = torch.autograd.grad(total, list(leaves.values())) if leaves else ()  # zero_one: no gradient
    return out.detach().to(dtype), {k: g.to(dtype) for k, g in zip(leaves, grads, strict=True)}


def why_tolerant(case: Case, reduction: str, what: str) -> str | None:
    """None where the service's answer must be PyTorch's bit for bit; otherwise why it may differ
    within the dtype's tolerance. ``what``: "value" (the reduced value, or the elementwise values
    for reduction none) or "grad"."""
    loss = REGISTRY.get(case.loss)
    if loss.reference != "pytorch":
        reference = REFERENCE_NAMES.get(loss.reference, loss.reference)  # a key, or the library or paper
        return (
            f"{loss.name}'s reference is {reference}'s formula, written with other "
            "operations (one-hot products, a softmax then a log, ...) and evaluated in float32; the "
            "service computes its elementwise values in the dtype, as PyTorch would"
        )
    if what == "value" and reduction != "none" and loss.name in REDUCED_IN_THE_KERNEL:
        return REDUCED_IN_THE_KERNEL[loss.name]
    if what == "value" and reduction == "batchmean":
        return (
            "PyTorch's batchmean rounds the float32 sum to the dtype, then divides by N and rounds again; the "
            "service divides the sum (of its samples' float64 terms) and rounds once"
        )
    if what == "grad" and reduction == "mean":
        if loss.name == "cross_entropy" and case.params.get("label_smoothing"):
            return (
                "with label smoothing PyTorch reduces the nll term and the smoothing term apart and adds "
                "them, (1 - s) * nll_mean + s / C * smooth_sum / weight_sum: each term's gradient is "
                "scaled by its own factor rounded to the dtype, not by one 1/weight_sum"
            )
        return MEAN_IN_THE_BACKWARD.get(loss.name)
    return None


REFERENCE_NAMES = {"monai": "MONAI", "formula": "the summary", "torchvision": "torchvision"}

# PyTorch computes these reductions inside the loss's own kernel, not by its sum or mean of the
# elementwise values (which accumulate in float32 and round once: what the service does).
_NLL = (
    "PyTorch's CPU nll_loss kernel (aten/src/ATen/native/LossNLL.cpp, nll_loss_out_frame) accumulates "
    "its loss and total weight in the input's dtype (scalar_t cascade partial sums), rounding at every "
    "addition"
)
REDUCED_IN_THE_KERNEL = {
    "nll": _NLL,
    "cross_entropy": (
        f"{_NLL}; with probabilities PyTorch sums the (N, C, *) products x * y * w at once and divides "
        "the rounded sum by N; with label smoothing it adds two terms reduced apart, each rounded"
    ),
}

# PyTorch backward kernels that fold reduction="mean"'s 1/N into their own arithmetic. The service
# computes a group with reduction="none" and gives each request the gradient of the mean of its own
# values: what PyTorch's autograd gives for F.*(reduction="none").mean(), 1/N rounded to the dtype
# and passed to the kernel's reduction="none" backward.
_AFTER = "rounding otherwise than the reduction='none' backward given 1/N"
MEAN_IN_THE_BACKWARD = {
    "bce": f"binary_cross_entropy_backward divides its finished gradient by N, {_AFTER}",
    "bce_with_logits": f"binary_cross_entropy_with_logits_backward divides its finished gradient by N, {_AFTER}",
    "soft_margin": f"soft_margin_loss_backward multiplies by its norm 1/N inside its formula, {_AFTER}",
    "smooth_l1": f"smooth_l1_loss_backward multiplies by its norm 1/N inside its kernel, {_AFTER}",
}

# Where a PyTorch kernel itself gives an element another result as part of a longer tensor.
POSITION_DEPENDENT = {
    ("huber", "float16"): (
        "PyTorch's huber_loss_backward on the CPU in float16 rounds an element otherwise in its SIMD body "
        "than in its scalar tail (see test_pytorch_huber_backward_in_float16_depends_on_the_tensor_length), "
        "so a gradient of 1/N differs by an ulp where the element falls elsewhere in the group's buffer"
    ),
    ("binary_focal", "bfloat16"): (
        "PyTorch's pow(x, -0.5) on the CPU in bfloat16, which the backward of x ** 0.5 (gamma 0.5) calls, "
        "rounds an element otherwise in its SIMD body than in its scalar tail (see tests/losses/"
        "test_classic_metric_checks.py::test_pytorch_pow_minus_half_in_bfloat16_depends_on_the_tensor_length), "
        "so a gradient differs by an ulp where the element falls elsewhere in the group's buffer"
    ),
}

# float32 / float64 losses whose elementwise values come from PyTorch's vectorized transcendental
# functions (exp, log, sigmoid, softmax: SLEEF on the CPU): an element in the SIMD body of a
# kernel's loop and one in its scalar tail (or at a thread's split point) can differ by an ulp, and
# where a request's elements fall depends on the rows before and after it. The reduction itself is
# the same arithmetic alone and in a group (every other loss is bitwise equal); these agree to a
# few ulps. (In half precision the ulp is lost in the rounding to the dtype: bitwise there.)
_SIMD_TAIL = (
    "PyTorch's vectorized exp/log/sigmoid (SLEEF) and its scalar tail differ by an ulp, and where an "
    "element falls in the group's buffer depends on its batch-mates"
)
KERNEL_POSITION_DEPENDENT = {
    (loss, dtype): _SIMD_TAIL
    for loss in ("bce_with_logits", "sigmoid_focal", "focal", "dice")
    for dtype in ("float32", "float64")
}
# softplus (gan_discriminator's minimax, gan_generator's minimax and non_saturating, log_cosh beyond
# |d| = 1), sinh and log1p (log_cosh near 0) are such SLEEF kernels too.
KERNEL_POSITION_DEPENDENT.update(
    {
        (loss, dtype): _SIMD_TAIL
        for loss in ("gan_discriminator", "gan_generator", "log_cosh")
        for dtype in ("float32", "float64")
    }
)
KERNEL_POSITION_DEPENDENT[("log_cosh", "float16")] = (
    "log_cosh evaluates float16 residuals in float32 (as kornia does for its robust losses) and rounds "
    f"once; {_SIMD_TAIL} in float32, and a value that lies next to a float16 rounding boundary then "
    "rounds to the neighbouring float16 (seen: 0.00057053566 alone, 0.00057053560 in a group)"
)

# The overlap losses' sigmoid and softmax (seen: tversky, generalized_dice, jaccard, mcc with
# sigmoid in float32; generalized_dice's softmax in float64), and focal_tversky's (1 - TI)^gamma,
# whose pow is such a SLEEF kernel too (seen without any sigmoid or softmax, in float32 and float64).
KERNEL_POSITION_DEPENDENT.update(
    {
        (loss, dtype): _SIMD_TAIL
        for loss in ("tversky", "generalized_dice", "jaccard", "mcc")
        for dtype in ("float32", "float64")
    }
)
KERNEL_POSITION_DEPENDENT.update(
    {
        ("focal_tversky", dtype): f"{_SIMD_TAIL}; so do its vectorized pow, (1 - TI)^gamma, and its scalar tail"
        for dtype in ("float32", "float64")
    }
)

# dice_ce is computed through its terms (dice, and cross_entropy or bce_with_logits): theirs.
KERNEL_POSITION_DEPENDENT.update(
    {
        ("dice_ce", dtype): f"its terms' kernels: dice's and bce_with_logits': {_SIMD_TAIL}"
        for dtype in ("float32", "float64")
    }
)

ULPS = 4  # the dtype's tolerance: a few units in the last place, on the scale of the tensor


def assert_matches(
    got: torch.Tensor, want: torch.Tensor, tolerant: str | None, what: str, eps: float | None = None
) -> None:
    """Equal, or with ``tolerant`` (the reason) within ULPS units of the last place (of ``want``'s
    dtype, or ``eps``) on the scale of ``want``."""
    if tolerant is None:
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")
        return
    scale = want.double().nan_to_num().abs().max().item()
    atol = ULPS * (eps or torch.finfo(want.dtype).eps) * scale
    torch.testing.assert_close(got, want, rtol=0, atol=atol, equal_nan=True, msg=lambda m: f"{what} ({tolerant}): {m}")


# -- tests ----------------------------------------------------------------------------------------


# The cases of the losses run_group computes: a composite (dice_ce) is computed through its terms
# (engine/composite.py), each of them a catalog loss with cases of its own here.
SINGLE = [c for c in CASES if REGISTRY.get(c.loss).expand is None]
PARAMS = [(c, r, d) for c in SINGLE for r in reductions_of(c) for d in HALF]
# Batch-independence holds in every dtype (float32 and float64 too: a group's sums are taken row
# by row and accumulated per request in row order, alone as in a group).
EVERY_FLOAT = {**HALF, "float32": torch.float32, "float64": torch.float64}
PARAMS_EVERY_FLOAT = [(c, r, d) for c in SINGLE for r in reductions_of(c) for d in EVERY_FLOAT]


def _id(v) -> str:
    return v.id if isinstance(v, Case) else str(v)


def test_every_loss_of_the_catalog_has_a_case():
    assert {loss.name for loss in ALL_LOSSES} <= {c.loss for c in CASES}


@pytest.mark.parametrize("case,reduction,dtype", PARAMS_EVERY_FLOAT, ids=_id)
def test_alone_and_in_a_group_are_bitwise_equal(case, reduction, dtype):
    """Every loss, in every float dtype (in half precision, PyTorch-backed or not: ctc,
    multi_margin, multilabel_margin compute in float32 and round their elementwise values)."""
    grads_tolerant = POSITION_DEPENDENT.get((case.loss, dtype))
    tolerant = KERNEL_POSITION_DEPENDENT.get((case.loss, dtype))
    for i, (_, r, alone, together) in enumerate(alone_and_together(case, EVERY_FLOAT[dtype], reduction)):
        if together is not None:
            where = f"request {i % GROUP} ({r})"
            assert_bitwise_equal(together, alone, where, grads_tolerant, tolerant, EVERY_FLOAT[dtype])


@pytest.mark.parametrize("case,reduction,dtype", PARAMS, ids=_id)
def test_matches_pytorch_in_that_dtype(case, reduction, dtype):
    half = HALF[dtype]
    try:
        pytorch_reference(case, half_tensors(case, 0, half), reduction)
    except (RuntimeError, NotImplementedError) as e:
        if "not implemented for" not in str(e):
            raise
        pytest.skip(f"PyTorch's CPU kernel has no {dtype}: {e}")
    position_dependent = POSITION_DEPENDENT.get((case.loss, dtype))
    for i, (tensors, r, alone, together) in enumerate(alone_and_together(case, half, reduction)):
        want, want_grads = pytorch_reference(case, tensors, r)
        for how, o in (("alone", alone), ("together", together)):
            if o is None:
                continue
            where = f"request {i % GROUP} ({r}) {how}"
            if r == "none":
                assert o.value is None
                got = torch.from_numpy(o.elementwise).to(half)
            else:
                got = torch.tensor(o.value, dtype=torch.float64).to(half)
                assert got.double().item() == o.value or np.isnan(o.value), f"{where}: not a {dtype} value"
            assert_matches(got, want, why_tolerant(case, r, "value"), f"{where}: value")
            for role, g in want_grads.items():
                got_g = torch.from_numpy(o.grads[role]).to(half)
                tolerant = why_tolerant(case, r, "grad") or (how == "together" and position_dependent)
                assert_matches(got_g, g, tolerant or None, f"{where}: grad[{role}]")


# -- the reports of issue 12 ----------------------------------------------------------------------


def _regression_job(loss: str, reduction: str, dtype: str, fill: float, shape=(50, 10)) -> Job:
    half = HALF[dtype]
    tensors = {"input": torch.full(shape, fill, dtype=half), "target": torch.zeros(shape, dtype=half)}
    return make_job(loss, {}, reduction, tensors, False)


def test_mse_mean_of_float16_100_against_0_is_10000_in_a_group_of_24():
    """24 concurrent copies answered "Infinity" when batched: their sums accumulated in float16."""
    jobs = [_regression_job("mse", "mean", "float16", 100.0) for _ in range(24)]
    want = F.mse_loss(torch.full((50, 10), 100.0, dtype=torch.float16), torch.zeros(50, 10, dtype=torch.float16))
    assert want.item() == 10000.0
    assert run_group(jobs[:1], CPU)[0].value == 10000.0
    outcomes = run_group(jobs, CPU)
    assert [o.batch_size for o in outcomes] == [24] * 24
    assert [o.value for o in outcomes] == [10000.0] * 24


def test_bfloat16_l1_sum_is_pytorchs_in_a_group():
    """24 concurrent copies of a (50, 10) tensor of 1 + 2^-7 against 0 gave 502.0 batched, 504.0 alone."""
    x = torch.full((50, 10), 1.0078125, dtype=torch.bfloat16)  # 1 + 2^-7, exact in bfloat16
    want = F.l1_loss(x, torch.zeros_like(x), reduction="sum").item()
    assert want == 504.0
    jobs = [_regression_job("l1", "sum", "bfloat16", 1.0078125) for _ in range(24)]
    assert run_group(jobs[:1], CPU)[0].value == want
    assert [o.value for o in run_group(jobs, CPU)] == [want] * 24


def test_pytorch_huber_backward_in_float16_depends_on_the_tensor_length():
    """Why POSITION_DEPENDENT holds huber's float16 gradients (alone against in a group) only to the
    dtype's tolerance: PyTorch alone gives the first rows another gradient when more rows follow
    them. Should this fail, PyTorch computes them alike: drop the exception."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 6, generator=g).half(), torch.randn(8, 6, generator=g).half()

    def first_rows_grad(rows: int) -> torch.Tensor:
        leaf = x[:rows].clone().requires_grad_(True)
        out = F.huber_loss(leaf, y[:rows], reduction="none", delta=0.7)
        out.backward(torch.full_like(out, 1 / 24))  # the gradient of a mean over 24 elements
        return leaf.grad[:4]

    assert not torch.equal(first_rows_grad(4), first_rows_grad(8))
    torch.testing.assert_close(first_rows_grad(4), first_rows_grad(8), rtol=0, atol=2**-10 / 24)


# -- aggregates and per-sample values -------------------------------------------------------------

PER_SAMPLE = [(c, r, d) for c in SINGLE if not whole(c) for r in reductions_of(c) if r != "none" for d in HALF]


@pytest.mark.parametrize("case,reduction,dtype", PER_SAMPLE, ids=_id)
def test_per_sample_values_are_each_sample_alone_and_the_aggregate_gives_the_value(case, reduction, dtype):
    """Each per-sample value is the value of that sample sent alone, in the dtype (the engine sums a
    sample's row as PyTorch sums that sample alone); the value is the dtype's rounding of S (sum),
    and of S / W (mean, batchmean) to an ulp (for a loss with mean weights it rounds the float32
    quotient of the float32 sums S and W)."""
    half = HALF[dtype]
    tensors = half_tensors(case, 0, half)
    (o,) = run_group([case_job(case, tensors, reduction)], CPU)
    s, w = o.aggregate
    if reduction == "sum":
        assert o.value == torch.tensor(s, dtype=torch.float64).to(half).item()
    else:  # a float32 quotient S / W rounded to the dtype, where the loss has mean weights
        quotient = torch.tensor(s / w, dtype=torch.float64).to(half).double()
        assert_matches(
            torch.tensor(o.value, dtype=torch.float64), quotient, "a float32 quotient", "value", eps=EPS[half]
        )
    assert o.per_sample.shape == (len(samples(case, tensors)),)
    for i, (own, params) in enumerate(samples(case, tensors)):
        job = make_job(case.loss, params, reduction, own, list(case.grad_roles))
        (alone,) = run_group([job], CPU)
        # equal (0.0 alone where the sample's values are -0.0: a request's sum starts from 0.0)
        assert o.per_sample[i] == alone.value or (np.isnan(o.per_sample[i]) and np.isnan(alone.value)), i
