from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import contract, create_app
from cds_service.settings import Settings
from tests.live import LiveServer

# Every clinical test runs "as of" this instant unless it says otherwise.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings, clock=lambda: NOW)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live") / "server.log")
    yield server
    server.stop()


def assert_valid(schema_name: str, instance: Any) -> None:
    problems = [f"{contract.json_path(e)}: {e.message}" for e in contract.errors(schema_name, instance)]
    assert not problems, problems


def assert_operation_outcome(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """An error response: the status, JSON content, an OperationOutcome naming what is wrong."""
    assert response.status_code == status, response.text if hasattr(response, "text") else response.data
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json() if callable(response.json) else response.json
    assert_valid("OperationOutcome", body)
    message = body["issue"][0]["diagnostics"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return body
