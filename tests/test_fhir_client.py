"""Fetching what prefetch lacks from the EHR's FHIR server, over real HTTP.

The EHR is played by a real FHIR server (Medplum's router, tests/support/fhir_server) and by a
deliberately bad one (tests/support/fault_fhir.py): slow, 500, 401/403, garbage. Nothing here is mocked.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.pipeline import Pipeline
from cds_service.resources import default_rules_dir
from fhir_fixtures import FIXTURES
from fhir_fixtures import as_of_today as fixture_request
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import PREFETCH_KEYS, service_path
from tests.support import answer, by_rule, pipeline_for
from tests.support.fault_fhir import FaultServer
from tests.support.fhir_peer import FhirTestServer
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

SAME_CARDS_SCENARIOS = [
    "opioid-active-prescription",
    "opioid-recent-dispense",
    "uds-positive",
    "naloxone-challenge-failed",
    "lft-elevated-hys-law",
    "hypersensitivity",
    "pregnancy",
    "test-dose",
    "opioid-blockade",
    "ldn-too-fast",
    "history-medication-by-display",
    "hl7-example-pat1",
]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.stop()


def pipeline_with(**settings: Any) -> Pipeline:
    """The stages with the real fetcher; a generous budget unless a test is about the budget."""
    return pipeline_for(**({"fhir_budget_ms": 5000} | settings))


def cards_of(pipeline: Pipeline, body: dict[str, Any]) -> dict[str, str]:
    return {rule_id: card["indicator"] for rule_id, card in by_rule(answer(pipeline, body)).items()}


def prefetched_resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    resources = []
    for value in body["prefetch"].values():
        if not value:
            continue
        if value["resourceType"] == "Bundle":
            resources += [entry["resource"] for entry in value.get("entry", [])]
        else:
            resources.append(value)
    return resources


def without_prefetch(body: dict[str, Any], server: str, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    stripped = copy.deepcopy(body)
    stripped["prefetch"] = {k: v for k, v in body["prefetch"].items() if k in keep}
    stripped["fhirServer"] = server
    return stripped


@pytest.mark.parametrize("name", SAME_CARDS_SCENARIOS)
def test_no_prefetch_gives_the_same_cards_as_full_prefetch(name: str, fhir: FhirTestServer) -> None:
    body = json.loads((FIXTURES / name / "request.json").read_text())
    pipeline = pipeline_with()
    with_prefetch = cards_of(pipeline, body)
    fhir.reset()
    fhir.load(prefetched_resources(body))
    fetched = cards_of(pipeline, without_prefetch(body, fhir.url))
    assert fetched == with_prefetch
    assert "opioid-history-unverified" not in fetched or "opioid-history-unverified" in with_prefetch


def test_partial_prefetch_is_completed_from_the_server(fhir: FhirTestServer) -> None:
    oxycodone = c.medication_request(c.OXYCODONE, authored=-3)
    body = c.scenario(c.oud(), oxycodone)
    fhir.reset()
    fhir.load([oxycodone])
    partial = without_prefetch(
        body, fhir.url, keep=("conditions", "labResults", "allergies", "naloxoneChallenges")
    )
    assert cards_of(pipeline_with(), partial) == {"opioid-active": "critical"}


def test_search_pages_are_followed(fhir: FhirTestServer, tmp_path: Path) -> None:
    rules = paged_rules(tmp_path, count=2)
    history = [c.medication_request({"text": f"vitamin {n}"}, authored=-5) for n in range(6)]
    opioid = c.medication_request(c.OXYCODONE, authored=-1)  # the 7th of 7 resources: on page 4
    fhir.reset()
    fhir.load([*history, opioid])
    body = without_prefetch(c.scenario(), fhir.url)
    assert "opioid-active" in cards_of(pipeline_with(rules_dir=rules), body)
    capped = cards_of(pipeline_with(rules_dir=rules, fhir_max_pages=2), body)
    assert capped.get("opioid-history-unverified") == "warning"  # more pages than allowed: not verified


def paged_rules(tmp_path: Path, count: int) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules)
    services = rules / "services.yaml"
    text = services.read_text()
    for key_query in ("MedicationRequest?patient={{context.patientId}}",):
        text = text.replace(key_query, key_query + f"&_count={count}")
    services.write_text(text)
    return rules


def test_a_medication_reference_is_read_from_the_server(fhir: FhirTestServer) -> None:
    medication = {"resourceType": "Medication", "id": "med-oxy", "code": c.rx(*c.OXYCODONE)}
    order = c.medication_request({"text": "x"}, authored=-2)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-oxy"}
    fhir.reset()
    fhir.load([medication, order])
    body = without_prefetch(c.scenario(), fhir.url)
    assert cards_of(pipeline_with(), body).get("opioid-active") == "critical"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", "HTTP 500"),
        ("401", "access denied"),
        ("403", "access denied"),
        ("garbage", "not JSON"),
        ("not-fhir", "not a FHIR resource"),
        ("foreign-next", "outside fhirServer"),
    ],
)
def test_a_failing_server_gives_the_could_not_verify_cards(
    faults: FaultServer, mode: str, reason: str
) -> None:
    body = without_prefetch(c.scenario(), faults.base(mode))
    cards = by_rule(answer(pipeline_with(), body))
    assert cards["opioid-history-unverified"]["indicator"] == "warning"
    assert cards["patient-data-unverified"]["indicator"] == "warning"
    assert reason in cards["opioid-history-unverified"]["detail"]


def test_a_slow_server_is_cut_off_at_the_budget(faults: FaultServer) -> None:
    body = without_prefetch(c.scenario(), faults.base("slow"))
    pipeline = pipeline_with(fhir_budget_ms=300)
    started = time.monotonic()
    cards = cards_of(pipeline, body)
    elapsed = time.monotonic() - started
    assert elapsed < 0.8, f"took {elapsed:.2f} s with a 0.3 s budget"
    assert cards["opioid-history-unverified"] == "warning"


def test_a_fhir_server_off_the_allowlist_is_not_queried_and_counts_as_unreachable(
    faults: FaultServer,
) -> None:
    body = without_prefetch(c.scenario(), faults.base("ok"))
    before = len(faults.hits)
    pipeline = pipeline_with(fhir_server_allowlist=("https://ehr.example.org/",))
    codes = cards_of(pipeline, body)
    assert codes["opioid-history-unverified"] == "warning"
    assert codes["patient-data-unverified"] == "warning"
    assert len(faults.hits) == before


def test_no_token_is_sent_when_the_request_has_none(faults: FaultServer) -> None:
    body = without_prefetch(c.scenario(), faults.base("ok"))
    faults.hits.clear()
    cards_of(pipeline_with(), body)
    assert faults.hits and all(auth is None for _, auth in faults.hits)


def test_the_token_goes_over_the_wire_and_never_into_the_logs(tmp_path: Path) -> None:
    token = "tok-ABC-" + "7" * 24
    patient = "pt-77812-unique"
    # The live server runs on the real clock: a fixture dated forward to today, not tests.clinical's dates.
    body = fixture_request("opioid-active-prescription", patient_id=patient)
    medication_requests = body["prefetch"].pop("medicationRequests")
    with FhirTestServer(env={"FHIR_REQUIRE_TOKEN": token}) as fhir:
        fhir.load([entry["resource"] for entry in medication_requests["entry"]])
        server = LiveServer(tmp_path / "server.log", workers=1)
        try:
            body = without_prefetch(body, fhir.url, keep=tuple(body["prefetch"]))
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "cds-service",
            }
            with server.client() as http:
                ok = http.post(service_path("order-select"), json=body)
                wrong = copy.deepcopy(body)
                wrong["fhirAuthorization"]["access_token"] = "not-the-token"
                refused = http.post(service_path("order-select"), json=wrong)
        finally:
            server.stop()
        assert f"Bearer {token}" in fhir.received_authorization()
    codes = {card["source"]["topic"]["code"] for card in ok.json()["cards"]}
    assert "opioid-active" in codes and "opioid-history-unverified" not in codes
    refused_codes = {card["source"]["topic"]["code"] for card in refused.json()["cards"]}
    assert "opioid-history-unverified" in refused_codes  # 401 after the token: not verified, still answered
    logs = server.logs()
    assert "fhir fetch" in logs
    for secret in (token, "not-the-token", patient):
        assert secret not in logs


def test_every_template_key_is_fetched_when_nothing_is_prefetched(faults: FaultServer) -> None:
    body = without_prefetch(c.scenario(), faults.base("ok"))
    faults.hits.clear()
    cards_of(pipeline_with(), body)
    assert len(faults.hits) == len(PREFETCH_KEYS)
