"""Work that the losses of one request do alike, done once.

A request with several losses on the same tensors (v1.1's ``losses``) has its jobs computed one
after another; where two of them compute the same thing from the same tensor (focal's and
cross_entropy's log-softmax over the classes), the engine opens a memo for the request's jobs
(``memo``) and the losses ask it (``log_softmax``) instead of computing it again. Only values
are shared (no autograd graph: with gradients each loss has a leaf of its own), only for a job
computed alone (a batched job's tensors are a concatenation), and only what is bitwise the same
as the loss computes alone, so that an answer never depends on what else was asked with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor

_LOCAL = threading.local()  # the memo open on this thread (the engine's), or None


@contextmanager
def memo(store: dict | None) -> Iterator[None]:
    """Open ``store`` (a request's memo; None: none) for the losses computed in this block: only
    around values computed without an autograd graph (the engine opens it for a job with no
    gradient roles, in inference mode), whose results may be shared."""
    previous = getattr(_LOCAL, "store", None)
    _LOCAL.store = store
    try:
        yield
    finally:
        _LOCAL.store = previous


def active() -> bool:
    """Whether a memo is open (a loss may then take the longer way that shares its work)."""
    return getattr(_LOCAL, "store", None) is not None


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """``F.log_softmax(x, dim)``, computed once per request for the same tensor."""
    store = getattr(_LOCAL, "store", None)
    if store is None:
        return F.log_softmax(x, dim)
    # The memory, layout and dtype name the tensor; the entry holds ``x`` itself, so its memory
    # cannot be freed and reused by another tensor while the key stands.
    key = ("log_softmax", x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device, dim)
    hit = store.get(key)
    if hit is None:
        hit = store[key] = (x, F.log_softmax(x, dim))
    return hit[1]
