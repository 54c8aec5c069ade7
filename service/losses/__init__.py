"""The loss catalog: contracts, implementations and the registry."""

from .base import Loss, Params
from .registry import Registry, default_registry

__all__ = ["Loss", "Params", "Registry", "default_registry"]
