"""``python -m service [--host H] [--port P] [--workers W] [--log-level L]``: settings -> uvicorn.

Every option is also an environment variable (LOSS_SERVICE_HOST, ...); the command line wins.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .config import Settings
from .protocol import HTTP_PROTOCOL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description="Run the loss service.")
    parser.add_argument("--host", help="bind address (LOSS_SERVICE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (LOSS_SERVICE_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (LOSS_SERVICE_WORKERS, default 1)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="LOSS_SERVICE_LOG_LEVEL")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (LOSS_SERVICE_ENGINE__DEVICE)")
    args = parser.parse_args(argv)
    for name, value in vars(args).items():
        if value is not None:
            key = "ENGINE__DEVICE" if name == "device" else name.upper()
            os.environ[f"LOSS_SERVICE_{key}"] = str(value)  # the workers read the same settings
    settings = Settings()
    config = uvicorn.Config(
        "service.app:create_app_from_env",
        factory=True,
        http=HTTP_PROTOCOL,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        log_config=None,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        # uvicorn annotates an int but only hands it to asyncio.timeout, which takes any seconds
        # uvicorn's annotation says int; it passes the value to asyncio.timeout, which takes a float
        timeout_graceful_shutdown=settings.drain_timeout_s or settings.engine.request_timeout_s,  # type: ignore[arg-type]
        proxy_headers=True,
    )
    if config.workers > 1:
        # uvicorn's supervisor: each spawned worker runs its own server, engine and drain
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):  # a plugin could not load
            sys.exit(STARTUP_FAILURE)
    else:
        DrainingServer(config).run()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM that was drained ends the process with status 0.

    (uvicorn re-raises the captured signal after its graceful shutdown, so the process would
    otherwise die of SIGTERM even though every request was answered.)
    """

    def handle_exit(self, sig: int, frame) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and captured and captured[-1] == sig:
            captured.pop()


if __name__ == "__main__":
    main()
