"""Reference cases: ssim against MONAI's own ``SSIMLoss`` (a test-only dependency).

``SSIMLoss(reduction="none")`` gives one value per image, (N, 1): the elementwise values are those
(N,); its mean and sum are over the images.

MONAI details the reference works around in float64, so that it compares values rather than
quirks (each would cost float64 inputs about 1e-7 relative, float32's precision):

- ``compute_ssim_and_cs`` casts both images to float32 (``convert_data_type(..., dtype=torch.float)``)
  whatever their dtype: in float64 that cast is made to the images' own dtype;
- its Gaussian window is computed in the default dtype (``torch.arange`` of float bounds, then
  ``exp``), and the uniform one as ``torch.ones(...)``: in float64 the default dtype is float64
  while MONAI makes them.

Both only while the reference runs (``_in_float64``); float32 runs MONAI untouched. MONAI's own
float32 path, for float64 images, is held to float32 precision in tests/losses/test_lovasz_ssim_checks.py.
"""

from __future__ import annotations

import contextlib

import torch
from monai.losses import SSIMLoss
from monai.metrics import regression

from .case import Case


@contextlib.contextmanager
def _in_float64(dtype):
    if dtype != torch.float64:
        yield
        return
    cast = regression.convert_data_type

    def keep_dtype(data, *args, dtype=None, **kwargs):
        return cast(data, *args, dtype=data.dtype, **kwargs)

    default = torch.get_default_dtype()
    regression.convert_data_type = keep_dtype
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default)
        regression.convert_data_type = cast


def monai_ssim(t, p, reduction):
    x, y = t["input"], t["target"]
    with _in_float64(x.dtype):
        out = SSIMLoss(spatial_dims=x.ndim - 2, reduction=reduction, **p)(x, y)
    assert out.dtype == x.dtype
    return out.reshape(-1) if reduction == "none" else out


def _images(shape, like=None, scale=1.0):
    """Images in [0, scale); ``like``: the target is the input plus noise of that size (clamped to
    [0, scale]), else an independent image."""

    def make(g, dtype):
        x = scale * torch.rand(*shape, generator=g, dtype=dtype)
        if like is None:
            y = scale * torch.rand(*shape, generator=g, dtype=dtype)
        else:
            y = (x + like * scale * torch.randn(*shape, generator=g, dtype=dtype)).clamp(0, scale)
        return {"input": x, "target": y}

    return make


def _ssim(id, params, make, **kw):
    kw.setdefault("grad_roles", ("input", "target"))
    return Case(id, "ssim", params, make, monai_ssim, **kw)


CASES = [
    _ssim("ssim", {}, _images((2, 1, 13, 12))),
    _ssim("ssim-channels", {"win_size": 7}, _images((3, 3, 9, 10))),
    _ssim("ssim-similar", {"win_size": 5, "kernel_sigma": 1.0}, _images((2, 2, 8, 9), like=0.05)),
    _ssim("ssim-uniform", {"kernel_type": "uniform", "win_size": 5}, _images((2, 2, 8, 7))),
    _ssim("ssim-even-window", {"win_size": 4, "kernel_sigma": 0.8}, _images((2, 1, 6, 7))),
    _ssim("ssim-window-fills-the-image", {"win_size": 6}, _images((2, 1, 6, 6))),
    _ssim(
        "ssim-per-dimension",
        {"win_size": [3, 7], "kernel_sigma": [0.5, 2.0], "k1": 0.02, "k2": 0.05},
        _images((2, 2, 5, 9)),
    ),
    _ssim("ssim-data-range", {"data_range": 255.0, "win_size": 5}, _images((2, 1, 7, 8), like=0.1, scale=255.0)),
    _ssim("ssim-3d", {"win_size": 3}, _images((2, 1, 4, 5, 6))),
    _ssim(
        "ssim-3d-uniform-per-dimension",
        {"kernel_type": "uniform", "win_size": [2, 3, 4]},
        _images((2, 2, 3, 4, 5), like=0.2),
    ),
    _ssim(
        "ssim-3d-gaussian-sigmas", {"win_size": [3, 3, 5], "kernel_sigma": [1.0, 0.7, 1.5]}, _images((1, 1, 4, 5, 6))
    ),
    _ssim("ssim-nested", {"win_size": 3}, _images((2, 1, 4, 4)), nested=("input", "target")),
]
