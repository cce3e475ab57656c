from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from cds_service import create_app
from fhir_fixtures.requests import PREFETCH_KEYS
from tests.support import assert_no_empty_values, assert_valid, body_of, open_settings
from tests.support.databases import Backend


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


def test_ready_names_the_rules_by_the_hash_of_their_content(client: FlaskClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = body_of(response)
    assert_valid("Readiness", body)
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    # /health and the audit trail carry the same rules version: version+hash
    assert body_of(client.get("/health"))["rules"] == f"{body['rules']}+{body['content_hash']}"
    assert body["rule_count"] >= 25


def test_a_local_policy_changes_the_content_hash(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("washout_days_short_acting: 9\n", encoding="utf-8")
    plain = body_of(create_app(open_settings()).test_client().get("/health/ready"))
    local = body_of(create_app(open_settings(policy_file=policy)).test_client().get("/health/ready"))
    assert plain["rules"] == local["rules"]
    assert plain["content_hash"] != local["content_hash"]


def test_not_ready_while_the_audit_database_is_down_unless_told_otherwise(postgres: Backend) -> None:
    down = {"database_url": postgres.down_url(), "audit_secret": "s" * 32}
    response = create_app(open_settings(**down)).test_client().get("/health/ready")
    assert response.status_code == 503
    body = body_of(response)
    assert_valid("Readiness", body)
    assert body["waiting_for"] == ["database"]
    assert body["database"] == "unavailable"

    tolerant = create_app(open_settings(ready_requires_database=False, **down)).test_client()
    response = tolerant.get("/health/ready")
    assert response.status_code == 200
    assert body_of(response)["database"] == "unavailable"
    # liveness stays 200 either way: restarting the instance would not bring the database back
    assert tolerant.get("/health").status_code == 200
