"""One row of the reference table: a loss, its params, how to make inputs, and the reference.

The generic tests in ``tests/reference/test_reference.py`` send every case through the real HTTP
stack for every reduction in float32 and float64 and compare ``value``, ``elementwise`` and
``grad`` with the reference, then run ``torch.autograd.gradcheck`` on the service's own forward
and reduction in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Case:
    id: str
    loss: str  # canonical name
    params: dict  # hyper-parameters as the client sends them (JSON values)
    # make(generator, float_dtype) -> the request's tensors; float roles in float_dtype,
    # integer roles as int64. Keep them small (a few hundred elements at most).
    make: Callable[[torch.Generator, torch.dtype], Tensors]
    # reference(tensors, params, reduction) -> what PyTorch (or the written-out formula of MONAI /
    # torchvision) gives for that reduction; gradients are taken through it with autograd.
    reference: Callable[[Tensors, dict, str], torch.Tensor]
    reductions: tuple[str, ...] = ("mean", "sum", "none")
    grad_roles: tuple[str, ...] = ("input",)  # roles whose gradient is compared
    gradcheck: bool = True  # ctc: False (see the contract's note on its gradient)
    # Roles sent as the nested-array tensor form instead of {data, shape, dtype}.
    nested: tuple[str, ...] = field(default=())


def whole(case: Case) -> bool:
    """Whether the case's loss, with its params, reduces the whole request: no elementwise values
    and no reduction none (a loss that is not decomposable; dice's batch=true, Lovasz's
    per_image=false)."""
    from service.losses import default_registry

    loss = default_registry().get(case.loss)
    return loss.whole(loss.params.model_validate(case.params))


def reductions_of(case: Case) -> tuple[str, ...]:
    """The case's reductions that its loss accepts with its params."""
    return tuple(r for r in case.reductions if r != "none" or not whole(case))
