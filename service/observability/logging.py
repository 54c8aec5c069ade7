"""Structured JSON logs, one object a line; access logs carry no tensor contents.

Records are handed to a queue; a listener thread formats and writes them, so that the event
loop never waits on formatting or on stderr.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}
_listener: logging.handlers.QueueListener | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str) -> None:
    """Root logging: JSON lines on stderr, written by a listener thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter())
    records: queue.SimpleQueue = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, stream, respect_handler_level=False)
    _listener.start()
    atexit.register(_listener.stop)  # flushes what is queued at exit
    root = logging.getLogger()
    root.handlers[:] = [_PlainQueueHandler(records)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # replaced by service.access


class _PlainQueueHandler(logging.handlers.QueueHandler):
    """Queues the record itself (the listener formats it): no formatting on the caller's thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record
