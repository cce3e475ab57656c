"""The scenario checks: each clinical scenario of ``fhir_fixtures/`` (bundled with the package), dated
forward to today, sent to its service; its cards compared with ``expected.json`` and held to the CDS Hooks
card contract of ``openapi.yaml``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cds_service import contract
from cds_service.check.target import (
    Check,
    Outcome,
    Target,
    diagnostics,
    failed,
    joined,
    json_body,
    passed,
    refused_token,
    schema_problem,
    shown_type,
)
from cds_service.fhir import shifted
from cds_service.resources import scenarios_dir


@dataclass(frozen=True)
class Scenario:
    name: str
    request: dict[str, Any]
    expected: dict[str, Any]

    def as_of(self, today: date) -> dict[str, Any]:
        """The request with every date moved to keep its distance from today, and a new hookInstance."""
        reference = date.fromisoformat(self.expected["reference_date"])
        body: dict[str, Any] = shifted(self.request, (today - reference).days)
        body["hookInstance"] = str(uuid.uuid4())
        return body


def load_scenarios() -> tuple[Scenario, ...]:
    """The clinical scenarios of ``fhir_fixtures/`` (bundled with the package), by name."""
    return _scenarios_in(scenarios_dir())


@cache
def _scenarios_in(folder: Path) -> tuple[Scenario, ...]:
    found = []
    for expected_file in sorted(folder.glob("*/expected.json")):
        request_file = expected_file.with_name("request.json")
        found.append(
            Scenario(
                expected_file.parent.name,
                json.loads(request_file.read_text(encoding="utf-8")),
                json.loads(expected_file.read_text(encoding="utf-8")),
            )
        )
    return tuple(found)


def probe_request(target: Target) -> dict[str, Any]:
    """A valid order-select request (a new naltrexone start), dated today, for the protocol checks."""
    scenarios = {s.name: s for s in load_scenarios()}
    scenario = scenarios.get("test-dose") or next(
        s for s in scenarios.values() if s.expected["hook"] == "order-select"
    )
    return scenario.as_of(target.today)


def scenario_check(scenario: Scenario) -> Check:
    def run(target: Target) -> Outcome:
        expected = scenario.expected
        path = "/cds-services/" + target.service_for(expected["hook"])
        response = target.call("POST", path, json=scenario.as_of(target.today))
        refused = refused_token(response)
        if refused:
            return refused
        body = json_body(response)
        if response.status_code != expected["status"]:
            said = diagnostics(body) or shown_type(response)
            return failed(f"HTTP {response.status_code}, expected {expected['status']}: {said}")
        if not isinstance(body, dict):
            return failed(f"POST {path}: the answer is not a JSON object ({shown_type(response)})")
        problems = [f"contract: {p}" for p in card_contract_problems(body)]
        if not problems:  # cards that break the contract cannot be compared reliably
            problems = [f"expected: {p}" for p in expectation_problems(body, expected, target.today)]
        if problems:
            return failed(joined(problems))
        cards = body["cards"]
        if not cards:
            return passed("no cards, as expected")
        named = ", ".join(f"{rule_of(c)} ({c['indicator']})" for c in cards)
        return passed(f"{len(cards)} card(s) as expected: {named}")

    return Check(f"scenario:{scenario.name}", "scenarios", run)


def rule_of(card: Any) -> str:
    try:
        return str(card["source"]["topic"]["code"])
    except (KeyError, TypeError):
        return "(no rule id)"


def card_contract_problems(response: Any) -> list[str]:
    """How a CDS Hooks response breaks the card contract of ``openapi.yaml`` (``CdsResponse``: summary
    under 140 characters, indicator, source.label and topic, uuids, suggestions' actions...) and the
    CDS Hooks rule that no value is null or empty; ``[]`` for a conforming one."""

    def card_name(index: int) -> str:
        try:
            return f"card {index + 1} ({rule_of(response['cards'][index])})"
        except (KeyError, IndexError, TypeError):
            return f"card {index + 1}"

    problems = [
        schema_problem(error, "cards", card_name) for error in contract.errors("CdsResponse", response)
    ]
    problems += [
        f"{where} is empty (CDS Hooks forbids null and empty values)" for where in _empty_values(response)
    ]
    return problems


def _empty_values(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        if not value and path:
            yield path
        for key, item in value.items():
            if path == "" and key == "cards" and item == []:
                continue
            yield from _empty_values(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        if not value:
            yield path
        for index, item in enumerate(value):
            yield from _empty_values(item, f"{path}[{index}]")
    elif value is None or value == "":
        yield path


def expectation_problems(response: dict[str, Any], expected: Mapping[str, Any], today: date) -> list[str]:
    """How the cards differ from a scenario's ``expected.json`` (rule ids and indicators that must appear,
    rule ids that must not, ``only``, and the suggested actions), dated as of ``today``."""
    cards = {rule_of(card): card for card in response["cards"]}
    problems = []
    for rule, indicator in expected["cards"].items():
        if rule not in cards:
            problems.append(f"no {rule} card (got {', '.join(sorted(cards)) or 'none'})")
        elif cards[rule]["indicator"] != indicator:
            problems.append(f"{rule} is {cards[rule]['indicator']}, expected {indicator}")
    problems += [f"{rule} must not appear" for rule in expected.get("absent", []) if rule in cards]
    if expected.get("only"):
        extra = sorted(set(cards) - set(expected["cards"]))
        if extra:
            problems.append(f"unexpected card(s): {', '.join(extra)}")
    for wanted in expected.get("suggestions", []):
        card = cards.get(wanted["rule"])
        if card is None:
            continue  # already said
        actions = [a for s in card.get("suggestions", []) for a in s.get("actions", [])]
        if not any(action_matches(action, wanted, today) for action in actions):
            target = wanted.get("resourceType") or wanted.get("resourceId") or ""
            problems.append(
                f"{wanted['rule']}: no {wanted['type']} {target} suggestion as expected".replace("  ", " ")
            )
    return problems


def action_matches(action: Mapping[str, Any], wanted: Mapping[str, Any], today: date) -> bool:
    """Whether a suggestion's action is the one a scenario's expectation describes."""
    if action.get("type") != wanted["type"]:
        return False
    if "resourceId" in wanted and action.get("resourceId") != wanted["resourceId"]:
        return False
    resource = action.get("resource", {})
    if "resourceType" in wanted and resource.get("resourceType") != wanted["resourceType"]:
        return False
    return all(
        at_path(resource, path) == resolved(value, today) for path, value in wanted.get("expect", {}).items()
    )


def resolved(expected: Any, today: date) -> Any:
    """``@+N`` in an expectation is the reference date (here: today) plus N days."""
    if isinstance(expected, str) and expected.startswith("@+"):
        return (today + timedelta(days=int(expected[2:]))).isoformat()
    return expected


def at_path(resource: Any, path: str) -> Any:
    """The value at a dotted path (``dosageInstruction.0.timing``), ``None`` where there is none."""
    for step in path.split("."):
        if isinstance(resource, list):
            index = int(step)
            resource = resource[index] if index < len(resource) else None
        elif isinstance(resource, dict):
            resource = resource.get(step)
        else:
            return None
    return resource
