"""schemathesis drives the running server (gunicorn, real HTTP) from ``openapi.yaml``.

It generates valid and invalid requests for every documented operation and checks that none yields
a server error and every response matches the document: status codes, content types, headers and
body schemas.

One check is left out: ``positive_data_acceptance`` expects every schema-valid body to be accepted, but
some valid-looking requests must be refused for reasons a JSON Schema cannot express (a selection that
names no draft order, a draft for another patient: 400; required prefetch missing: 412). Those
refusals are documented responses and are tested one by one in ``test_errors.py`` and
``test_gather.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from cds_service.demo_client import demo_token
from cds_service.resources import openapi_path
from tests.support.live import LiveServer

schema = schemathesis.openapi.from_path(openapi_path())


@pytest.fixture(scope="module")
def authenticated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service as shipped: calls need a JWT (the bundled demo client signs them on loopback)."""
    server = LiveServer(tmp_path_factory.mktemp("openapi") / "server.log", authenticated=True)
    yield server
    server.stop()


@pytest.mark.live
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_running_service_conforms_to_openapi(case: Any, authenticated_server: LiveServer) -> None:
    url = authenticated_server.url + case.formatted_path
    token = demo_token(url)  # aud = the exact URL called, a fresh jti per call
    case.call_and_validate(
        base_url=authenticated_server.url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[positive_data_acceptance],
    )
