"""``naltrexone-cds lint``: a captured request is answered or refused, and every tolerated deviation named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from fhir_fixtures import FIXTURES
from fhir_fixtures.requests import hook_request, naltrexone_order
from tests.test_client_corpus import REQUESTS, expected_deviations

CONFORMING = FIXTURES / "opioid-active-prescription" / "request.json"


def lint(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["lint", *args], input=stdin)
    return result.exit_code, result.output


def test_a_conforming_request_exits_0() -> None:
    code, output = lint(str(CONFORMING))
    assert code == 0 and "naltrexone-order-select: conforms to CDS Hooks 2.0.1 and FHIR R4" in output


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_every_deviation_of_the_client_corpus_is_named(path: Path) -> None:
    code, output = lint("--json", str(path))
    report = json.loads(output)
    body = json.loads(path.read_text(encoding="utf-8"))
    assert code == 2 and report["refused"] is None and not report["conforming"]
    assert {d["name"] for d in report["deviations"]} == expected_deviations(path, body)
    assert all(d["meaning"] for d in report["deviations"])


def test_stu3_resources_are_listed_where_they_are() -> None:
    path = next(p for p in REQUESTS if p.name == "digoxin-cyclosporine-order-select-coordination.json")
    code, output = lint(str(path))
    assert code == 2
    assert "prefetch.item2[0] MedicationRequest/r311: category: Input should be a valid list" in output
    assert "context: Extra inputs are not permitted" in output


def test_prefetch_keys_not_sent_are_listed() -> None:
    body = json.loads(CONFORMING.read_text(encoding="utf-8"))
    del body["prefetch"]["conditions"], body["prefetch"]["allergies"]
    code, output = lint("--json", "-", stdin=json.dumps(body))
    report = json.loads(output)
    # prefetch is optional in CDS Hooks: conforming, but said
    assert code == 0 and report["prefetch_missing"] == ["conditions", "allergies"]


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
