"""Opioid exposure: current use, the opioid-free interval and its earliest start, this session's drafts."""

from __future__ import annotations

from datetime import date

from cds_service.facts.opioid_exposure import OPIOIDS
from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of


def test_a_dispense_whose_supply_covers_today_is_current_use() -> None:
    facts = facts_of(c.dispense(c.OXYCODONE, handed=-5, days_supply=10))
    assert fact(facts, "opioid_active") is True
    assert facts.of(OPIOIDS).earliest_start is None


def test_the_earliest_start_is_ten_days_after_the_last_short_acting_supply() -> None:
    facts = facts_of(c.dispense(c.OXYCODONE, handed=-10, days_supply=7))  # last day: -4
    exposure = facts.of(OPIOIDS)
    assert fact(facts, "opioid_within_washout") is True and fact(facts, "opioid_active") is False
    assert exposure.earliest_start == date(2026, 11, 28)  # 2026-11-18 + 10
    assert facts.placeholder("earliest_start", facts.orders[0]) == "28 Nov 2026"


def test_after_methadone_the_interval_is_fourteen_days_and_long_acting() -> None:
    facts = facts_of(c.statement(c.METHADONE, status="completed", start=-90, end=-12))
    assert fact(facts, "opioid_recent_long_acting") is True
    assert facts.of(OPIOIDS).earliest_start == date(2026, 11, 24)


def test_an_opioid_drafted_in_the_same_session_counts_for_the_naltrexone_order_only() -> None:
    facts = facts_of(drafts=[c.opioid_order()])
    assert fact(facts, "opioid_in_draft_orders") is True
    assert facts.evidence("draft_opioids", facts.orders[0])[0].endswith(
        "ordered in this session (MedicationRequest/opioid-1)"
    )


def test_one_dose_given_in_care_without_opioid_use_disorder_is_a_single_dose() -> None:
    morphine = ("1734634", "morphine sulfate 4 MG/ML Injectable Solution")
    assert fact(facts_of(c.administration(morphine, given=-3)), "opioid_recent_single_dose") is True
    with_oud = facts_of(c.administration(morphine, given=-3), c.oud())
    assert fact(with_oud, "opioid_recent_single_dose") is False
    two_doses = facts_of(c.administration(morphine, given=-3), c.administration(morphine, given=-5))
    assert fact(two_doses, "opioid_recent_single_dose") is False
