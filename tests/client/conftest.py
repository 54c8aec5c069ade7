"""A real server per test module (``python -m service``, with an API key), for the client and CLI."""

from __future__ import annotations

import pytest

from tests.e2e.servers import Server, start

API_KEY = "client-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv: Server = start(tmp_path_factory.mktemp("server"), auth__api_keys=API_KEY)
    yield srv
    srv.stop()
