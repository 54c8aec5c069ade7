"""SSIM loss with MONAI ``SSIMLoss`` semantics and parameter names: 1 - SSIM per image.

SSIM (Wang et al. 2004) of images x and y, at every position of a window w (a normalized Gaussian
or uniform window of win_size, "valid": only where it fits inside the image):

    ((2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)) * ((2 s_xy + c2) / (s_x + s_y + c2))

where mu_x = w * x, s_x = w * x^2 - mu_x^2, s_xy = w * (x y) - mu_x mu_y, c1 = (k1 data_range)^2
and c2 = (k2 data_range)^2; an image's SSIM is the mean over its channels and positions. The
spatial dims come from the rank: (N, C, H, W) images, (N, C, D, H, W) volumes.

The window is separable (MONAI's Gaussian is the outer product of one normalized 1-D Gaussian per
dim, its uniform window 1 / prod(win_size)), so it is applied one dim at a time, as a sum over its
taps of shifted slices: elementwise operations whose result for an image does not depend on the
other images of a batch, on any device. In float16 and bfloat16 it is computed in float32 (MONAI
computes in float32 whatever the dtype; s_x = w * x^2 - mu_x^2 cancels too much in half
precision), and each image's value is rounded to the dtype once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import torch
from pydantic import Field, PlainValidator, WithJsonSchema
from torch import Tensor

from ..arrays import fmt_shape
from ..errors import ErrorItem
from .base import Checked, Inputs, Loss, Params
from .contract import FLOAT, form, role


def _one_or_per_dim(number: Callable[[object], int | float | None], expected: str) -> Callable[[object], object]:
    """A validator of a number or a list of numbers (one per spatial dimension), each normalized by
    ``number`` (None: not one): one error for any misfit, where pydantic's union would give one
    per branch."""

    def validate(value: object) -> object:
        if isinstance(value, list):
            numbers = [number(v) for v in value]
            if all(n is not None for n in numbers):
                return numbers
        elif (n := number(value)) is not None:
            return n
        raise ValueError(f"expected {expected}, or a list of them (one per spatial dimension)")

    return validate


def _window(v: object) -> int | None:
    """An integer >= 1 (an integral float too, as the other params take it)."""
    if type(v) is float and v.is_integer():
        v = int(v)
    return v if type(v) is int and v >= 1 else None


def _sigma(v: object) -> float | None:
    """A finite number > 0."""
    if type(v) is not int and type(v) is not float:  # not bool
        return None
    return float(v) if math.isfinite(v) and v > 0 else None


Window = Annotated[
    int | list[int],
    PlainValidator(_one_or_per_dim(_window, "an integer >= 1")),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "array", "items": {"type": "integer", "minimum": 1}}]}
    ),
]
Sigma = Annotated[
    float | list[float],
    PlainValidator(_one_or_per_dim(_sigma, "a finite number > 0")),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
            ]
        }
    ),
]
Constant = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SSIMParams(Params):
    data_range: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="the value range of the images (1.0, 255...): scales c1 and c2"
    )
    kernel_type: Literal["gaussian", "uniform"] = Field("gaussian", description="the window: Gaussian or uniform")
    win_size: Window = Field(
        11, description="the window's size: one for every spatial dimension, or one per spatial dimension"
    )
    kernel_sigma: Sigma = Field(
        1.5, description="the Gaussian window's standard deviation: one, or one per spatial dimension"
    )
    k1: Constant = Field(0.01, description="c1 = (k1 data_range)^2, the luminance term's stability constant")
    k2: Constant = Field(0.03, description="c2 = (k2 data_range)^2, the contrast term's stability constant")


def _per_dim(value: int | float | list, dims: int) -> list:
    return list(value) if isinstance(value, list) else [value] * dims


def _taps(p: SSIMParams, size: int, sigma: float) -> list[float]:
    """The 1-D window: a Gaussian sampled at the offsets from its centre, normalized; or uniform."""
    if p.kernel_type == "uniform":
        return [1 / size] * size
    # exp(-d^2 / (2 sigma^2)) / sum, each term divided by the central one's (d = 0, or 1/2 for an
    # even size): the same window, with a largest tap of 1, so that no sigma leaves it all 0
    # (where MONAI's sum underflows to 0 and its window is 0 / 0). Divided, never squared: a tiny
    # sigma gives inf, whose exp is 0, where a square would overflow (Python raises).
    squares = [(i - (size - 1) / 2) ** 2 for i in range(size)]
    nearest = min(squares)
    gauss = [math.exp(-((d2 - nearest) / sigma / sigma) / 2) for d2 in squares]
    total = math.fsum(gauss)
    return [g / total for g in gauss]


def _filter(t: Tensor, dim: int, taps: list[float]) -> Tensor:
    """The window along ``dim``, where it fits: sum_i taps[i] * t[..., i : i + L - k + 1, ...]."""
    out = t.shape[dim] - len(taps) + 1
    acc = taps[0] * t.narrow(dim, 0, out)
    for i, tap in enumerate(taps[1:], 1):
        acc = acc + tap * t.narrow(dim, i, out)
    return acc


def _square(v: float) -> float:
    return v * v  # inf past float's range (``v ** 2`` raises OverflowError)


def _working(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _ssim_loss(t: Inputs, p: SSIMParams) -> Tensor:
    x, y = _working(t["input"]), _working(t["target"])
    spatial = x.ndim - 2
    maps = torch.stack([x, y, x * x, y * y, x * y])  # (5, N, C, *spatial)
    for d, (size, sigma) in enumerate(
        zip(_per_dim(p.win_size, spatial), _per_dim(p.kernel_sigma, spatial), strict=True)
    ):
        maps = _filter(maps, 3 + d, _taps(p, size, sigma))
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = maps.unbind(0)
    c1, c2 = _square(p.k1 * p.data_range), _square(p.k2 * p.data_range)
    s_x, s_y, s_xy = mu_xx - mu_x * mu_x, mu_yy - mu_y * mu_y, mu_xy - mu_x * mu_y
    contrast = (2 * s_xy + c2) / (s_x + s_y + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * contrast
    return (1 - ssim.reshape(ssim.shape[0], -1).mean(1)).to(t["input"].dtype)


# --- checks -------------------------------------------------------------------------------------

WORK_LIMIT = 2**30  # multiply-adds of the separable window, per map


def _check_rank(c: Checked) -> list[ErrorItem]:
    """Both roles 2-D, or both 3-D (each form alone would take the other's H and W)."""
    got, want = c.binding.forms["target"], c.binding.forms["input"]
    if got == want:
        return []
    shape = c.arrays["input"].shape
    msg = (
        f"expected shape {want} = {fmt_shape(shape)} from input {want} = {fmt_shape(shape)}; "
        f"got {fmt_shape(c.arrays['target'].shape)}"
    )
    return [ErrorItem(("inputs", "target"), msg)]


def _spatial(c: Checked) -> tuple[str, tuple[int, ...]]:
    """The input's spatial letters, as "(H, W)", and its sizes."""
    pattern = c.binding.forms["input"].pattern[2:]
    return "(" + ", ".join(pattern) + ")", c.arrays["input"].shape[2:]


def _check_lists(c: Checked) -> list[ErrorItem]:
    letters, sizes = _spatial(c)
    errors = []
    for name in ("win_size", "kernel_sigma"):
        value = getattr(c.params, name)
        if isinstance(value, list) and len(value) != len(sizes):
            msg = f"expected {len(sizes)} values, one per spatial dimension {letters} of the input; got {len(value)}"
            errors.append(ErrorItem(("loss", "params", name), msg))
    return errors


def _check_window(c: Checked) -> list[ErrorItem]:
    letters, sizes = _spatial(c)
    win = c.params.win_size
    wins = _per_dim(win, len(sizes))
    if len(wins) != len(sizes) or all(s >= w for s, w in zip(sizes, wins, strict=True)):
        return []
    stated = fmt_shape(tuple(win)) if isinstance(win, list) else str(win)
    shape = c.arrays["input"].shape
    msg = (
        f"expected spatial sizes {letters} of at least win_size = {stated}; "
        f"got {c.binding.forms['input']} = {fmt_shape(shape)}"
    )
    return [ErrorItem(("inputs", "input"), msg)]


def _check_work(c: Checked) -> list[ErrorItem]:
    _, sizes = _spatial(c)
    wins = _per_dim(c.params.win_size, len(sizes))
    if len(wins) != len(sizes):
        return []
    work = c.arrays["input"].size * sum(wins)
    if work <= WORK_LIMIT:
        return []
    dims = " x ".join(c.binding.forms["input"].pattern)
    msg = f"the window needs {dims} x (sum of win_size) = {work} multiply-adds per map; the limit is {WORK_LIMIT}"
    return [ErrorItem(("loss", "params", "win_size"), msg)]


_IMAGES = (form("(N, C, H, W)", FLOAT, "images"), form("(N, C, D, H, W)", FLOAT, "volumes"))

LOSSES = [
    Loss(
        name="ssim",
        summary=(
            "1 - SSIM per image, SSIM = mean over channels and window positions of "
            "(2 mu_x mu_y + c1)(2 s_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(s_x + s_y + c2)) with a Gaussian or "
            "uniform window (Wang et al. 2004; MONAI SSIMLoss)."
        ),
        category="image",
        reference="MONAI SSIMLoss",
        roles=(
            role("input", *_IMAGES, description="images (N, C, H, W) or volumes (N, C, D, H, W)"),
            role("target", *_IMAGES, description="images of the input's shape"),
        ),
        forward=_ssim_loss,
        elementwise_shape="(N)",
        params=SSIMParams,
        aliases=("SSIMLoss", "ssim_loss"),
        validate=(_check_rank, _check_lists, _check_window, _check_work),
    ),
]
