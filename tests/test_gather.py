"""Prefetch semantics: absent, null and OperationOutcome mean different things."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.errors import PreconditionFailed
from cds_service.gather import Availability, FetchResult, KeyOutcome, PatientRecord, gather
from cds_service.knowledge.services import PrefetchTemplate, ServiceDefinition, load_services
from cds_service.resources import default_rules_dir
from cds_service.validate import HookRequest, parse_hook_request
from fhir_fixtures.requests import PREFETCH_KEYS, hook_request, searchset, service_path
from tests.support import assert_operation_outcome

SERVICE = load_services(default_rules_dir())["naltrexone-order-select"]
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "Medication service timed out"}],
}
OPIOID_RX = {"resourceType": "MedicationRequest", "id": "rx-1", "status": "active"}


def record_for(
    body: dict[str, Any], fetcher: Any = None, service: ServiceDefinition = SERVICE
) -> PatientRecord:
    return gather(service, parse_hook_request(service, body), fetcher)


def test_full_prefetch_with_no_entries_is_empty_everywhere() -> None:
    record = record_for(hook_request())
    for domain in ("medications", "conditions", "allergies", "observations"):
        assert record.availability(domain) is Availability.EMPTY


def test_resources_are_present_and_grouped_by_type() -> None:
    body = hook_request()
    body["prefetch"]["medicationRequests"] = searchset(OPIOID_RX)
    record = record_for(body)
    assert record.availability("medications") is Availability.PRESENT
    assert record.of_type("MedicationRequest") == (OPIOID_RX,)


def test_null_means_the_ehr_has_no_data() -> None:
    body = hook_request()
    body["prefetch"]["allergies"] = None
    assert record_for(body).availability("allergies") is Availability.EMPTY


def test_operation_outcome_means_unavailable_with_the_reason() -> None:
    body = hook_request()
    body["prefetch"]["medicationDispenses"] = OUTCOME
    domain = record_for(body).domains["medications"]
    assert domain.availability is Availability.UNAVAILABLE
    assert "Medication service timed out" in domain.problems[0]


def test_an_error_outcome_inside_a_searchset_means_unavailable() -> None:
    body = hook_request()
    body["prefetch"]["labResults"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": OUTCOME, "search": {"mode": "outcome"}}],
    }
    assert record_for(body).availability("observations") is Availability.UNAVAILABLE


def test_a_warning_outcome_inside_a_searchset_is_not_data() -> None:
    warning = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "informational"}],
    }
    body = hook_request()
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "entry": [{"resource": warning}]}
    record = record_for(body)
    assert record.availability("conditions") is Availability.EMPTY
    assert record.of_type("OperationOutcome") == ()


def test_a_paged_bundle_whose_next_page_was_not_read_is_unavailable() -> None:
    body = hook_request()
    body["prefetch"]["medicationRequests"] = searchset(OPIOID_RX) | {
        "link": [{"relation": "next", "url": "https://ehr.example.org/fhir/MedicationRequest?page=2"}]
    }
    record = record_for(body)
    assert record.availability("medications") is Availability.UNAVAILABLE
    assert "only the first page" in record.domains["medications"].problems[0]
    assert record.of_type("MedicationRequest") == (OPIOID_RX,)  # what was sent is still used


def test_data_under_undeclared_keys_is_used() -> None:
    body = hook_request()
    body["prefetch"]["item1"] = searchset(OPIOID_RX)
    assert record_for(body).of_type("MedicationRequest") == (OPIOID_RX,)


def test_the_same_resource_under_two_keys_counts_once() -> None:
    body = hook_request()
    body["prefetch"]["medicationRequests"] = searchset(OPIOID_RX)
    body["prefetch"]["item1"] = searchset(dict(OPIOID_RX))
    assert len(record_for(body).of_type("MedicationRequest")) == 1


def test_absent_required_keys_without_fhir_server_are_412(client: FlaskClient) -> None:
    body = hook_request()
    del body["prefetch"]["conditions"]
    del body["prefetch"]["labResults"]
    response = client.post(service_path("order-select"), json=body)
    assert_operation_outcome(response, 412, "'conditions'", "'labResults'", "no fhirServer")


def test_no_prefetch_at_all_without_fhir_server_is_412(client: FlaskClient) -> None:
    body = hook_request()
    del body["prefetch"]
    response = client.post(service_path("order-sign"), json=hook_request("order-sign") | {"prefetch": {}})
    assert_operation_outcome(response, 412, "'medicationRequests'")
    assert client.post(service_path("order-select"), json=body).status_code == 412


def test_the_optional_patient_key_may_be_absent() -> None:
    body = hook_request()
    del body["prefetch"]["patient"]
    record = record_for(body)
    assert record.keys["patient"] is KeyOutcome.NOT_PROVIDED


def test_a_draft_without_a_medication_needs_no_data(client: FlaskClient) -> None:
    order = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "order"}
    body = hook_request(drafts=[order], prefetch={})
    response = client.post(service_path("order-select"), json=body)
    assert response.status_code == 200
    assert response.json == {"cards": []}


class RecordingFetcher:
    """A stand-in for the HTTP fetcher, to test gather's decisions (the real one: test_fhir_fetch.py)."""

    def __init__(
        self, results: Mapping[str, FetchResult], medications: Mapping[str, Any] | None = None
    ) -> None:
        self.results = results
        self.medications = medications or {}
        self.asked: list[str] = []
        self.read: list[str] = []

    def allows(self, request: HookRequest) -> bool:
        return request.fhir_server is not None

    def open(self, request: HookRequest) -> RecordingFetcher:
        return self

    def search(self, templates: Sequence[PrefetchTemplate]) -> Mapping[str, FetchResult]:
        self.asked = [t.key for t in templates]
        return self.results

    def read_medications(self, ids: Iterable[str]) -> Mapping[str, Any]:
        self.read = sorted(ids)
        return {i: self.medications[i] for i in self.read if i in self.medications}


def test_absent_keys_go_to_the_fetcher_when_there_is_a_fhir_server() -> None:
    body = hook_request(fhirServer="https://ehr.example.org/fhir")
    for key in ("medicationRequests", "allergies"):
        del body["prefetch"][key]
    fetcher = RecordingFetcher(
        {
            "medicationRequests": FetchResult(resource=searchset(OPIOID_RX)),
            "allergies": FetchResult(failure="HTTP 503"),
        }
    )
    record = record_for(body, fetcher)
    assert fetcher.asked == ["medicationRequests", "allergies"]
    assert record.of_type("MedicationRequest") == (OPIOID_RX,)
    assert record.availability("medications") is Availability.PRESENT
    assert record.keys["medicationRequests"] is KeyOutcome.FETCHED
    assert record.availability("allergies") is Availability.UNAVAILABLE
    assert "HTTP 503" in record.domains["allergies"].problems[0]


def test_medications_referenced_but_not_sent_are_read() -> None:
    body = hook_request(fhirServer="https://ehr.example.org/fhir")
    referencing = {
        "resourceType": "MedicationRequest",
        "id": "rx-9",
        "status": "active",
        "medicationReference": {"reference": "Medication/m-9"},
    }
    body["prefetch"]["medicationRequests"] = searchset(referencing)
    medication = {"resourceType": "Medication", "id": "m-9", "code": {"text": "oxycodone 5 mg tablet"}}
    fetcher = RecordingFetcher({}, {"m-9": medication})
    record = record_for(body, fetcher)
    assert fetcher.read == ["m-9"]
    assert record.of_type("Medication") == (medication,)


def test_without_a_fetcher_absent_required_keys_are_412_even_with_a_fhir_server() -> None:
    body = hook_request(fhirServer="https://ehr.example.org/fhir")
    del body["prefetch"]["medicationStatements"]
    with pytest.raises(PreconditionFailed, match="does not fetch from fhirServer"):
        record_for(body)


@pytest.mark.parametrize("key", PREFETCH_KEYS)
def test_every_declared_key_belongs_to_a_domain(key: str) -> None:
    assert key in {t.key for t in SERVICE.prefetch}
