"""Other people's CDS Hooks requests, sent to the real server as their authors wrote them.

Two corpora, written for other services: HL7's Potential Drug-Drug Interaction CDS guide
(tests/data/pddi-cds, CC0: older clients, with users and patients at the top level, the deprecated
medication-prescribe hook, bare Bundle entries, prefetch inside the context as batch-response entries,
FHIR STU3) and cqf-ruler's opioid CDS tests (tests/data/cqf-ruler, Apache 2.0: R4, one Epic-shaped).
Each request is sent twice: as published (a digoxin, warfarin, NSAID or opioid order: 200, and nothing
for a naltrexone service to say about a patient not known to take naltrexone) and with its draft
medication replaced by naltrexone 50 mg daily (200, and never silent: what the request carries is
incomplete for naltrexone, so the cards say what could not be checked). The server may not contact the
fhirServers the requests name: its allowlist is a local port that refuses connections.
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
from tests.support.databases import dump
from tests.support.live import LiveServer, closed_port
from tests.support.rule_contract import ADDITIONS, CONTRACT

DATA = Path(__file__).parent / "data"
PDDI = sorted((DATA / "pddi-cds" / "requests").glob("*.json"))
CQF_RULER = sorted((DATA / "cqf-ruler" / "requests").glob("*.json"))
REQUESTS = PDDI + CQF_RULER

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

# What each published request deviates from CDS Hooks 2.0.1 (and FHIR R4) in: its log line names them.
# The guide's draftOrders Bundles have no `type`.
ORDER_HOOK_DEVIATIONS = {"user-at-top-level", "patient-at-top-level", "stu3-resources", "bundle-without-type"}
MEDICATION_PRESCRIBE_DEVIATIONS = {
    "medication-prescribe",
    "bundle-without-type",  # context.medications is a Bundle without `type`
    "unknown-fields",  # applyCql, and scenario items beside the context's fields
    "user-at-top-level",
    "typed-context-ids",  # "Patient/…", "Encounter/…"
    "bare-bundle-entries",
    "prefetch-in-context",
    "prefetch-batch-entries",
    "stu3-resources",
}
# The guide's warfarin/NSAID scenarios put Patient/patient-warfarin-nsaid-over65-prefetch in the context
# but Patient/warfarin-nsaid-over65-prefetch in the draft order's subject.
SUBJECT_DIFFERS_FROM_CONTEXT = {f"request-warfarin-nsaid-scenario-0{n}.json" for n in range(1, 6)}
CQF_RULER_DEVIATIONS = {
    # its draft R4 MedicationRequest puts `doseQuantity` on the Dosage, where STU3 has it
    "opioidcds-01-request.json": {"typed-context-ids", "stu3-resources"},
    "opioidcds-01-request-prefetch.json": {"typed-context-ids", "prefetch-batch-entries", "stu3-resources"},
    "opioidcds-04-request.json": {"typed-context-ids"},
    # its prefetched R4 MedicationRequest has STU3's `context`
    "opioidcds-04-request-prefetch.json": {"typed-context-ids", "prefetch-batch-entries", "stu3-resources"},
    "opioidcds-08-request.json": {"long-resource-ids"},
    "opioidcds-08-request-prefetch.json": {"prefetch-batch-entries", "long-resource-ids"},
}
# Their prefetch shows an opioid in current use: buprenorphine/naloxone (01), oxycodone (04).
OPIOID_IN_USE = {"opioidcds-01-request-prefetch.json", "opioidcds-04-request-prefetch.json"}


def is_cqf_ruler(path: Path) -> bool:
    return path.parent.parent.name == "cqf-ruler"


def expected_deviations(path: Path, body: dict[str, Any]) -> set[str]:
    if is_cqf_ruler(path):
        return CQF_RULER_DEVIATIONS[path.name]
    return (
        MEDICATION_PRESCRIBE_DEVIATIONS if body["hook"] == "medication-prescribe" else ORDER_HOOK_DEVIATIONS
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("client-corpus")
    with closed_port() as port:
        live = LiveServer(
            directory / "server.log",
            env={
                "NALTREXONE_CDS_FHIR_SERVER_ALLOWLIST": f"http://127.0.0.1:{port}/",
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
    server: LiveServer, path: Path
) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    response = post(server, body)
    assert response.status_code == 200, response.text
    assert_valid("CdsResponse", response.json())
    assert response.json()["cards"] == [], "nothing to say: no naltrexone ordered or known to be in use"
    logged = request_log_line(server, body["hookInstance"])
    assert logged["status"] == 200 and set(logged["deviations"]) == expected_deviations(path, body)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_each_request_with_naltrexone_instead_says_what_it_could_not_check(
    server: LiveServer, path: Path
) -> None:
    body = with_naltrexone(json.loads(path.read_text(encoding="utf-8")), stu3=not is_cqf_ruler(path))
    response = post(server, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid("CdsResponse", answer)
    cards = {card["source"]["topic"]["code"]: card for card in answer["cards"]}
    for rule_id, card in cards.items():
        assert card["indicator"] in (CONTRACT | ADDITIONS)[rule_id], rule_id
    # the corpus carries none of this service's prefetch, and its fhirServer may not be contacted
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


def test_a_request_without_a_user_is_answered_and_audited_with_the_user_absent(server: LiveServer) -> None:
    sent = DATA / "pddi-cds" / "requests" / "digoxin-cyclosporine-order-sign-coordination.json"
    body = with_naltrexone(json.loads(sent.read_text(encoding="utf-8")), stu3=True)
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
