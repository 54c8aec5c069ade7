"""The application: settings in, routes, error handlers and middleware; the engine in the lifespan."""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE  # the exit status of a worker that cannot start

from . import __version__
from .api import docs, evaluate, health, losses, problems
from .api.middleware import Gateway
from .api.v2 import infer as v2_infer
from .api.v2 import routes as v2
from .config import Settings
from .core import Core
from .engine.device import choose_device, configure_threads
from .engine.worker import Engine
from .losses.plugins import PluginError
from .losses.plugins import registry as loss_registry
from .observability import metrics
from .observability.logging import AccessLog
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
        app.state.engine = app.state.core.engine = engine
        app.state.draining = False
        restore = _drain_on_sigterm(app)
        log.info("ready", extra={"device": str(engine.device), "torch_threads": threads})
        try:
            yield
        finally:
            app.state.draining = True
            engine.stop()
            app.state.access_log.flush()
            restore()

    app = LossService(
        title="loss-service",
        version=__version__,
        summary="PyTorch loss functions over HTTP: values, per-element values and gradients.",
        lifespan=lifespan,
        # The service exports Prometheus metrics and JSON logs of its own; FastAPI's built-in
        # OpenTelemetry hooks would only add per-request checks for providers nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # /v1/evaluate/ is a 404 that names /v1/evaluate, not an empty 307 (which most clients
        # follow by dropping a POST's body).
        redirect_slashes=False,
        docs_url=None,  # /docs and /redoc: docs.install, with their assets served here (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.access_log = AccessLog(enabled=settings.access_log)
    app.state.registry = loss_registry(tuple(settings.plugins))  # built-ins and plugins; PluginError
    app.state.core = Core(settings, app.state.registry)
    for router in (losses.router, evaluate.router, health.router, v2.router):
        app.include_router(router)
    problems.install(app)
    docs.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class LossService(FastAPI):
    """FastAPI, behind the service's own Gateway: every route gets request ids, access logs,
    metrics, API keys, body limits and CORS, and the hot route (``POST /v1/evaluate``) is
    answered by the Gateway directly, without FastAPI's per-request error, routing and
    dependency layers (nor FastAPI's and Starlette's own ``__call__``)."""

    _front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self._front
        if front is None:
            front = self._front = self._build_front()
        await front(scope, receive, send)

    def _build_front(self) -> ASGIApp:
        s: Settings = self.state.settings
        hot = evaluate.EvaluateFastPath(self)
        infer = v2_infer.InferFastPath(self, v2.router.routes)
        app: ASGIApp = Gateway(
            partial(FastAPI.__call__, self), access_log=self.state.access_log,
            max_body_bytes=s.limits.max_body_bytes, read_timeout_s=s.limits.read_timeout_s,
            body_timeout_s=s.engine.request_timeout_s, budget=_EngineBudget(self),
            api_keys=s.auth.api_keys, direct={(hot.METHOD, hot.PATH): hot},
            direct_patterns=((infer.METHOD, infer.PATH, infer),),
        )  # fmt: skip
        if s.cors_origins:  # outermost: errors such as 401 carry CORS headers too
            app = CORSMiddleware(
                app, allow_origins=s.cors_origins, allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID",
                               "Inference-Header-Content-Length"],
                expose_headers=["X-Request-ID", "Retry-After", "Inference-Header-Content-Length"],
            )  # fmt: skip
        return app


class _EngineBudget:
    """The engine's in-flight budget, for the Gateway (built before the lifespan makes the engine)."""

    __slots__ = ("_app",)

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def take(self, nbytes: int) -> None:
        self._app.state.engine.take(nbytes)

    def release(self, nbytes: int) -> None:
        self._app.state.engine.release(nbytes)


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, plus the request and problem schemas that the raw-body route declares."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        request_schema = EvaluateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(request_schema.pop("$defs", {}))
        schemas["EvaluateRequest"] = request_schema
        schemas["Problem"] = problems.PROBLEM_SCHEMA
        schemas.update(v2.openapi_schemas())
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
    from . import memory
    from .observability.logging import configure

    settings = Settings()
    configure(settings.log_level)
    memory.configure()
    try:
        return create_app(settings)
    except PluginError as exc:  # the deployer's mistake: one line that says which plugin and why
        sys.stderr.write(f"loss-service: {exc}\n")
        raise SystemExit(STARTUP_FAILURE) from None
