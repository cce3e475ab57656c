"""What real clients send is accepted: the CDS Hooks sandbox's own requests and known quirks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.knowledge.services import load_services
from cds_service.resources import default_rules_dir
from cds_service.validate import parse_hook_request
from fhir_fixtures.requests import (
    hook_request,
    naltrexone_order,
    sandbox_hook_bodies,
    service_path,
)
from tests.support import assert_no_empty_values, assert_valid

SERVICES = load_services(default_rules_dir())


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_every_captured_sandbox_request_is_answered(client: FlaskClient, hook: str) -> None:
    bodies = sandbox_hook_bodies(hook)
    assert bodies
    for body in bodies:
        response = client.post(service_path(hook), json=body)
        assert response.status_code == 200, response.json
        assert_valid("CdsResponse", response.json)
        assert_no_empty_values(response.json)


def test_the_sandbox_draft_before_a_drug_is_chosen_gets_no_cards(client: FlaskClient) -> None:
    first = sandbox_hook_bodies("order-select")[0]
    assert "medicationCodeableConcept" not in first["context"]["draftOrders"]["entry"][0]["resource"]
    assert client.post(service_path("order-select"), json=first).json == {"cards": []}


def _request(body: dict[str, Any], hook: str = "order-select") -> Any:
    return parse_hook_request(SERVICES[f"naltrexone-{hook}"], body)


def test_patient_id_given_as_a_reference_is_normalised() -> None:
    body = hook_request()
    body["context"]["patientId"] = "Patient/pat-tests-1"
    assert _request(body).patient_id == "pat-tests-1"


def test_bundle_without_type_category_object_and_extensions_are_tolerated() -> None:
    body = hook_request()
    del body["context"]["draftOrders"]["type"]
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["category"] = {"coding": [{"code": "community"}]}
    order["extension"] = [{"url": "http://example.org/x", "valueString": "y"}]
    body["extension"] = {"org.example.ehr": {"tenant": "a"}}
    body["context"]["extension"] = {"org.example.ehr": True}
    assert _request(body).reviewed_orders == (order,)


def test_dose_and_rate_as_one_object_and_dose_at_dosage_level_are_tolerated() -> None:
    body = hook_request()
    dosage = body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
    dosage["doseAndRate"] = dosage["doseAndRate"][0]
    dosage["doseQuantity"] = {"value": 50, "unit": "mg"}
    assert len(_request(body).reviewed_orders) == 1


def test_a_non_uuid_hook_instance_is_accepted() -> None:
    body = hook_request()
    body["hookInstance"] = "epic-12345"
    assert _request(body).hook_instance == "epic-12345"


def test_order_select_reviews_only_the_selected_orders() -> None:
    first, second = naltrexone_order("a"), naltrexone_order("b")
    body = hook_request(drafts=[first, second], selections=["MedicationRequest/b"])
    assert [o["id"] for o in _request(body).reviewed_orders] == ["b"]
    assert len(_request(body).draft_resources) == 2


def test_selections_may_name_a_full_url_or_a_bare_id() -> None:
    body = hook_request(drafts=[naltrexone_order("a"), naltrexone_order("b")], selections=["urn:uuid:1", "a"])
    body["context"]["draftOrders"]["entry"][1]["fullUrl"] = "urn:uuid:1"
    assert [o["id"] for o in _request(body).reviewed_orders] == ["b", "a"]


def test_order_sign_reviews_every_medication_request() -> None:
    service_request = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft"}
    body = hook_request("order-sign", drafts=[naltrexone_order("a"), naltrexone_order("b"), service_request])
    assert [o["id"] for o in _request(body, "order-sign").reviewed_orders] == ["a", "b"]


def test_order_sign_accepts_revised_orders_that_are_not_drafts() -> None:
    body = hook_request("order-sign", drafts=[naltrexone_order(status="active")])
    assert len(_request(body, "order-sign").reviewed_orders) == 1


def test_the_access_token_never_appears_in_the_parsed_request_repr() -> None:
    body = hook_request(
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization={
            "access_token": "SECRET-TOKEN",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds-service",
        },
    )
    parsed = _request(copy.deepcopy(body))
    assert parsed.fhir_authorization is not None
    assert parsed.fhir_authorization.access_token == "SECRET-TOKEN"
    assert "SECRET-TOKEN" not in repr(parsed)
