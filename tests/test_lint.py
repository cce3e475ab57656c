"""``naltrexone-cds lint``: a captured request is answered or refused, and every tolerated deviation named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from fhir_fixtures import FIXTURES
from fhir_fixtures.requests import hook_request, naltrexone_order
from tests.support.client_corpus import REQUESTS, expected_deviations, published

CONFORMING = FIXTURES / "opioid-active-prescription" / "request.json"
UNREACHABLE_FHIR = "https://ehr.invalid/fhir"
"""lint never fetches; a ``.invalid`` name (RFC 2606) could not be reached if it tried."""


def lint(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["lint", *args], input=stdin)
    return result.exit_code, result.output


def test_a_conforming_request_exits_0() -> None:
    code, output = lint(str(CONFORMING))
    assert code == 0 and "naltrexone-order-select: conforms to CDS Hooks 2.0.1 and FHIR R4" in output


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_every_deviation_of_the_client_corpus_is_named(path: Path) -> None:
    body = published(path, UNREACHABLE_FHIR)
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    assert code == 2 and report["refused"] is None and not report["conforming"]
    assert {d["name"] for d in report["deviations"]} == expected_deviations(path, body)
    assert all(d["meaning"] for d in report["deviations"])


def test_stu3_resources_are_listed_where_they_are() -> None:
    path = next(p for p in REQUESTS if p.name == "digoxin-cyclosporine-order-select-coordination.json")
    code, output = lint("-", stdin=json.dumps(published(path, UNREACHABLE_FHIR)))
    assert code == 2
    assert "prefetch.item2[0] MedicationRequest/r311: category: Input should be a valid list" in output
    assert "context: Extra inputs are not permitted" in output


def test_prefetch_keys_not_sent_are_listed() -> None:
    body = json.loads(CONFORMING.read_text(encoding="utf-8"))
    del body["prefetch"]["conditions"], body["prefetch"]["allergies"]
    body["fhirServer"] = "https://ehr.example.org/fhir"
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    # prefetch is optional in CDS Hooks: conforming, but said; the service would fetch them (lint does
    # not), so its cards say those data could not be verified
    assert code == 0 and report["prefetch_missing"] == ["conditions", "allergies"]
    assert "patient-data-unverified" in report["cards"]


def test_prefetch_missing_with_no_fhir_server_is_refused_as_the_service_refuses_it() -> None:
    body = json.loads(CONFORMING.read_text(encoding="utf-8"))
    del body["prefetch"]["conditions"]
    body.pop("fhirServer", None)
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    assert code == 1 and "conditions" in report["refused"]
    assert report["prefetch_missing"] == ["conditions"]


def test_a_failed_batch_entry_inside_a_prefetch_bundle_is_named_and_said_on_a_card() -> None:
    body = json.loads(CONFORMING.read_text(encoding="utf-8"))
    searchset = body["prefetch"]["medicationRequests"]
    body["prefetch"]["medicationRequests"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": searchset, "response": {"status": "200 OK"}}, {"response": {"status": "503"}}],
    }
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    assert code == 2
    assert {"nested-bundles", "unreadable-prefetch-item"} <= {d["name"] for d in report["deviations"]}
    assert "opioid-history-unverified" in report["cards"]


def test_a_resource_the_fhir_models_trip_over_is_a_finding_not_a_crash() -> None:
    body = json.loads(CONFORMING.read_text(encoding="utf-8"))
    body["context"]["draftOrders"]["entry"][0]["resource"]["contained"] = [{"resourceType": "Foo"}]
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    assert code == 2 and report["fhir_problems"], output


def test_a_request_the_service_would_refuse_exits_1_with_the_reason() -> None:
    order = {**naltrexone_order(), "resourceType": "MedicationOrder"}
    body = hook_request(drafts=[order], selections=["MedicationOrder/draft-1"])
    code, output = lint("-", stdin=json.dumps(body))
    assert code == 1 and "REFUSED" in output and "DSTU2 MedicationOrder" in output


def test_malformed_json_is_refused_not_a_trace() -> None:
    code, output = lint("-", stdin='{"hook": ')
    assert code == 1 and "not valid JSON" in output


def test_an_unknown_service_is_a_usage_error() -> None:
    code, output = lint("--service", "nope", str(CONFORMING))
    assert code == 2 and "naltrexone-order-select" in output
