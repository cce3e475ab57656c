"""Prometheus metrics: counted where things happen, summed over gunicorn workers, served apart from the
service port.

The in-process tests read the default registry of this test process (no multiprocess directory here);
the live tests scrape the master of a real ``naltrexone-cds serve`` with two workers.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from cds_service import create_app
from cds_service.demo_client import demo_token
from tests.support import NOW, open_settings
from tests.support.databases import Backend
from tests.support.fault_fhir import FaultServer
from tests.support.feedback import accepted
from tests.support.live import LiveServer, closed_port, free_port

FIXTURE = Path(__file__).parents[1] / "fhir_fixtures" / "order-sign-start" / "request.json"
SERVICE = "naltrexone-order-sign"


def request_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(FIXTURE.read_text())
    return body


def without_prefetch(fhir_server: str) -> dict[str, Any]:
    body = request_body()
    body.pop("prefetch", None)
    body["fhirServer"] = fhir_server
    return body


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.stop()


def test_cards_latency_and_deviations_are_counted_per_service(tmp_path: Path) -> None:
    app = create_app(open_settings(database_url=f"sqlite:///{tmp_path}/a.sqlite3"), clock=lambda: NOW)
    body = request_body()
    body["user"] = body["context"].pop("userId")  # an older client's placement: a named deviation
    latency = "naltrexone_cds_http_request_duration_seconds_count"
    before_requests = sample(latency, endpoint="hook", service=SERVICE, status="200")
    before_deviation = sample(
        "naltrexone_cds_client_deviations_total", service=SERVICE, deviation="user-at-top-level"
    )
    answer = app.test_client().post(f"/cds-services/{SERVICE}", json=body)
    assert answer.status_code == 200
    cards = answer.get_json()["cards"]
    assert cards
    assert sample(latency, endpoint="hook", service=SERVICE, status="200") == before_requests + 1
    assert (
        sample("naltrexone_cds_client_deviations_total", service=SERVICE, deviation="user-at-top-level")
        == before_deviation + 1
    )
    # each card counted once under its own rule and indicator (the card's extension names the rule)
    counted = {
        (s.labels["rule"], s.labels["indicator"]): s.value
        for family in REGISTRY.collect()
        if family.name == "naltrexone_cds_cards_issued"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["service"] == SERVICE
    }
    assert {indicator for _rule, indicator in counted} <= {"info", "warning", "critical"}
    assert sum(counted.values()) >= len(cards)


def test_an_invented_service_id_is_one_label_not_a_new_series_per_caller(tmp_path: Path) -> None:
    app = create_app(open_settings(database_url=f"sqlite:///{tmp_path}/a.sqlite3"), clock=lambda: NOW)
    name = "naltrexone_cds_http_request_duration_seconds_count"
    before = sample(name, endpoint="hook", service="unknown", status="404")
    for invented in ("x1", "x2", "'; drop"):
        assert app.test_client().post(f"/cds-services/{invented}", json={}).status_code == 404
    assert sample(name, endpoint="hook", service="unknown", status="404") == before + 3
    labels = {s.labels.get("service") for f in REGISTRY.collect() for s in f.samples}
    assert not labels & {"x1", "x2", "'; drop"}


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [("500", "http_error"), ("401", "denied"), ("garbage", "unreadable"), ("ok", "ok")],
)
def test_fhir_queries_are_counted_by_outcome(
    tmp_path: Path, faults: FaultServer, mode: str, outcome: str
) -> None:
    app = create_app(
        open_settings(database_url=f"sqlite:///{tmp_path}/a.sqlite3", fhir_budget_ms=5000), clock=lambda: NOW
    )
    before = sample("naltrexone_cds_fhir_queries_total", outcome=outcome)
    answer = app.test_client().post(f"/cds-services/{SERVICE}", json=without_prefetch(faults.base(mode)))
    assert answer.status_code == 200
    assert sample("naltrexone_cds_fhir_queries_total", outcome=outcome) - before >= 3


def test_unreachable_fhir_servers_and_refused_ones_are_told_apart(tmp_path: Path) -> None:
    allowed_only = "https://ehr.example.org/fhir"
    app = create_app(
        open_settings(database_url=f"sqlite:///{tmp_path}/a.sqlite3", fhir_server_allowlist=(allowed_only,)),
        clock=lambda: NOW,
    )
    refused = sample("naltrexone_cds_fhir_server_refusals_total", reason="not_on_allowlist")
    answer = app.test_client().post(
        f"/cds-services/{SERVICE}", json=without_prefetch("https://elsewhere.example.org/fhir")
    )
    assert answer.status_code == 200
    assert sample("naltrexone_cds_fhir_server_refusals_total", reason="not_on_allowlist") == refused + 1

    open_app = create_app(
        open_settings(database_url=f"sqlite:///{tmp_path}/b.sqlite3", fhir_budget_ms=2000), clock=lambda: NOW
    )
    unreachable = sample("naltrexone_cds_fhir_queries_total", outcome="unreachable")
    with closed_port() as port:
        answer = open_app.test_client().post(
            f"/cds-services/{SERVICE}", json=without_prefetch(f"http://127.0.0.1:{port}/fhir")
        )
    assert answer.status_code == 200
    assert sample("naltrexone_cds_fhir_queries_total", outcome="unreachable") - unreachable >= 3


def test_an_audit_write_that_fails_is_counted_with_the_cards_it_lost(postgres: Backend) -> None:
    app = create_app(
        open_settings(database_url=postgres.down_url(), audit_secret="s" * 32), clock=lambda: NOW
    )
    failures = sample("naltrexone_cds_audit_write_failures_total")
    lost = sample("naltrexone_cds_audit_unrecorded_cards_total")
    answer = app.test_client().post(f"/cds-services/{SERVICE}", json=request_body())
    assert answer.status_code == 200
    cards = answer.get_json()["cards"]
    assert sample("naltrexone_cds_audit_write_failures_total") == failures + 1
    assert sample("naltrexone_cds_audit_unrecorded_cards_total") == lost + len(cards)


# --- the real server: two workers, the master serving the sum ------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[LiveServer, int]]:
    metrics_port = free_port()
    server = LiveServer(
        tmp_path / "server.log",
        env={
            "NALTREXONE_CDS_METRICS_PORT": str(metrics_port),
            "NALTREXONE_CDS_METRICS_DIR": str(tmp_path / "metrics"),
            "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        },
        workers=2,
        authenticated=True,
    )
    yield server, metrics_port
    server.stop()


def call(server: LiveServer, body: dict[str, Any], token: bool = True) -> httpx.Response:
    url = f"{server.url}/cds-services/{SERVICE}"
    headers = {"Authorization": f"Bearer {demo_token(url)}"} if token else {}
    return httpx.post(url, json=body, headers=headers, timeout=30)


def test_the_master_serves_the_sum_over_its_workers_and_only_on_the_metrics_port(
    metered: tuple[LiveServer, int], tmp_path: Path
) -> None:
    server, metrics_port = metered
    calls = 24
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: call(server, request_body()), range(calls)))
    assert [a.status_code for a in answers] == [200] * calls
    refused = [call(server, request_body(), token=False) for _ in range(3)]
    assert {r.status_code for r in refused} == {401}
    card = answers[0].json()["cards"][0]
    feedback_url = f"{server.url}/cds-services/{SERVICE}/feedback"
    recorded = httpx.post(
        feedback_url,
        json={"feedback": [accepted(card)]},
        headers={"Authorization": f"Bearer {demo_token(feedback_url)}"},
        timeout=30,
    )
    assert recorded.status_code == 200

    served_by = {path.name for path in (tmp_path / "metrics").iterdir()}
    samples = scrape(metrics_port)
    latency = "naltrexone_cds_http_request_duration_seconds_count"
    assert total(samples, latency, endpoint="hook", service=SERVICE, status="200") == calls
    assert total(samples, latency, endpoint="hook", service=SERVICE, status="401") == 3
    assert total(samples, "naltrexone_cds_auth_refusals_total", reason="no_bearer_token") == 3
    issued = sum(len(a.json()["cards"]) for a in answers)
    assert total(samples, "naltrexone_cds_cards_issued_total", service=SERVICE) == issued
    assert total(samples, "naltrexone_cds_feedback_items_total", service=SERVICE, outcome="accepted") == 1
    rules = [ls for (n, ls), v in samples.items() if n == "naltrexone_cds_rules_loaded" and v == 1]
    ready = httpx.get(f"{server.url}/health/ready", timeout=10).json()
    assert rules == [frozenset({("version", ready["rules"]), ("content_hash", ready["content_hash"])})]
    # both workers wrote counts (one file per process and kind), and the EHR's port has no /metrics
    assert len({name.rsplit("_", 1)[-1] for name in served_by if name.startswith("histogram_")}) == 2
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404


def test_a_killed_worker_keeps_its_counts_in_the_sum(metered: tuple[LiveServer, int]) -> None:
    server, metrics_port = metered
    for _ in range(10):
        assert call(server, request_body()).status_code == 200
    workers = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(workers) == 2
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)
    answer = None
    for _ in range(100):  # gunicorn replaces them
        try:
            answer = call(server, request_body())
            break
        except httpx.TransportError:
            continue
    assert answer is not None and answer.status_code == 200
    samples = scrape(metrics_port)
    latency = "naltrexone_cds_http_request_duration_seconds_count"
    assert total(samples, latency, endpoint="hook", service=SERVICE, status="200") == 11


def test_a_busy_metrics_port_costs_the_metrics_not_the_service(tmp_path: Path) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        server = LiveServer(
            tmp_path / "server.log",
            env={
                "NALTREXONE_CDS_METRICS_PORT": str(taken),
                "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
            },
        )
        try:
            answer = httpx.post(
                f"{server.url}/cds-services/{SERVICE}", json=copy.deepcopy(request_body()), timeout=30
            )
            assert answer.status_code == 200
            assert "metrics are not served" in server.logs()
        finally:
            server.stop()


def test_a_failure_to_count_never_costs_an_answer(caplog: pytest.LogCaptureFixture) -> None:
    from cds_service import metrics

    metrics.count_cards(SERVICE, [("only-a-rule",)])  # type: ignore[list-item]  # a malformed card pair
    metrics.count_cards(SERVICE, [("only-a-rule",)])  # type: ignore[list-item]
    said = [r for r in caplog.records if r.getMessage() == "metrics could not be recorded"]
    assert len(said) <= 1  # said once per process, not once per request


def test_a_metrics_directory_holding_other_files_is_refused_not_emptied(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "naltrexone-cds.sqlite3").write_text("audit trail")
    (directory / "counter_123.db").write_bytes(b"\0")
    command = [str(Path(sys.executable).with_name("naltrexone-cds")), "serve"]
    command += ["--port", str(free_port()), "--workers", "1"]
    env = {
        **os.environ,
        "NALTREXONE_CDS_ALLOW_UNAUTHENTICATED": "true",
        "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        "NALTREXONE_CDS_METRICS_PORT": str(free_port()),
        "NALTREXONE_CDS_METRICS_DIR": str(directory),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "holds other files" in result.stderr + result.stdout
    assert (directory / "naltrexone-cds.sqlite3").read_text() == "audit trail"


def test_an_earlier_runs_counts_are_removed_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_99999.db").write_bytes(b"stale")
    metrics_port = free_port()
    server = LiveServer(
        tmp_path / "server.log",
        env={
            "NALTREXONE_CDS_METRICS_PORT": str(metrics_port),
            "NALTREXONE_CDS_METRICS_DIR": str(directory),
            "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        },
        workers=1,
    )
    try:
        assert not (directory / "counter_99999.db").exists()
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 200
    finally:
        server.stop()
