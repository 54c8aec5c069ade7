"""Liveness, readiness, service info and Prometheus metrics."""

from __future__ import annotations

import platform

import torch
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from .. import __version__
from ..errors import NotReady
from ..observability import metrics
from .deps import EngineDep, SettingsDep
from .problems import responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: 200 while the process serves")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: 200 once the compute worker runs", responses=responses(503))
async def readyz(request: Request, engine: EngineDep) -> dict:
    if getattr(request.app.state, "draining", False):
        raise NotReady("the service is shutting down")
    if not engine.ready:
        raise NotReady("the compute worker is not running")
    return {"status": "ready", "device": str(engine.device)}


@router.get("/v1/info", summary="Version, device, torch and batching settings")
async def info(settings: SettingsDep, engine: EngineDep) -> dict:
    e = settings.engine
    return {
        "service": "loss-service",
        "version": __version__,
        "device": str(engine.device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "batching": {
            "max_batch_requests": e.max_batch_requests,
            "max_batch_elements": e.max_batch_elements,
            "max_queue_delay_ms": e.max_queue_delay_ms,
            "queue_capacity": e.queue_capacity,
            "inflight_bytes": e.inflight_bytes,
            "request_timeout_s": e.request_timeout_s,
        },
        "limits": settings.limits.model_dump(),
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus() -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
