from __future__ import annotations

from flask.testing import FlaskClient

from fhir_fixtures.requests import PREFETCH_KEYS
from tests.support import assert_no_empty_values, assert_valid, body_of


def test_discovery_lists_the_services_of_the_contract_and_the_deprecated_hook(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = body_of(response)
    assert_valid("DiscoveryResponse", body)
    assert_no_empty_values(body)
    hooks = {service["id"]: service["hook"] for service in body["services"]}
    assert hooks == {
        "naltrexone-order-select": "order-select",
        "naltrexone-order-sign": "order-sign",
        "naltrexone-medication-prescribe": "medication-prescribe",
    }


def test_discovery_with_a_trailing_slash(client: FlaskClient) -> None:
    assert client.get("/cds-services/").status_code == 200


def test_prefetch_covers_every_data_domain_with_2_0_1_tokens_only(client: FlaskClient) -> None:
    for service in body_of(client.get("/cds-services"))["services"]:
        prefetch = service["prefetch"]
        assert tuple(prefetch) == PREFETCH_KEYS
        resource_types = {query.split("?")[0].split("/")[0] for query in prefetch.values()}
        assert resource_types == {
            "Patient",
            "MedicationRequest",
            "MedicationDispense",
            "MedicationStatement",
            "MedicationAdministration",
            "Condition",
            "AllergyIntolerance",
            "Observation",
            "ServiceRequest",
            "Appointment",
            "Procedure",
        }
        for query in prefetch.values():
            assert "{{context.patientId}}" in query
            assert "today()" not in query  # a CDS Hooks 3.0 ballot token
        assert service["title"] and service["description"] and service["usageRequirements"]


def test_health_reports_version_and_services(client: FlaskClient) -> None:
    body = body_of(client.get("/health"))
    assert_valid("Health", body)
    assert body["services"] == [
        "naltrexone-order-select",
        "naltrexone-order-sign",
        "naltrexone-medication-prescribe",
    ]
