"""Fixtures: an app per test, the real server, and the audit databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from cds_service import create_app
from cds_service.pipeline import Pipeline
from cds_service.settings import Settings
from tests.support import NOW, open_settings, pipeline_for
from tests.support.databases import Backend, postgres_reachable
from tests.support.live import LiveServer

# Property-based tests: a bounded number of examples in the suite, a larger profile by hand
# (HYPOTHESIS_PROFILE=deep; see docs/reliability.md).
for _name, _examples in (("ci", 120), ("deep", 5000)):
    hypothesis_settings.register_profile(
        _name,
        max_examples=_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """The stages without the HTTP layer, on the open settings and the tests' fixed clock."""
    return pipeline_for()


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
