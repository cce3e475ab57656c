"""Naltrexone already taken: continuing it is not a new start; a second product on top is a duplicate."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order
from tests.support.derivations import fact, facts_of

TABLET = ("1483744", "naltrexone hydrochloride 50 MG Oral Tablet")


def twenty_five_mg_once() -> dict[str, Any]:
    order = naltrexone_order("test-dose-1")
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 25
    order["dosageInstruction"][0]["timing"]["repeat"] = {"count": 1}
    return order


@pytest.mark.parametrize(
    ("record", "continuing"),
    [
        ([c.dispense(TABLET, handed=-20, days_supply=30)], True),  # supply covers today
        ([c.dispense(TABLET, handed=-32, days_supply=30)], True),  # ended 2 days ago: within the grace
        ([c.dispense(TABLET, handed=-40, days_supply=30)], False),  # ended 10 days ago: a restart
        ([c.administration(c.VIVITROL, given=-21)], True),  # the monthly injection, due now
        ([c.administration(c.VIVITROL, given=-35)], True),  # a week late
        ([c.administration(c.VIVITROL, given=-36)], False),
        ([c.statement(c.CONTRAVE)], False),  # naltrexone/bupropion is no blockade
        ([], False),
    ],
)
def test_a_patient_already_on_naltrexone_is_continuing(record: list[Any], continuing: bool) -> None:
    assert fact(facts_of(*record), "naltrexone_continuing") is continuing


def test_the_test_dose_in_the_same_session_is_a_planned_start_not_a_continuation() -> None:
    facts = facts_of(c.oud(), drafts=[twenty_five_mg_once()], hook="order-sign")
    for order in (0, 1):  # the 50 mg daily follow-on and the test dose itself
        assert fact(facts, "test_dose_in_session", order=order) is True
        assert fact(facts, "naltrexone_continuing", order=order) is False


def test_25_mg_daily_is_not_the_test_dose() -> None:
    daily = twenty_five_mg_once()
    daily["dosageInstruction"][0]["timing"]["repeat"] = {"frequency": 1, "period": 1, "periodUnit": "d"}
    facts = facts_of(c.oud(), order=daily)
    assert fact(facts, "regimen") == "unrecognized" and fact(facts, "test_dose_in_session") is False


@pytest.mark.parametrize(
    "record",
    [
        # still marked active, its supply ran out 11 and 301 days ago: nothing shows naltrexone today
        c.medication_request(TABLET, authored=-40, supply_days=30),
        c.medication_request(TABLET, authored=-330, supply_days=30),
        c.statement(TABLET, start=-700),  # an open-ended statement
        c.medication_request(TABLET, authored=-10, supply_days=30, status="on-hold"),
        # an injection ordered or dispensed, never recorded as given
        c.medication_request(c.VIVITROL, authored=-20, supply_days=None),
        c.dispense(c.VIVITROL, handed=-20, days_supply=28),
    ],
)
def test_what_does_not_show_the_patient_on_naltrexone_today(record: Any) -> None:
    facts = facts_of(c.oud(), record)
    assert fact(facts, "naltrexone_continuing") is False
    assert fact(facts, "naltrexone_duplicate") is False


@pytest.mark.parametrize(
    ("record", "order", "duplicate"),
    [
        ([c.administration(c.VIVITROL, given=-10)], None, True),  # oral while the injection blocks
        ([c.administration(c.VIVITROL, given=-10)], c.ldn_order(), True),
        ([c.administration(c.VIVITROL, given=-31)], None, False),  # the blockade is over
        ([c.administration(c.VIVITROL, given=-24)], c.xr_order(), False),  # the next injection
        ([c.statement(c.CONTRAVE)], None, True),  # naltrexone on top of naltrexone/bupropion
        ([c.dispense(TABLET, handed=-20, days_supply=30)], None, False),  # a refill, not a duplicate
    ],
)
def test_a_second_naltrexone_product_on_top_of_one_in_use(
    record: list[Any], order: Any, duplicate: bool
) -> None:
    facts = facts_of(*record, order=order)
    assert fact(facts, "naltrexone_duplicate") is duplicate
    if duplicate:
        assert facts.evidence("naltrexone_in_use", facts.orders[0])
