"""service.memory: the allocator's settings, its two modes, trim."""

from __future__ import annotations

import pytest

from service import memory

pytestmark = pytest.mark.skipif(not memory.AVAILABLE, reason="not glibc: nothing to configure")


def test_glibc_takes_the_settings():
    assert memory.configure() is True
    memory.reuse(False)  # bounded: hands the heap's free memory back
    memory.reuse(True)
    assert memory.trim() in (True, False)  # whether any memory was handed back
