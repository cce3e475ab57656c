"""Every fixture scenario, sent to the running service over HTTP, answers as its expected.json says."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.check.scenarios import action_matches
from cds_service.evaluate import evaluate
from fhir_fixtures import FIXTURES, load, scenario_names, shifted, with_fhir_server
from tests.support import assert_no_empty_values, assert_valid, open_settings
from tests.support.live import LiveServer, closed_port

SCENARIOS = scenario_names()


def check(response: dict[str, Any], expected: dict[str, Any], reference: date) -> None:
    cards = {card["source"]["topic"]["code"]: card for card in response["cards"]}
    for rule, indicator in expected["cards"].items():
        assert rule in cards, f"{rule} missing; got {sorted(cards)}"
        assert cards[rule]["indicator"] == indicator, f"{rule}: {cards[rule]['indicator']} != {indicator}"
    for rule in expected["absent"]:
        assert rule not in cards, f"{rule} must not appear: {cards[rule]['summary']}"
    if expected["only"]:
        assert set(cards) == set(expected["cards"]), (
            f"unexpected cards: {sorted(set(cards) - set(expected['cards']))}"
        )
    for wanted in expected["suggestions"]:
        actions = [a for s in cards[wanted["rule"]].get("suggestions", []) for a in s["actions"]]
        assert any(action_matches(action, wanted, reference) for action in actions), (
            f"{wanted['rule']}: no action like {wanted} among {json.dumps(actions)[:800]}"
        )


def test_there_are_enough_scenarios_covering_every_rule_both_ways() -> None:
    assert len(SCENARIOS) >= 40
    from tests.support.rule_contract import CONTRACT

    fired: set[str] = set()
    held_back: set[str] = set()
    for name in SCENARIOS:
        _, expected = load(name)
        fired |= set(expected["cards"])
        held_back |= set(expected["absent"])
        if expected["only"]:  # nothing else may appear: every other rule is held back
            held_back |= set(CONTRACT) - set(expected["cards"])
    assert set(CONTRACT) <= fired, f"never fires: {set(CONTRACT) - fired}"
    assert set(CONTRACT) - {"opioid-history-unverified"} <= held_back, (
        f"no near miss: {set(CONTRACT) - held_back}"
    )


def test_fixture_files_are_current(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fixture_build", FIXTURES / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.write(tmp_path):
        committed = FIXTURES / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run python fhir_fixtures/build.py"
        assert path.read_text() == committed.read_text(), (
            f"{committed} is stale: run python fhir_fixtures/build.py"
        )


@pytest.mark.parametrize("name", SCENARIOS)
def test_fixture_resources_are_valid_fhir_unless_a_quirk_is_declared(name: str) -> None:
    request, expected = load(name)
    if "quirk" in expected:
        return
    resources = [request["context"]["draftOrders"]] + [v for v in request.get("prefetch", {}).values() if v]
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.live
@pytest.mark.parametrize("name", SCENARIOS)
def test_fixture_over_http(name: str, live_server: LiveServer) -> None:
    request, expected = load(name)
    reference = date.fromisoformat(expected["reference_date"])
    today = datetime.now(UTC).date()
    with closed_port() as port:
        body = with_fhir_server(shifted(request, (today - reference).days), f"http://127.0.0.1:{port}")
        with live_server.client() as http:
            response = http.post(f"/cds-services/naltrexone-{expected['hook']}", json=body)
    assert response.status_code == expected["status"], response.text
    assert_valid("CdsResponse", response.json())
    assert_no_empty_values(response.json())
    check(response.json(), expected, today)


@pytest.mark.parametrize("name", SCENARIOS)
def test_fixture_with_the_evaluate_command_as_of_its_reference_date(name: str) -> None:
    request, expected = load(name)
    reference = date.fromisoformat(expected["reference_date"])
    with closed_port() as port:
        raw = json.dumps(with_fhir_server(request, f"http://127.0.0.1:{port}")).encode()
        check(evaluate(raw, settings=open_settings(), today=reference), expected, reference)
