"""Handing freed memory back to the system.

glibc's malloc keeps what a process frees in its arenas for reuse: after a burst of large requests
a replica would keep its peak RSS for good (measured before this module: 4.5 GB and 6.6 GB held
after bursts of 12 x 250 MB uploads), and with one arena per thread that touched memory (the
event loop, the decoding threads, the compute thread) what one arena keeps free the others
cannot use. So, set at start-up by ``configure``:

- ``M_MMAP_THRESHOLD`` fixed at 1 MiB: every larger block (tensors, bodies, encoded answers) is a
  mapping of its own, handed back the moment it is freed, so that a burst leaves no holes in the
  heap. (glibc's default raises the threshold to each large block freed, up to 32 MiB; then the
  heap keeps the blocks. Measured, 12 concurrent 26-82 MB uploads against a 256 MiB budget: peak
  RSS 490-550 MB over idle that way, 270-320 MB with 1 MiB.)
- ``M_ARENA_MAX`` 2: the small objects of all threads share two arenas.
- Fresh mappings cost page faults (about 10 ms for the buffers of a 26 MB request); transparent
  huge pages make them 512 times fewer. glibc asks for them with the tunable
  ``glibc.malloc.hugetlb=1``, which it reads at process start only: ``python -m service`` starts
  itself again with it set (``with_huge_pages``) unless the environment says otherwise.

``trim`` asks glibc to return the free pages of every arena (``malloc_trim(0)``); the engine calls
it, off the event loop, once nothing has been in flight for a second after a large burst. A
deployer's own ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` take
precedence. Elsewhere (musl, macOS) there is nothing to call and all of this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("service.memory")


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name is not None else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim"):  # glibc only
        return None
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


_LIBC = _glibc()
AVAILABLE = _LIBC is not None
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters
MMAP_THRESHOLD = 2**20
ARENA_MAX = 2
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def configure() -> bool:
    """Large blocks as mappings of their own, two arenas (see above), unless the environment
    already sets them; whether glibc took the settings."""
    if _LIBC is None:
        return False
    done = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done &= _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if "MALLOC_ARENA_MAX" not in os.environ:
        done &= _LIBC.mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    if not done:
        log.warning("mallopt refused the memory settings; freed memory may be kept after bursts")
    return done


def with_huge_pages(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to start the process again with, so that glibc maps large blocks on huge
    pages; None where there is nothing to do (not glibc, or the tunables are set already)."""
    if _LIBC is None or "GLIBC_TUNABLES" in environ:
        return None
    return {**environ, "GLIBC_TUNABLES": HUGE_PAGES}


def trim() -> bool:
    """Return the allocator's free memory to the system; whether any was returned."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
