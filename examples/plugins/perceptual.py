"""A perceptual loss: the L1 or L2 distance between a feature network's outputs for two images.

The deployer provides the network as a TorchScript file (``torch.jit.save`` of a module that maps
``(N, C, H, W)`` images to ``(N, F, h, w)`` features, e.g. the first blocks of a VGG) and names it
by a setting::

    LOSS_SERVICE_PERCEPTUAL_NETWORK=/models/vgg16_relu2_2.pt
    LOSS_SERVICE_PLUGINS=examples.plugins.perceptual:PerceptualLoss

Served as ``perceptual``: roles ``input`` and ``target`` (both ``(N, C, H, W)``), the param
``distance`` (``"l2"``, the mean squared feature difference, or ``"l1"``), reductions mean, sum and
none (the elementwise values are the feature differences, ``(N, F, h, w)``), batched like a
built-in loss. The setting is checked when the plugin is imported (the service does not start
without the file); the network is read once, on the first request, onto the compute device, in
eval mode and without gradients of its own, and converted once per compute dtype (float64 requests
run it in float64).
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from typing import Literal

import torch
from torch import nn

from service.plugins import loss_plugin, role

NETWORK_SETTING = "LOSS_SERVICE_PERCEPTUAL_NETWORK"
NETWORK_PATH = os.environ.get(NETWORK_SETTING, "")
if not NETWORK_PATH:
    raise RuntimeError(f"{NETWORK_SETTING} is not set (the path of the TorchScript feature network)")
if not os.path.isfile(NETWORK_PATH):
    raise FileNotFoundError(f"{NETWORK_SETTING}: no file {NETWORK_PATH!r}")


@functools.cache
def _loaded(device: torch.device) -> torch.jit.ScriptModule:
    """The network as saved, read from its file once (per device: the service uses one)."""
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.10+ calls TorchScript deprecated
        net = torch.jit.load(NETWORK_PATH, map_location=device)
    for p in net.parameters():  # the gradient wanted is the input's, never the network's
        p.requires_grad_(False)
    return net.eval()


@functools.cache
def network(device: torch.device, dtype: torch.dtype) -> torch.jit.ScriptModule:
    """The network on ``device``, computing in ``dtype``."""
    net = _loaded(device)
    if all(p.dtype == dtype for p in net.parameters()):
        return net
    with torch.inference_mode(False), torch.no_grad():
        return copy.deepcopy(net).to(dtype)


@loss_plugin(
    name="perceptual",
    summary="Perceptual loss: L1 or L2 distance between the features of a deployer-provided network.",
    category="image",
    reference="Johnson et al. 2016, Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    roles=[role("input", "(N, C, H, W)"), role("target", "(N, C, H, W)")],
    elementwise_shape="(N, F, h, w) the feature differences",
)
class PerceptualLoss(nn.Module):
    def __init__(self, distance: Literal["l1", "l2"] = "l2", reduction: str = "mean"):
        super().__init__()
        self.distance = distance
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = network(input.device, input.dtype)
        diff = net(input) - net(target)
        el = diff.abs() if self.distance == "l1" else diff.pow(2)
        if self.reduction == "none":
            return el
        return el.sum() if self.reduction == "sum" else el.mean()
