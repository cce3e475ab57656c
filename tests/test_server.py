"""End to end: ``naltrexone-cds serve`` (gunicorn, several workers) over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fhir_fixtures.requests import hook_request, sandbox_hook_bodies, service_path
from tests.support import assert_no_empty_values, assert_operation_outcome, assert_valid
from tests.support.live import LiveServer

pytestmark = pytest.mark.live


def test_discovery_and_a_sandbox_order_select_over_http(live_server: LiveServer) -> None:
    with live_server.client() as http:
        discovery = http.get("/cds-services", headers={"Origin": "http://127.0.0.1:8080"})
        assert discovery.status_code == 200
        assert discovery.headers["Access-Control-Allow-Origin"] == "*"
        assert_valid("DiscoveryResponse", discovery.json())
        for body in sandbox_hook_bodies("order-select"):
            response = http.post(service_path("order-select"), json=body)
            assert response.status_code == 200
            assert_valid("CdsResponse", response.json())
            assert_no_empty_values(response.json())


def test_bad_input_over_http_never_breaks_the_server(live_server: LiveServer) -> None:
    with live_server.client() as http:
        path = service_path("order-sign")
        assert_operation_outcome(
            http.post(path, content=b"{nope", headers={"Content-Type": "application/json"}), 400
        )
        assert_operation_outcome(http.post(path, content=b"{}", headers={"Content-Type": "text/plain"}), 415)
        assert_operation_outcome(http.get(path), 405)
        assert_operation_outcome(http.post("/cds-services/other", json={}), 404)
        too_big = b'{"pad": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        response = http.post(path, content=too_big, headers={"Content-Type": "application/json"})
        assert_operation_outcome(response, 413, "larger than the limit")
        ok = http.post(path, json=hook_request("order-sign"))
        assert ok.status_code == 200 and ok.json() == {"cards": []}


def test_preflight_over_http(live_server: LiveServer) -> None:
    response = httpx.options(
        live_server.url + service_path("order-select"),
        headers={
            "Origin": "http://127.0.0.1:8080",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


def test_start_up_logs_say_what_is_configured(live_server: LiveServer) -> None:
    entries = [json.loads(line) for line in live_server.logs().splitlines() if line.startswith("{")]
    configured = next(e for e in entries if e["message"] == "naltrexone-cds configured")
    assert configured["settings"]["port"] == live_server.port
    assert configured["settings"]["workers"] == 2
    assert configured["services"] == [
        "naltrexone-order-select",
        "naltrexone-order-sign",
        "naltrexone-medication-prescribe",
    ]
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path / "log", env={"NALTREXONE_CDS_CORS_ORIGINS": "https://ehr.example.org"}, workers=1
    )
    try:
        refused = httpx.get(server.url + "/cds-services", headers={"Origin": "http://127.0.0.1:8080"})
        allowed = httpx.get(server.url + "/cds-services", headers={"Origin": "https://ehr.example.org"})
    finally:
        server.stop()
    assert "access-control-allow-origin" not in refused.headers
    assert allowed.headers["access-control-allow-origin"] == "https://ehr.example.org"


def test_invalid_settings_stop_the_command_with_a_clear_message() -> None:
    command = Path(sys.executable).with_name("naltrexone-cds")
    result = subprocess.run(
        [str(command), "serve", "--port", "70000"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "port must be 1-65535" in result.stderr
