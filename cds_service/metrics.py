"""Prometheus metrics: what an operator watches — latency, cards by rule, FHIR fetch outcomes, audit gaps,
refused calls and client deviations.

Under gunicorn every worker writes its counts to files in one directory and the master serves their sum on
its own address (``server.py``), never on the port the EHR calls.  prometheus-client decides at import
whether it writes such files, so it is imported only after ``use_directory`` (called by ``serve`` before
the app loads); anything that imports it earlier gets per-process values, which ``use_directory`` refuses.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ParamSpec

from cds_service.logs import log_fields

P = ParamSpec("P")
log = logging.getLogger("naltrexone_cds.metrics")
_failed: list[str] = []
_COUNT_FILE = re.compile(r"(counter|gauge|histogram|summary)_[a-z_]*?\d+\.db")
"""The files prometheus-client writes (``counter_1234.db``, ``gauge_max_1234.db``...)."""

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Answers are milliseconds; the budget for fetching is 300 ms; anything past a few seconds is a stall.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsError(RuntimeError):
    """Metrics cannot be aggregated across workers as configured."""


@dataclass(frozen=True)
class _Instruments:
    requests: Any
    cards: Any
    fhir_queries: Any
    fhir_refusals: Any
    audit_failures: Any
    audit_unrecorded_cards: Any
    auth_refusals: Any
    deviations: Any
    feedback: Any
    rules: Any


@cache
def _instruments() -> _Instruments:
    from prometheus_client import Counter, Gauge, Histogram

    return _Instruments(
        requests=Histogram(
            "naltrexone_cds_http_request_duration_seconds",
            "Time from request received to answer ready, by endpoint, CDS service and HTTP status.",
            ["endpoint", "service", "status"],
            buckets=_LATENCY_BUCKETS,
        ),
        cards=Counter(
            "naltrexone_cds_cards_issued_total",
            "Cards returned to the EHR, by service, rule and indicator.",
            ["service", "rule", "indicator"],
        ),
        fhir_queries=Counter(
            "naltrexone_cds_fhir_queries_total",
            "Queries to the EHR's FHIR server for data prefetch lacked, by outcome.",
            ["outcome"],
        ),
        fhir_refusals=Counter(
            "naltrexone_cds_fhir_server_refusals_total",
            "Requests whose fhirServer was not queried (off the allowlist or not the caller's), by reason.",
            ["reason"],
        ),
        audit_failures=Counter(
            "naltrexone_cds_audit_write_failures_total",
            "Answers whose cards could not be written to the audit database (the cards were still returned).",
        ),
        audit_unrecorded_cards=Counter(
            "naltrexone_cds_audit_unrecorded_cards_total",
            "Cards returned but missing from the audit trail because the write failed.",
        ),
        auth_refusals=Counter(
            "naltrexone_cds_auth_refusals_total",
            "Calls refused 401, by the reason the token failed.",
            ["reason"],
        ),
        deviations=Counter(
            "naltrexone_cds_client_deviations_total",
            "Requests answered although they deviate from CDS Hooks 2.0.1, by service and deviation.",
            ["service", "deviation"],
        ),
        feedback=Counter(
            "naltrexone_cds_feedback_items_total",
            "Feedback items stored, by service and outcome (accepted, overridden).",
            ["service", "outcome"],
        ),
        rules=Gauge(
            "naltrexone_cds_rules_loaded",
            "1 for the rule book this process advises with (version and content hash as labels).",
            ["version", "content_hash"],
            multiprocess_mode="max",
        ),
    )


def use_directory(directory: Path) -> None:
    """Makes every process of this server write its metrics into ``directory``. An earlier run's count
    files are removed (they must not be added to this run's); anything else there is refused, never
    deleted: a mistyped setting must not empty a directory of other data."""
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROCESS_ENV) != str(directory):
        raise MetricsError("prometheus_client was imported before the metrics directory was chosen")
    if directory.exists():
        others = [child.name for child in directory.iterdir() if not _COUNT_FILE.fullmatch(child.name)]
        if others:
            raise MetricsError(
                f"the metrics directory {directory} holds other files ({', '.join(sorted(others)[:3])}): "
                "give it a directory of its own"
            )
        for child in directory.iterdir():
            child.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)


def default_directory() -> Path:
    """A new directory in memory when the system has one (/dev/shm): the counts are memory-mapped files,
    and a full disk would kill a worker writing one (SIGBUS) instead of failing a write."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="naltrexone-cds-metrics-", dir=parent))


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """Counting must never cost an answer: a failure is logged once per process and ignored."""

    @functools.wraps(record)
    def safely(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception as error:
            if not _failed:
                _failed.append(type(error).__name__)
                log.error("metrics could not be recorded", extra=log_fields(error=type(error).__name__))

    return safely


def worker_exited(pid: int) -> None:
    """Drops the live-process gauges of a worker that is gone (its counters stay in the sum)."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def start_exporter(host: str, port: int) -> Any:
    """Serves the sum over every worker at http://host:port/metrics from a thread of this process.
    Returns the HTTP server (``.socket`` is its listening socket)."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


@_never_raises
def observe_request(endpoint: str, service: str, status: int, seconds: float) -> None:
    _instruments().requests.labels(endpoint, service, str(status)).observe(seconds)


@_never_raises
def count_cards(service: str, cards: Iterable[tuple[str, str]]) -> None:
    """``cards``: (rule id, indicator) of each card returned."""
    counter = _instruments().cards
    for rule, indicator in cards:
        counter.labels(service, rule, indicator).inc()


@_never_raises
def count_fhir_query(outcome: str) -> None:
    _instruments().fhir_queries.labels(outcome).inc()


@_never_raises
def count_fhir_refusal(reason: str) -> None:
    _instruments().fhir_refusals.labels(reason).inc()


@_never_raises
def count_audit_failure(cards: int) -> None:
    instruments = _instruments()
    instruments.audit_failures.inc()
    instruments.audit_unrecorded_cards.inc(cards)


@_never_raises
def count_auth_refusal(reason: str) -> None:
    _instruments().auth_refusals.labels(reason).inc()


@_never_raises
def count_deviations(service: str, deviations: Iterable[str]) -> None:
    counter = _instruments().deviations
    for deviation in deviations:
        counter.labels(service, deviation).inc()


@_never_raises
def count_feedback(service: str, outcome: str) -> None:
    _instruments().feedback.labels(service, outcome).inc()


@_never_raises
def announce_rules(version: str, content_hash: str) -> None:
    _instruments().rules.labels(version, content_hash).set(1)
