"""Other people's CDS Hooks requests, sent to the real server as their authors wrote them.

Two corpora, written for other services: HL7's Potential Drug-Drug Interaction CDS guide
(tests/data/pddi-cds, CC0: older clients, with users and patients at the top level, the deprecated
medication-prescribe hook, bare Bundle entries, prefetch inside the context as batch-response entries,
FHIR STU3) and cqf-ruler's opioid CDS tests (tests/data/cqf-ruler, Apache 2.0: R4, one Epic-shaped).
Each request is sent twice: as published (a digoxin, warfarin, NSAID or opioid order: 200, and nothing
for a naltrexone service to say about a patient not known to take naltrexone) and with its draft
medication replaced by naltrexone 50 mg daily (200, and never silent: what the request carries is
incomplete for naltrexone, so the cards say what could not be checked). The fhirServer each request names
is replaced by a local port of the test that refuses connections (the only server on the allowlist).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import assert_valid
from tests.support.client_corpus import (
    CQF_RULER,
    DATA,
    OPIOID_IN_USE,
    PDDI,
    REQUESTS,
    SUBJECT_DIFFERS_FROM_CONTEXT,
    expected_deviations,
    is_cqf_ruler,
    published,
)
from tests.support.databases import dump
from tests.support.live import LiveServer, closed_port
from tests.support.rule_contract import ADDITIONS, CONTRACT

NALTREXONE_50_MG = {
    "coding": [
        {
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "1483744",
            "display": "naltrexone hydrochloride 50 MG Oral Tablet",
        }
    ]
}
FIFTY_MG = {"value": 50, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
ONCE_DAILY = {
    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006", "display": "Oral route"}]},
}


@pytest.fixture(scope="module")
def fhir_server() -> Iterator[str]:
    """The FHIR server the corpus requests name here: a local port of this test that refuses connections."""
    with closed_port() as port:
        yield f"http://127.0.0.1:{port}/fhir"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fhir_server: str) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("client-corpus")
    live = LiveServer(
        directory / "server.log",
        env={
            "NALTREXONE_CDS_FHIR_SERVER_ALLOWLIST": fhir_server,
            "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{directory / 'audit.sqlite3'}",
        },
    )
    yield live
    live.stop()


def service_for(body: dict[str, Any]) -> str:
    return f"/cds-services/naltrexone-{body['hook']}"


def drafts_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The draft MedicationRequests, in whichever place and shape the request carries them."""
    context = body["context"]
    drafts = context.get("draftOrders", context.get("medications"))
    if isinstance(drafts, dict) and drafts.get("resourceType") == "Bundle":
        drafts = [entry.get("resource", entry) for entry in drafts.get("entry", [])]
    elif isinstance(drafts, dict):
        drafts = [drafts]
    return [d for d in drafts if d.get("resourceType") == "MedicationRequest"]


def with_naltrexone(body: dict[str, Any], *, stu3: bool) -> dict[str, Any]:
    """``body`` with each draft order for naltrexone 50 mg daily, the dose where its FHIR version puts it."""
    changed = copy.deepcopy(body)
    dosage = {
        **ONCE_DAILY,
        **({"doseQuantity": FIFTY_MG} if stu3 else {"doseAndRate": [{"doseQuantity": FIFTY_MG}]}),
    }
    for order in drafts_of(changed):
        order.pop("medicationReference", None)
        order["medicationCodeableConcept"] = NALTREXONE_50_MG
        order["dosageInstruction"] = [dosage]
    return changed


def post(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    with server.client() as client:
        return client.post(service_for(body), json=body)


def request_log_line(server: LiveServer, hook_instance: str) -> dict[str, Any]:
    for line in reversed(server.logs().splitlines()):
        if line.startswith("{"):
            entry: dict[str, Any] = json.loads(line)
            if entry.get("message") == "request" and entry.get("hook_instance") == hook_instance:
                return entry
    raise AssertionError(f"no request log line for {hook_instance}")


def test_the_corpus_is_the_published_one() -> None:
    def hooks(paths: list[Path]) -> list[str]:
        return sorted(json.loads(path.read_text(encoding="utf-8"))["hook"] for path in paths)

    assert hooks(PDDI) == ["medication-prescribe"] * 9 + ["order-select"] * 6 + ["order-sign"] * 6
    assert hooks(CQF_RULER) == ["order-select"] * 4 + ["order-sign"] * 2


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_each_request_as_published_is_answered_with_its_deviations_named(
    server: LiveServer, fhir_server: str, path: Path
) -> None:
    body = published(path, fhir_server)
    response = post(server, body)
    assert response.status_code == 200, response.text
    assert_valid("CdsResponse", response.json())
    assert response.json()["cards"] == [], "nothing to say: no naltrexone ordered or known to be in use"
    logged = request_log_line(server, body["hookInstance"])
    assert logged["status"] == 200 and set(logged["deviations"]) == expected_deviations(path, body)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_each_request_with_naltrexone_instead_says_what_it_could_not_check(
    server: LiveServer, fhir_server: str, path: Path
) -> None:
    body = with_naltrexone(published(path, fhir_server), stu3=not is_cqf_ruler(path))
    response = post(server, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid("CdsResponse", answer)
    cards = {card["source"]["topic"]["code"]: card for card in answer["cards"]}
    for rule_id, card in cards.items():
        assert card["indicator"] in (CONTRACT | ADDITIONS)[rule_id], rule_id
    # the corpus carries none of this service's prefetch, and its fhirServer (a closed port) answers nothing
    assert {"opioid-history-unverified", "patient-data-unverified"} <= set(cards)
    assert cards["patient-data-unverified"]["summary"].startswith("Check the record yourself")
    if path.name in SUBJECT_DIFFERS_FROM_CONTEXT:
        mismatch = cards["patient-mismatch"]
        assert mismatch["indicator"] == "critical"
        assert "Patient/warfarin-nsaid-over65-prefetch" in mismatch["detail"]
    else:
        assert "patient-mismatch" not in cards
    if path.name in OPIOID_IN_USE:
        assert cards["opioid-active"]["indicator"] == "critical"
    else:
        assert "opioid-active" not in cards


def test_a_request_without_a_user_is_answered_and_audited_with_the_user_absent(
    server: LiveServer, fhir_server: str
) -> None:
    sent = DATA / "pddi-cds" / "requests" / "digoxin-cyclosporine-order-sign-coordination.json"
    body = with_naltrexone(published(sent, fhir_server), stu3=True)
    del body["userId"]
    body["hookInstance"] = str(uuid.uuid4())
    response = post(server, body)
    assert response.status_code == 200 and response.json()["cards"]
    assert set(request_log_line(server, body["hookInstance"])["deviations"]) == {
        "patient-at-top-level",
        "no-user",
        "stu3-resources",
        "bundle-without-type",
    }
    database = dump(f"sqlite:///{server.log_path.parent / 'audit.sqlite3'}")
    rows = [row for row in database["issued_card"] if row["hook_instance"] == body["hookInstance"]]
    assert rows and all(row["user_hash"] is None and row["patient_hash"] for row in rows)
