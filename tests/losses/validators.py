"""Running a loss's validators by hand on arrays that already fit its shapes."""

from __future__ import annotations

import numpy as np

from service.errors import ErrorItem
from service.losses import default_registry
from service.losses.base import Checked
from service.losses.contract import check_shapes

REGISTRY = default_registry()


def checked(name: str, params: dict | None = None, **arrays) -> Checked:
    loss = REGISTRY.get(name)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    binding = check_shapes(loss.roles, {k: v.shape for k, v in arrays.items()})
    return Checked(arrays, loss.params.model_validate(params or {}), binding)


def errors(name: str, params: dict | None = None, **arrays) -> list[ErrorItem]:
    """Every error the loss's validators report for these arrays."""
    c = checked(name, params, **arrays)
    return [e for check in REGISTRY.get(name).validate for e in check(c)]
