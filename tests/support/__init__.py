"""What the tests share: the fixed "now", open settings, and the assertions about CDS Hooks answers.

Peers the tests start (the real server, a real FHIR server, a faulty one, databases) are the other
modules of this package; FHIR resources and hook requests are built by ``fhir_fixtures``.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cds_service import contract
from cds_service.api.encode import response_json
from cds_service.clock import Calendar
from cds_service.pipeline import Pipeline
from cds_service.resources import default_rules_dir
from cds_service.settings import Settings

# Every clinical test runs "as of" this instant unless it says otherwise.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


RULES = default_rules_dir()
RULES_URL = "http://127.0.0.1:8000/rules"
"""Where the stage tests' cards link to (the HTTP layer passes the service's own URL)."""


def copy_rules(tmp_path: Path) -> Path:
    """A copy of the rules directory, for a test that edits it."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def open_settings(**overrides: Any) -> Settings:
    """Settings for tests about something other than authentication: calls need no JWT."""
    return Settings(allow_unauthenticated=True, **overrides)


def pipeline_for(**overrides: Any) -> Pipeline:
    """The stages without the HTTP layer, on open settings (with ``overrides``) and the fixed clock."""
    settings = open_settings(**overrides)
    return Pipeline.from_settings(settings, calendar=Calendar(ZoneInfo(settings.timezone), lambda: NOW))


def answer(pipeline: Pipeline, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The cards for ``body`` (sent to its hook's service) as the HTTP layer would encode them."""
    response = response_json(pipeline.run(pipeline.service_for_hook(body["hook"]), body, rules_url=RULES_URL))
    assert_valid("CdsResponse", response)
    assert_no_empty_values(response)
    cards: list[dict[str, Any]] = response["cards"]
    return cards


def by_rule(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cards by the rule that made them (``source.topic.code``)."""
    return {card["source"]["topic"]["code"]: card for card in cards}


def assert_valid(schema_name: str, instance: Any) -> None:
    problems = [f"{contract.json_path(e)}: {e.message}" for e in contract.errors(schema_name, instance)]
    assert not problems, problems


def body_of(response: Any) -> dict[str, Any]:
    """The JSON object a response carries (a Flask test response or an httpx one)."""
    body = response.json() if callable(response.json) else response.json
    assert isinstance(body, dict), body
    return body


def assert_operation_outcome(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """An error response: the status, JSON content, an OperationOutcome naming what is wrong."""
    assert response.status_code == status, response.text if hasattr(response, "text") else response.data
    assert response.headers["Content-Type"].startswith("application/json")
    body = body_of(response)
    assert_valid("OperationOutcome", body)
    message = body["issue"][0]["diagnostics"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return body


def assert_no_empty_values(value: Any, path: str = "$") -> None:
    """CDS Hooks: no null, "", [] or {} anywhere (the top-level ``cards`` array may be empty)."""
    if isinstance(value, dict):
        assert value or path == "$", f"empty object at {path}"
        for key, item in value.items():
            if path == "$" and key == "cards" and item == []:
                continue
            assert_no_empty_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        assert value, f"empty array at {path}"
        for index, item in enumerate(value):
            assert_no_empty_values(item, f"{path}[{index}]")
    else:
        assert value is not None, f"null at {path}"
        assert value != "", f"empty string at {path}"
