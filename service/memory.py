"""Handing freed memory back to the system.

glibc's malloc keeps what a process frees for reuse: after a burst of large requests a replica
would keep its peak RSS for good (measured before this module: 4.5 GB and 6.6 GB held after bursts
of 12 x 250 MB uploads), and during a burst the holes between live blocks in the heap add to the
RSS. Reuse is also what makes large requests fast: a block handed back costs page faults when it
is needed again (a 26 MB request's buffers: about 30 ms of faults on the 2-core box, measured). So
the allocator works in two modes, switched by the engine on its in-flight bytes:

- reuse (the usual state): blocks up to 32 MiB come from the heap and are reused
  (``M_MMAP_THRESHOLD``, fixed there), and the heap's top is not trimmed on every free
  (``M_TRIM_THRESHOLD`` 1 GiB);
- bounded (once a quarter of the in-flight budget is taken, until it drops under an eighth):
  every block over 1 MiB is a mapping of its own, returned the moment it is freed, and the heap's
  free memory is handed back on entering (``malloc_trim(0)``), so that a burst leaves no holes:
  peak RSS stays within idle + budget + a margin (measured, 12 concurrent 26-82 MB uploads against
  a 256 MiB budget: 490-550 MB over idle with reuse throughout, 270-320 MB with this);
- the small objects of all threads share two arenas (``M_ARENA_MAX``);
- once nothing has been in flight for a second after a large burst, the engine calls ``trim``, off
  the event loop, so that an idle replica comes back to its idle size.

A deployer's own ``MALLOC_MMAP_THRESHOLD_`` (which also turns the switching off),
``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_ARENA_MAX`` take precedence. Elsewhere
(musl, macOS) there is nothing to call and all of this does nothing.
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
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
REUSE_THRESHOLD = 32 * 2**20  # blocks up to this come from the heap and are reused
BOUNDED_THRESHOLD = 2**20  # ... or only up to this, while memory is tight
TRIM_THRESHOLD = 2**30  # the heap's top is not given back on every free (trim does it)
ARENA_MAX = 2
_switching = False  # configure() set the mmap threshold: reuse() may move it


def configure() -> bool:
    """Blocks reused from the heap, its top kept, two arenas (see above), each unless the
    environment sets it; whether glibc took the settings."""
    if _LIBC is None:
        return False
    global _switching
    done = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _switching = _LIBC.mallopt(M_MMAP_THRESHOLD, REUSE_THRESHOLD) == 1
        done &= _switching
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        done &= _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if "MALLOC_ARENA_MAX" not in os.environ:
        done &= _LIBC.mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    if not done:
        log.warning("mallopt refused the memory settings; freed memory may be kept after bursts")
    return done


def reuse(on: bool) -> None:
    """Large blocks from the heap, reused (on), or as mappings of their own, returned when freed
    (off, while memory is tight: then the heap's free memory is handed back too). Nothing in a
    process whose allocator ``configure`` did not set (the deployer's threshold, an embedding app)."""
    if _LIBC is None or not _switching:
        return
    _LIBC.mallopt(M_MMAP_THRESHOLD, REUSE_THRESHOLD if on else BOUNDED_THRESHOLD)
    if not on:
        _LIBC.malloc_trim(0)


def trim() -> bool:
    """Return the allocator's free memory to the system; whether any was returned."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
