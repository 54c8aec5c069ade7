"""Device choice and torch threading."""

from __future__ import annotations

import os

import torch


def choose_device(setting: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present)."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} was asked for, but CUDA is not available")
    return device


def configure_threads(threads: int, workers: int) -> int:
    """Keep torch threads x worker processes within the cores (no oversubscription)."""
    if threads <= 0:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def probe(device: torch.device) -> None:
    """A tiny computation that proves the device answers."""
    x = torch.ones(4, device=device)
    float((x * 2).sum().item())
