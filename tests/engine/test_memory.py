"""service.memory: the allocator's settings, huge pages by a restart with glibc's tunable, trim."""

from __future__ import annotations

import pytest

from service import memory

pytestmark = pytest.mark.skipif(not memory.AVAILABLE, reason="not glibc: nothing to configure")


def test_glibc_takes_the_settings():
    assert memory.configure() is True
    memory.reuse(False)  # bounded: hands the heap's free memory back
    memory.reuse(True)
    assert memory.trim() in (True, False)  # whether any memory was handed back


def test_huge_pages_are_asked_for_once_and_never_over_the_deployers_own_tunables():
    env = memory.with_huge_pages({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert memory.with_huge_pages(env) is None  # set already: no second restart
    assert memory.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) is None


def test_python_m_service_runs_with_the_tunable(tmp_path):
    """The real server (python -m service) restarts itself with it: what its process sees."""
    from ..e2e.servers import start

    server = start(tmp_path)
    try:
        with open(f"/proc/{server.proc.pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        assert b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in environ
    finally:
        assert server.stop() == 0
