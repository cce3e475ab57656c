"""Every rule id of the contract: a case where it fires (right indicator, right suggestion) and a near miss.

Each case is a complete CDS Hooks request run through the real pipeline (validate -> gather -> facts ->
durable-rules -> cards) as of tests.support.NOW (2026-11-22).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cds_service.clock import Calendar
from cds_service.pipeline import Pipeline
from fhir_fixtures import clinical as c
from tests.support import answer, by_rule, open_settings
from tests.support.rule_cases import CASES, Case


def fired_cards(pipeline: Pipeline, body: dict[str, Any]) -> dict[str, Any]:
    return by_rule(answer(pipeline, body))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule(case: Case, pipeline: Pipeline) -> None:
    fired = fired_cards(pipeline, case.body)
    for rule_id, indicator in case.fires.items():
        assert rule_id in fired, f"{rule_id} did not fire; got {sorted(fired)}"
        assert fired[rule_id]["indicator"] == indicator
    for rule_id in case.absent:
        assert rule_id not in fired, f"{rule_id} fired: {fired[rule_id]['summary']}"


def test_every_rule_id_has_a_firing_case_and_a_near_miss(pipeline: Pipeline) -> None:
    rule_ids = set(pipeline.knowledge.rulebook.ids) - {"patient-data-unverified"}
    fired = {rule for case in CASES for rule in case.fires}
    missed = {rule for case in CASES for rule in case.absent}
    assert rule_ids <= fired
    assert rule_ids <= missed | {"opioid-history-unverified"}


def test_today_is_counted_in_the_configured_time_zone() -> None:
    """20:00 in New York on 21 November is already 22 November in UTC: the washout must use New York's day."""
    evening = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-19, days_supply=10))  # supply ended 2026-11-12
    settings = open_settings()

    def in_zone(zone: str) -> Pipeline:
        return Pipeline.from_settings(settings, calendar=Calendar(ZoneInfo(zone), lambda: evening))

    assert "opioid-recent" in fired_cards(in_zone("America/New_York"), body)  # 21 Nov there: 9 days, not 10
    assert "opioid-recent" not in fired_cards(in_zone("UTC"), body)
