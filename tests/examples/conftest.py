"""A real server with an API key (the examples send it from LOSS_SERVICE_API_KEY), and what the
examples are run with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT, Server, start

API_KEY = "example-key"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Server:
    running = start(tmp_path_factory.mktemp("examples"), auth__api_keys=API_KEY)
    yield running
    assert running.stop() == 0


def run_example(command: list[str | Path], **env: str) -> subprocess.CompletedProcess:
    """An example as a user runs it: from the repository's root, with ``env`` added to the
    environment (less the suite's LOSS_SERVICE_* variables)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    environment.update(env)
    return subprocess.run(
        [str(part) for part in command], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
