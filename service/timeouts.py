"""Many timeouts on one event loop, for a dict entry each.

Every request arms two timeouts (its body's read timeout, its deadline) and nearly always disarms
them. With a timer each, that is a ``call_later`` and a ``cancel`` twice per request: about 2.3 us a
pair on uvloop, measured, a share that grows on a loaded event loop. Here arming is a dict entry
and disarming removes it; one tick every ``resolution_s`` runs while anything is armed and fires
what is due, so a timeout fires at most ``resolution_s`` late (or later when the loop is busy,
as any timer would).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("service.timeouts")
RESOLUTION_S = 0.01


class Watchdog:
    """Timeouts on ``loop``, checked every ``resolution_s``; use it from that loop's thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution_s: float = RESOLUTION_S) -> None:
        self.loop = loop
        self.resolution_s = resolution_s
        self._due: dict[Hashable, tuple[float, Callable[[Any], None], Any]] = {}
        self._tick: asyncio.TimerHandle | None = None

    def arm(self, key: Hashable, after_s: float, callback: Callable[[Any], None], arg: Any) -> None:
        """Call ``callback(arg)`` in ``after_s`` seconds unless ``disarm(key)`` comes first
        (arming a key again replaces its timeout)."""
        self._due[key] = (self.loop.time() + after_s, callback, arg)
        if self._tick is None:
            self._tick = self.loop.call_later(self.resolution_s, self._check)

    def disarm(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    def _check(self) -> None:
        now = self.loop.time()
        fired = [(key, entry) for key, entry in self._due.items() if entry[0] <= now]
        for key, (_, callback, arg) in fired:
            del self._due[key]
            try:
                callback(arg)
            except Exception:
                log.exception("a timeout callback failed")
        self._tick = self.loop.call_later(self.resolution_s, self._check) if self._due else None


_LAST: Watchdog | None = None
_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watchdog] = weakref.WeakKeyDictionary()


def on(loop: asyncio.AbstractEventLoop) -> Watchdog:
    """``loop``'s Watchdog: one per loop, shared by every timeout on it (body reads, deadlines),
    so that one tick serves them all. One identity check per call while a single loop runs;
    loops that come and go (tests run each in its own) get theirs, and lose it when collected."""
    global _LAST
    watchdog = _LAST
    if watchdog is None or watchdog.loop is not loop:
        watchdog = _BY_LOOP.get(loop)
        if watchdog is None:
            watchdog = _BY_LOOP[loop] = Watchdog(loop)
        _LAST = watchdog
    return watchdog
