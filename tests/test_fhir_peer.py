"""The FHIR test server (tests/support/fhir_server, Medplum's router in Node) answers the service's
queries correctly.

Other tests use it as the EHR's ``fhirServer``; these prove that what it returns can be trusted: every
prefetch template in rules/services.yaml finds exactly one patient's resources, paging links work, and
its CORS and bearer-token behaviour is what the tests rely on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.knowledge.services import PrefetchTemplate, load_services
from cds_service.resources import default_rules_dir
from tests.support.fhir_peer import FhirTestServer

# Node is part of every development and CI machine: a missing node is a failure, not a skip.
pytestmark = pytest.mark.live

PATIENT = "pat-a"  # has one or more of everything
EMPTY_PATIENT = "pat-b"  # exists, has nothing
OTHER_PATIENT = "pat-c"  # has one of everything; must never show up in PATIENT's results

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOCAL_OBSERVATION = "http://naltrexone-cds.org/fhir/CodeSystem/observation"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TOKEN = "test-token-3f9a"


def _med(resource_type: str, rid: str, patient: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": rid,
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1483744"}]},
        **fields,
    }


def _observation(rid: str, patient: str, category: str | None, system: str, code: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-01",
    }
    if category:
        resource["category"] = [{"coding": [{"system": CATEGORY, "code": category}]}]
    return resource


def _clinical_resources(patient: str, prefix: str, requests: int) -> list[dict[str, Any]]:
    """One patient's data: ``requests`` MedicationRequests and one or two of every other kind."""
    resources = [
        _med("MedicationRequest", f"{prefix}-mr{i}", patient, status="active", intent="order")
        for i in range(1, requests + 1)
    ]
    resources += [
        _med("MedicationDispense", f"{prefix}-md1", patient, status="completed"),
        _med("MedicationStatement", f"{prefix}-ms1", patient, status="active"),
        _med("MedicationAdministration", f"{prefix}-ma1", patient, status="completed"),
        {
            "resourceType": "Condition",
            "id": f"{prefix}-c1",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"text": "Opioid use disorder"},
        },
        {  # AllergyIntolerance points at its patient through `patient`, not `subject`
            "resourceType": "AllergyIntolerance",
            "id": f"{prefix}-ai1",
            "patient": {"reference": f"Patient/{patient}"},
            "code": {"text": "naltrexone"},
        },
        _observation(f"{prefix}-alt", patient, "laboratory", LOINC, "1742-6"),
        _observation(f"{prefix}-ast", patient, "laboratory", LOINC, "1920-8"),
        _observation(f"{prefix}-nalox", patient, "procedure", LOCAL_OBSERVATION, "naloxone-challenge"),
        _observation(f"{prefix}-preg", patient, "social-history", LOINC, "82810-3"),
        _observation(f"{prefix}-bp", patient, "vital-signs", LOINC, "85354-9"),
        # planned surgery: the status filters keep completed orders and cancelled appointments out
        *(
            {
                "resourceType": "ServiceRequest",
                "id": f"{prefix}-sr-{status}",
                "status": status,
                "intent": "order",
                "subject": {"reference": f"Patient/{patient}"},
                "code": {"text": "Knee arthroscopy"},
            }
            for status in ("active", "completed")
        ),
        *(
            {
                "resourceType": "Appointment",
                "id": f"{prefix}-ap-{status}",
                "status": status,
                "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
            }
            for status in ("booked", "proposed", "cancelled")
        ),
        {
            "resourceType": "Procedure",
            "id": f"{prefix}-pr1",
            "status": "preparation",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"text": "Cholecystectomy"},
        },
    ]
    return resources


# What each prefetch template of rules/services.yaml must find for PATIENT (the prefix "a").
EXPECTED_FOR_PATIENT = {
    "patient": {PATIENT},
    "medicationRequests": {"a-mr1", "a-mr2", "a-mr3", "a-mr4", "a-mr5"},
    "medicationDispenses": {"a-md1"},
    "medicationStatements": {"a-ms1"},
    "medicationAdministrations": {"a-ma1"},
    "conditions": {"a-c1"},
    "allergies": {"a-ai1"},
    "labResults": {"a-alt", "a-ast"},
    "naloxoneChallenges": {"a-nalox"},
    "pregnancyStatus": {"a-preg"},
    "serviceRequests": {"a-sr-active"},
    "appointments": {"a-ap-booked", "a-ap-proposed"},
    "procedures": {"a-pr1"},
}


def _templates() -> dict[str, PrefetchTemplate]:
    services = load_services(default_rules_dir())
    return {template.key: template for service in services.values() for template in service.prefetch}


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _next_url(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirTestServer]:
    # Patients and the Medication come from a fixtures file given at start-up; the clinical data is
    # uploaded over HTTP afterwards, so both ways of loading are exercised.
    fixtures = tmp_path_factory.mktemp("fhir") / "patients.json"
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid} for pid in (PATIENT, EMPTY_PATIENT, OTHER_PATIENT)
    ]
    resources.append(
        {"resourceType": "Medication", "id": "naltrexone-50", "code": {"text": "Naltrexone 50 mg"}}
    )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    fixtures.write_text(json.dumps(bundle), encoding="utf-8")
    with FhirTestServer(fixtures=[fixtures]) as server:
        server.load(_clinical_resources(PATIENT, "a", requests=5))
        server.load(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in _clinical_resources(OTHER_PATIENT, "c", requests=1)
                ],
            }
        )
        yield server


@pytest.fixture
def http(fhir: FhirTestServer) -> Iterator[httpx.Client]:
    with fhir.client() as client:
        yield client


def test_every_prefetch_template_is_covered_here() -> None:
    assert set(_templates()) == set(EXPECTED_FOR_PATIENT), "add the new prefetch key to EXPECTED_FOR_PATIENT"


@pytest.mark.parametrize("key", sorted(EXPECTED_FOR_PATIENT))
def test_prefetch_template_finds_only_that_patients_resources(
    http: httpx.Client, fhir: FhirTestServer, key: str
) -> None:
    template = _templates()[key]
    found = http.get("/" + template.render({"patientId": PATIENT}))
    assert found.status_code == 200, found.text
    if template.is_search:
        assert found.json()["resourceType"] == "Bundle" and found.json()["type"] == "searchset"
        assert sorted(_ids(found.json())) == sorted(EXPECTED_FOR_PATIENT[key])
        assert found.json()["total"] == len(EXPECTED_FOR_PATIENT[key])
        for entry in found.json()["entry"]:
            resource = entry["resource"]
            assert entry["fullUrl"] == f"{fhir.url}/{resource['resourceType']}/{resource['id']}"
        nothing = http.get("/" + template.render({"patientId": EMPTY_PATIENT})).json()
        assert nothing["total"] == 0 and "entry" not in nothing
        other = http.get("/" + template.render({"patientId": OTHER_PATIENT})).json()
        assert other["total"] >= 1 and all(rid.startswith("c-") for rid in _ids(other))
    else:
        assert found.json()["id"] in EXPECTED_FOR_PATIENT[key]


def test_patient_can_be_given_as_a_reference_and_medication_is_readable(http: httpx.Client) -> None:
    by_reference = http.get("/Condition", params={"patient": f"Patient/{PATIENT}"}).json()
    assert _ids(by_reference) == ["a-c1"]
    by_subject = http.get("/Condition", params={"subject": f"Patient/{PATIENT}"}).json()
    assert _ids(by_subject) == ["a-c1"]
    medication = http.get("/Medication/naltrexone-50")
    assert medication.status_code == 200 and medication.json()["code"]["text"] == "Naltrexone 50 mg"


def test_code_search_with_and_without_system(http: httpx.Client) -> None:
    encoded = http.get("/Observation", params={"patient": PATIENT, "code": f"{LOINC}|1742-6"}).json()
    assert _ids(encoded) == ["a-alt"]
    assert _ids(http.get(f"/Observation?patient={PATIENT}&code=1742-6").json()) == ["a-alt"]
    wrong_system = http.get("/Observation", params={"patient": PATIENT, "code": f"{RXNORM}|1742-6"}).json()
    assert wrong_system["total"] == 0


def test_paging_follows_next_links_through_every_page(http: httpx.Client, fhir: FhirTestServer) -> None:
    page = http.get("/MedicationRequest", params={"patient": PATIENT, "_count": "2"}).json()
    assert page["total"] == 5
    seen, sizes = _ids(page), [len(_ids(page))]
    while (url := _next_url(page)) is not None:
        assert url.startswith(fhir.url + "/MedicationRequest?")
        page = http.get(url).json()
        seen += _ids(page)
        sizes.append(len(_ids(page)))
    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(EXPECTED_FOR_PATIENT["medicationRequests"])
    assert len(set(seen)) == 5


def test_post_search_with_a_form_body(http: httpx.Client) -> None:
    form = {"patient": PATIENT, "category": "laboratory", "_count": "1"}
    first = http.post("/Observation/_search", data=form)
    assert first.status_code == 200, first.text
    assert first.json()["total"] == 2 and len(_ids(first.json())) == 1
    next_url = _next_url(first.json())
    assert next_url is not None
    second = http.get(next_url).json()
    assert sorted(_ids(first.json()) + _ids(second)) == ["a-alt", "a-ast"]
    assert _next_url(second) is None
    # Query-string and form parameters are combined.
    mixed = http.post(f"/AllergyIntolerance/_search?patient={OTHER_PATIENT}", data={"_count": "5"})
    assert _ids(mixed.json()) == ["c-ai1"]


def test_missing_resource_is_a_404_operation_outcome(http: httpx.Client) -> None:
    missing = http.get("/Patient/nobody")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/fhir+json")
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert missing.json()["issue"][0]["code"] == "not-found"


def test_capability_statement(http: httpx.Client) -> None:
    metadata = http.get("/metadata")
    assert metadata.status_code == 200
    statement = metadata.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for template in _templates().values():
        assert template.resource_type in resources
        if template.is_search:
            names = {p["name"] for p in resources[template.resource_type]["searchParam"]}
            assert "patient" in names


def test_cors_preflight_and_headers(http: httpx.Client) -> None:
    preflight = http.options(
        "/MedicationRequest/_search",
        headers={
            "Origin": "http://127.0.0.1:8080",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    search = http.get("/Condition", params={"patient": PATIENT}, headers={"Origin": "http://127.0.0.1:8080"})
    assert search.headers["access-control-allow-origin"] == "*"


def test_create_and_update_over_http(http: httpx.Client, fhir: FhirTestServer) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/pat-d"},
        "code": {"text": "x"},
    }
    created = http.post("/Condition", json=condition, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    assert created.headers["location"].startswith(f"{fhir.url}/Condition/{new_id}/_history/")
    updated = http.put("/Condition/d-c2", json={**condition, "id": "d-c2"})
    assert updated.status_code in (200, 201), updated.text
    found = http.get("/Condition", params={"patient": "pat-d"}).json()
    assert sorted(_ids(found)) == sorted([new_id, "d-c2"])
    mismatched = http.put("/Condition/d-c3", json={**condition, "id": "other"})
    assert mismatched.status_code == 400 and mismatched.json()["resourceType"] == "OperationOutcome"


def test_transaction_resolves_urn_uuid_references(http: httpx.Client) -> None:
    urn = "urn:uuid:5b1d6f8e-2c1a-4f3b-9d2e-7a6c5b4e3d21"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urn,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Condition", "id": "e-c1", "subject": {"reference": urn}},
                "request": {"method": "PUT", "url": "Condition/e-c1"},
            },
        ],
    }
    response = http.post("/", json=bundle)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    patient_id = response.json()["entry"][0]["resource"]["id"]
    condition = http.get("/Condition/e-c1").json()
    assert condition["subject"]["reference"] == f"Patient/{patient_id}"
    assert _ids(http.get("/Condition", params={"patient": patient_id}).json()) == ["e-c1"]


def test_known_limit_unknown_search_parameter_empties_the_result(http: httpx.Client) -> None:
    """Not FHIR's "ignore unknown parameters": pinned so that a change in Medplum is noticed."""
    assert http.get("/Condition", params={"patient": PATIENT}).json()["total"] == 1
    assert http.get("/Condition", params={"patient": PATIENT, "nonsense": "1"}).json()["total"] == 0


def test_load_rejects_bad_entries(fhir: FhirTestServer) -> None:
    with pytest.raises(RuntimeError, match="entry 0"):
        fhir.load(
            {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Nope"}}]}
        )


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirTestServer]:
    fixture = tmp_path_factory.mktemp("fhir-locked") / "patient.json"
    fixture.write_text(json.dumps({"resourceType": "Patient", "id": PATIENT}), encoding="utf-8")
    with FhirTestServer(fixtures=[fixture], env={"FHIR_REQUIRE_TOKEN": TOKEN}) as server:
        yield server


def test_token_mode_refuses_missing_and_wrong_tokens_and_records_the_right_one(
    locked: FhirTestServer,
) -> None:
    locked.clear_received()
    with locked.client() as http:
        missing = http.get(f"/Patient/{PATIENT}")
        assert missing.status_code == 401
        assert missing.json()["resourceType"] == "OperationOutcome"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http.get(f"/Patient/{PATIENT}", headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401
        right = http.get(f"/Condition?patient={PATIENT}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and right.json()["total"] == 0
        read = http.get(f"/Patient/{PATIENT}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert read.status_code == 200 and read.json()["id"] == PATIENT
        # The metadata and CORS preflights stay open, as a browser-based EHR client needs.
        assert http.get("/metadata").status_code == 200
        assert http.options("/Patient", headers={"Access-Control-Request-Method": "GET"}).status_code == 204
    assert locked.received_authorization() == ["Bearer not-it", f"Bearer {TOKEN}", f"Bearer {TOKEN}"]
    assert [(r["method"], r["path"], r["authorization"]) for r in locked.requests()] == [
        ("GET", f"/Patient/{PATIENT}", None),
        ("GET", f"/Patient/{PATIENT}", "Bearer not-it"),
        ("GET", f"/Condition?patient={PATIENT}", f"Bearer {TOKEN}"),
        ("GET", f"/Patient/{PATIENT}", f"Bearer {TOKEN}"),
        ("GET", "/metadata", None),
    ]


def test_reset_reloads_only_the_fixtures(locked: FhirTestServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with locked.client(headers=auth) as http:
        locked.load([{"resourceType": "Patient", "id": "extra"}])  # no token needed for the test endpoints
        assert sorted(_ids(http.get("/Patient").json())) == ["extra", PATIENT]
        locked.reset()
        assert locked.received_authorization() == []
        assert _ids(http.get("/Patient").json()) == [PATIENT]
