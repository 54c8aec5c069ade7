"""The application: settings in, routes, error handlers and middleware; the engine in the lifespan."""

from __future__ import annotations

import logging
import signal
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from . import __version__
from .api import evaluate, health, losses, problems
from .api.middleware import ApiKeys, BodyLimit, RequestContext
from .config import Settings
from .engine.device import choose_device, configure_threads
from .engine.worker import Engine
from .losses import default_registry
from .observability import metrics
from .schemas.evaluate import EvaluateRequest

log = logging.getLogger("service")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threads = configure_threads(settings.engine.torch_threads, settings.workers)
        engine = Engine(settings.engine, choose_device(settings.engine.device))
        engine.start()
        metrics.watch_engine(engine)
        app.state.engine = engine
        app.state.draining = False
        restore = _drain_on_sigterm(app)
        log.info("ready", extra={"device": str(engine.device), "torch_threads": threads})
        try:
            yield
        finally:
            app.state.draining = True
            engine.stop()
            restore()

    app = FastAPI(
        title="loss-service",
        version=__version__,
        summary="PyTorch loss functions over HTTP: values, per-element values and gradients.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = default_registry()
    for router in (losses.router, evaluate.router, health.router):
        app.include_router(router)
    problems.install(app)
    app.add_middleware(evaluate.EvaluateFastPath)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes, read_timeout_s=settings.limits.read_timeout_s)
    app.add_middleware(ApiKeys, keys=settings.auth.api_keys)
    app.add_middleware(RequestContext, access_log=settings.access_log)
    if settings.cors_origins:  # outermost: errors such as 401 carry CORS headers too
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )  # fmt: skip
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, plus the request and problem schemas that the raw-body route declares."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        request_schema = EvaluateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(request_schema.pop("$defs", {}))
        schemas["EvaluateRequest"] = request_schema
        schemas["Problem"] = problems.PROBLEM_SCHEMA
        app.openapi_schema = doc
    return app.openapi_schema


def _drain_on_sigterm(app: FastAPI):
    """Turn /readyz to 503 as soon as SIGTERM arrives, then let uvicorn's own handler drain."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread (e.g. under a test client)
        return lambda: None

    def handler(signum, frame):
        app.state.draining = True
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def create_app_from_env() -> FastAPI:
    """uvicorn factory: settings from the environment (what ``python -m service`` runs)."""
    from .observability.logging import configure

    settings = Settings()
    configure(settings.log_level)
    return create_app(settings)
