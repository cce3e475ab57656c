"""Structured (JSON lines) logging.

Log records carry explicit fields (``extra={"fields": {...}}``), never request bodies: bodies hold
patient data and tokens. What may be logged is decided where the fields are built.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Loggers of libraries that would write request URLs (which carry patient ids) at INFO.
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3")


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_fields(**fields: Any) -> dict[str, dict[str, Any]]:
    return {FIELDS: fields}
