"""The stages in order, without HTTP: validate, identify orders, gather, facts, engine, cards, audit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit import CardAudit
from cds_service.errors import BadRequest, NotFound, PreconditionFailed
from cds_service.pipeline import Pipeline
from cds_service.store import Store, sqlite_url
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order
from tests.support import NOW


def run(pipeline: Pipeline, body: dict[str, Any], hook: str = "order-select") -> list[str]:
    return [card.rule_id for card in pipeline.run(pipeline.service_for_hook(hook), body).cards]


def test_another_drug_is_answered_without_reading_the_record(pipeline: Pipeline) -> None:
    """No prefetch and no fhirServer would be a 412 for naltrexone: the record is never asked for."""
    body = c.scenario(order=naltrexone_order(medicationCodeableConcept=c.rx("308182", "amoxicillin 250 MG")))
    body["prefetch"] = {}
    assert run(pipeline, body) == []


def test_naltrexone_without_the_record_or_a_server_to_fetch_it_is_refused(pipeline: Pipeline) -> None:
    body = c.scenario()
    body["prefetch"] = {}
    with pytest.raises(PreconditionFailed, match="medicationRequests"):
        run(pipeline, body)


def test_the_request_is_validated_before_anything_else(pipeline: Pipeline) -> None:
    body = c.scenario()
    del body["context"]["patientId"]
    with pytest.raises(BadRequest, match="patientId"):
        run(pipeline, body)


def test_services_are_found_by_id_and_by_hook(pipeline: Pipeline) -> None:
    assert pipeline.service_for_hook("order-sign").id == "naltrexone-order-sign"
    with pytest.raises(NotFound):
        pipeline.service_for_hook("patient-view")
    with pytest.raises(NotFound):
        pipeline.service("naltrexone-patient-view")


def test_order_sign_keeps_warnings_and_criticals_only(pipeline: Pipeline) -> None:
    select = pipeline.run(pipeline.service("naltrexone-order-select"), c.scenario(c.oud())).cards
    sign = pipeline.run(
        pipeline.service("naltrexone-order-sign"), c.scenario(c.oud(), hook="order-sign")
    ).cards
    assert "naloxone-rescue" in [card.rule_id for card in select]  # an info card
    assert [card.rule_id for card in sign] == [card.rule_id for card in select if card.indicator != "info"]


def test_the_day_comes_from_the_pipelines_calendar(pipeline: Pipeline) -> None:
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-10, days_supply=3))  # supply ended 7 days ago
    assert "opioid-recent" in run(pipeline, body)
    later = replace(pipeline, calendar=replace(pipeline.calendar, clock=lambda: NOW + timedelta(days=4)))
    assert "opioid-recent" not in run(later, body)


def test_every_answer_with_cards_is_audited(pipeline: Pipeline, tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "audit.sqlite3"), secret="x" * 32)
    store.migrate()
    audited = replace(pipeline, audit=CardAudit(store))
    issued = run(audited, c.scenario(c.oud()))
    now = datetime.now(UTC)  # the store stamps with the real clock
    rows = store.report(now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert {row.rule_id: row.issued for row in rows} == {rule_id: 1 for rule_id in issued}
    assert audited.audit is not None and audited.audit.gaps == 0
