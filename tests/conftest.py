from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import contract, create_app
from cds_service.settings import Settings
from tests.databases import Backend, postgres_reachable
from tests.live import LiveServer

# Every clinical test runs "as of" this instant unless it says otherwise.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def open_settings(**overrides: Any) -> Settings:
    """Settings for tests about something other than authentication: calls need no JWT."""
    return Settings(allow_unauthenticated=True, **overrides)


@pytest.fixture(scope="session", autouse=True)
def _working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The embedded default audit database (./naltrexone-cds.sqlite3) goes to a scratch directory."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture
def settings() -> Settings:
    return open_settings()


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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    problem = postgres_reachable()
    if problem:
        pytest.fail(problem)
    server = Backend("postgresql", tmp_path_factory.mktemp("postgresql"))
    yield server
    server.drop_all()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """Each test using it runs twice: on SQLite files and on the real PostgreSQL server."""
    if request.param == "postgresql":
        server: Backend = request.getfixturevalue("postgres")
        return server
    return Backend("sqlite", tmp_path_factory.mktemp("sqlite"))


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
