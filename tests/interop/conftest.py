"""One real server (``python -m service``) for the package's tests, with a body limit small
enough to be exceeded cheaply."""

from __future__ import annotations

import pytest

from tests.e2e.servers import Server, start

MAX_BODY = 4 * 2**20


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Server:
    running = start(tmp_path_factory.mktemp("interop"), limits__max_body_bytes=MAX_BODY)
    yield running
    assert running.stop() == 0
