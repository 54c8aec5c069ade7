"""GET /v1/losses and GET /v1/losses/{name}."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas.catalog import Catalog, LossInfo, loss_info
from .deps import RegistryDep
from .problems import responses

router = APIRouter(prefix="/v1/losses", tags=["catalog"])


@router.get("", response_model=Catalog, summary="The catalog of losses")
async def list_losses(registry: RegistryDep) -> Catalog:
    return Catalog(losses=[loss_info(loss) for loss in registry])


@router.get("/{name}", response_model=LossInfo, summary="One loss, by name or alias", responses=responses(404))
async def get_loss(name: str, registry: RegistryDep) -> LossInfo:
    return loss_info(registry.get(name, loc=("path", "name")))
