"""Every rule id of the contract: a case where it fires (right indicator, right suggestion) and a near miss.

Each case is a complete CDS Hooks request run through the real pipeline (validate -> gather -> facts ->
durable-rules -> cards) as of tests.conftest.NOW (2026-11-22).
"""

from __future__ import annotations

import pytest
from flask import Flask

from cds_service.knowledge.rulebook import RuleBook
from fhir_fixtures import clinical as c
from tests.support import assert_valid, open_settings
from tests.support.rule_cases import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule(case: Case, app: Flask) -> None:
    body = case.body
    response = app.test_client().post(f"/cds-services/naltrexone-{case.hook}", json=body)
    assert response.status_code == 200, response.json
    assert_valid("CdsResponse", response.json)
    fired = {card["source"]["topic"]["code"]: card for card in response.json["cards"]}
    for rule_id, indicator in case.fires.items():
        assert rule_id in fired, f"{rule_id} did not fire; got {sorted(fired)}"
        assert fired[rule_id]["indicator"] == indicator
    for rule_id in case.absent:
        assert rule_id not in fired, f"{rule_id} fired: {fired[rule_id]['summary']}"


def test_every_rule_id_has_a_firing_case_and_a_near_miss(app: Flask) -> None:
    rulebook: RuleBook = app.extensions["naltrexone_cds"].pipeline.knowledge.rulebook
    fired = {rule for case in CASES for rule in case.fires}
    missed = {rule for case in CASES for rule in case.absent}
    assert set(rulebook.ids) - {"patient-data-unverified"} <= fired
    assert set(rulebook.ids) - {"patient-data-unverified"} <= missed | {"opioid-history-unverified"}


def test_today_is_counted_in_the_configured_time_zone() -> None:
    """20:00 in New York on 21 November is already 22 November in UTC: the washout must use New York's day."""
    from datetime import UTC, datetime

    from cds_service import create_app

    evening = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-19, days_supply=10))  # supply ended 2026-11-12
    try:
        local = create_app(open_settings(timezone="America/New_York"), clock=lambda: evening)
        response = local.test_client().post("/cds-services/naltrexone-order-select", json=body)
        codes = {card["source"]["topic"]["code"] for card in response.json["cards"]}
        assert "opioid-recent" in codes  # 21 Nov in New York: 9 days, not yet 10
    finally:
        create_app(open_settings())  # back to UTC for the other tests (the zone is per process)
    utc = create_app(open_settings(), clock=lambda: evening)
    codes = {
        card["source"]["topic"]["code"]
        for card in utc.test_client().post("/cds-services/naltrexone-order-select", json=body).json["cards"]
    }
    assert "opioid-recent" not in codes
