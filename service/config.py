"""Settings, read from ``LOSS_SERVICE_*`` environment variables (nested groups use ``__``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class EngineSettings(BaseModel):
    """The compute worker: device and batching."""

    device: str = Field("cpu", description="cpu, cuda, cuda:N, or auto (CUDA when present)")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = cores / workers")
    max_batch_requests: int = Field(64, ge=1, description="most requests that share one compute call")
    max_batch_elements: int = Field(2**24, ge=1, description="most tensor elements in one compute call")
    solo_elements: int = Field(
        2**20, ge=1, description="requests with more elements than this run alone (batching pays for small ones)"
    )
    max_queue_delay_ms: float = Field(1.0, ge=0, description="how long a batch waits for company")
    queue_capacity: int = Field(1024, ge=1, description="requests waiting for the worker before 429")
    inflight_bytes: int = Field(2048 * MiB, ge=1, description="decoded tensor bytes in flight before 429")
    request_timeout_s: float = Field(
        60.0, gt=0, description="deadline from arrival to answer (504); the body must arrive within it (400)"
    )


class LimitSettings(BaseModel):
    """What one request may carry."""

    max_body_bytes: int = Field(256 * MiB, ge=1, description="request body size (413)")
    max_elements: int = Field(2**28, ge=1, description="elements in one tensor (413)")
    read_timeout_s: float = Field(30.0, gt=0, description="longest wait for the next chunk of a body")
    header_timeout_s: float = Field(
        10.0, gt=0, description="longest time a request's headers may take; the connection is closed after it"
    )
    max_url_bytes: int = Field(8192, ge=256, description="longest request target (path and query): 414")
    max_header_bytes: int = Field(65536, ge=1024, description="most bytes of request headers, all together: 431")


class AuthSettings(BaseModel):
    """API keys; empty means open."""

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated keys; health endpoints stay open"
    )

    _split = field_validator("api_keys", mode="before")(_split_csv)


class Settings(BaseSettings):
    """Every setting of the service; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="LOSS_SERVICE_", env_nested_delimiter="__", extra="ignore")

    host: str = Field("127.0.0.1", description="bind address (0.0.0.0 in the container image)")
    port: int = Field(8000, ge=0, le=65535, description="port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="JSON logs on stderr")
    access_log: bool = Field(True, description="one JSON line per request (never tensor contents)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS; empty: CORS off"
    )
    timeout_keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connections are closed after this")
    drain_timeout_s: float | None = Field(
        None,
        gt=0,
        description="after SIGTERM, how long requests in progress may take before they get 503 "
        "(default: the engine's request_timeout_s)",
    )
    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated module:attr of deployer plugin losses (besides the loss_service.losses "
        "entry points)",
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    _split = field_validator("cors_origins", "plugins", mode="before")(_split_csv)
