"""The sandbox is a browser app: without CORS on every response it sends nothing."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from fhir_fixtures.requests import hook_request, service_path
from tests.support import open_settings

SANDBOX = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/cds-services"), ("POST", service_path("order-select")), ("POST", service_path("order-sign"))],
)
def test_preflight_allows_the_sandbox(client: FlaskClient, method: str, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/cds-services", None, 200),
        ("POST", service_path("order-select"), hook_request(), 200),
        ("POST", service_path("order-select"), {"hook": "order-select"}, 400),
        ("POST", "/cds-services/unknown", {}, 404),
        ("GET", service_path("order-select"), None, 405),
    ],
)
def test_every_response_carries_cors_headers(
    client: FlaskClient, method: str, path: str, body: object, status: int
) -> None:
    response = client.open(path, method=method, json=body, headers={"Origin": SANDBOX})
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_configured_origins_are_the_only_ones_allowed() -> None:
    app = create_app(open_settings(cors_origins=("https://ehr.example.org",)))
    client = app.test_client()
    allowed = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Origin" in allowed.headers["Vary"]
    refused = client.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_credentials_are_never_allowed_with_a_wildcard(client: FlaskClient) -> None:
    response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert "Access-Control-Allow-Credentials" not in response.headers
