"""Logging for openremix processes: one JSON object a line on stderr, with the request id."""

from __future__ import annotations

import json
import logging
import sys


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = None
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line, with the request id when the line concerns a request."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger("openremix")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
