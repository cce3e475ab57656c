"""Log lines are JSON with explicit fields; libraries that would log patient ids in URLs are quietened."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from cds_service.logs import QUIET_LOGGERS, JsonFormatter, configure, log_fields


def formatted(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_record_is_one_json_line_with_its_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "naltrexone_cds.x", "levelname": "WARNING", "msg": "gap %s", "args": ("x",)}
    )
    record.__dict__.update(log_fields(cards=3, error="StoreUnavailable"))
    entry = formatted(record)
    assert (
        entry["message"] == "gap x" and entry["level"] == "WARNING" and entry["logger"] == "naltrexone_cds.x"
    )
    assert entry["cards"] == 3 and entry["error"] == "StoreUnavailable"
    assert str(entry["time"]).endswith("+00:00")


def test_an_exception_is_kept_on_the_same_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    entry = formatted(record)
    assert "ValueError" in str(entry["exception"])


def test_values_json_cannot_encode_are_written_as_text() -> None:
    record = logging.makeLogRecord({"msg": "m"})
    record.__dict__.update(log_fields(path=pytest))
    assert "module 'pytest'" in str(formatted(record)["path"])


def test_configure_sets_the_level_and_quietens_url_logging_libraries() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("debug")
        assert root.level == logging.DEBUG
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert all(logging.getLogger(name).level == logging.WARNING for name in QUIET_LOGGERS)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
