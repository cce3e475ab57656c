"""Planned surgery: which orders, appointments and procedures are surgery, when, and the hold per form."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.facts.procedures import PROCEDURES
from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of


def soon(*resources: Any, order: Any = None) -> bool:
    return bool(fact(facts_of(*resources, order=order), "procedure_planned_soon"))


@pytest.mark.parametrize(
    ("cpt", "surgery"),
    [("47562", True), ("10004", True), ("69990", True), ("00840", True), ("99213", False), ("70450", False)],
)
def test_cpt_surgery_and_anaesthesia_codes_are_surgery_by_range(cpt: str, surgery: bool) -> None:
    order = c.surgery_order("Procedure", in_days=3, cpt=cpt)
    order["category"] = [{"text": "Outpatient"}]  # the code alone decides
    assert soon(order) is surgery


def test_a_cpt_code_under_its_oid_is_read_too() -> None:
    order = c.surgery_order("Procedure", in_days=3, cpt="27447")
    order["category"] = []
    order["code"]["coding"][0]["system"] = "urn:oid:2.16.840.1.113883.6.12"
    assert soon(order) is True


@pytest.mark.parametrize(
    ("description", "extra", "surgery"),
    [
        ("Right total knee arthroplasty, OR 4", {}, True),
        ("Wisdom teeth extraction", {}, True),
        ("Excision of skin lesion", {}, True),
        ("Appointment", {"appointmentType": {"text": "Surgery - inpatient admission"}}, True),
        ("Surgical consult", {}, False),
        ("Follow-up", {"serviceCategory": [{"text": "General surgery"}]}, False),
        ("Physical therapy", {}, False),
        ("Colonoscopy screening", {}, False),
    ],
)
def test_an_appointment_is_surgery_by_its_words(
    description: str, extra: dict[str, Any], surgery: bool
) -> None:
    assert soon(c.appointment(description, in_days=2, **extra)) is surgery


@pytest.mark.parametrize(
    ("status", "counts"), [("booked", True), ("proposed", True), ("pending", True), ("cancelled", False)]
)
def test_only_appointments_still_to_come_count(status: str, counts: bool) -> None:
    assert soon(c.appointment("Laparoscopic appendectomy", in_days=2, status=status)) is counts


def test_a_procedure_in_preparation_counts_and_a_completed_one_does_not() -> None:
    planned = c.procedure(c.SNOMED, "38102005", "Cholecystectomy", status="preparation", performed=2)
    done = c.procedure(c.SNOMED, "38102005", "Cholecystectomy", status="completed", performed=2)
    assert soon(planned) is True and soon(done) is False


def test_surgery_in_the_past_is_not_planned() -> None:
    assert soon(c.surgery_order(in_days=-1)) is False
    assert soon(c.surgery_order(in_days=0)) is True


@pytest.mark.parametrize(
    ("order", "inside", "outside"),
    [
        (None, 7, 8),  # oral: TIP 63
        (c.xr_order(), 30, 31),  # injection: ASAM 2015
        (c.ldn_order(), 3, 4),  # low-dose: project policy
    ],
)
def test_the_hold_depends_on_the_form(order: Any, inside: int, outside: int) -> None:
    assert soon(c.surgery_order(in_days=inside), order=order) is True
    assert soon(c.surgery_order(in_days=outside), order=order) is False


def test_the_date_may_come_from_a_period_a_timing_or_a_requested_period() -> None:
    period = c.surgery_order(in_days=None, occurrencePeriod={"start": c.day(4)})
    timing = c.surgery_order(in_days=None, occurrenceTiming={"event": [c.day(4)]})
    requested = c.appointment("Hip replacement", in_days=40, requestedPeriod=[{"start": c.day(4)}])
    del requested["start"]
    assert soon(period) and soon(timing) and soon(requested)


def test_undated_surgery_is_its_own_fact_and_the_card_names_it() -> None:
    facts = facts_of(c.surgery_order("Inguinal hernia repair", in_days=None, cpt="49505"))
    assert fact(facts, "procedure_planned_soon") is False and fact(facts, "procedure_planned_undated") is True
    assert facts.placeholder("procedure_names", facts.orders[0]) == "Inguinal hernia repair"


def test_the_card_gives_the_soonest_date_and_each_procedure_with_its_reference() -> None:
    later, sooner = c.surgery_order("Hernia repair", in_days=6), c.surgery_order("Appendectomy", in_days=2)
    facts = facts_of(later, sooner)
    order = facts.orders[0]
    assert facts.placeholder("procedure_date", order) == "24 Nov 2026"  # today is 22 Nov 2026
    assert facts.placeholder("procedure_hold", order) == "7"
    lines = facts.evidence("planned_procedures", order)
    assert lines[0].startswith("Appendectomy, planned 24 Nov 2026 (ServiceRequest/")
    assert len(facts.of(PROCEDURES).upcoming) == 2


# --- review of issue 11: what is not surgery, and dates that are not one day ------------------------------


@pytest.mark.parametrize(
    "not_surgery",
    [
        c.surgery_order("Venipuncture", in_days=2, cpt="36415", category=[]),
        c.surgery_order("Arthrocentesis, major joint", in_days=2, cpt="20610", category=[]),
        c.appointment("Lab phlebotomy", in_days=3),
        c.appointment("Nicotine replacement therapy group", in_days=3),
        c.appointment("Colostomy nurse - stoma bag change", in_days=3),
    ],
)
def test_what_is_not_an_operation(not_surgery: Any) -> None:
    facts = facts_of(not_surgery)
    assert (
        fact(facts, "procedure_planned_soon") is False and fact(facts, "procedure_planned_undated") is False
    )


@pytest.mark.parametrize(
    "when",
    [
        {"occurrenceDateTime": "2026-11"},  # the month of today (22 Nov): it may be this week
        {"occurrencePeriod": {"start": "2026-11-20", "end": "2026-11-30"}},  # a window already open
    ],
)
def test_a_month_or_an_open_window_is_not_missed(when: dict[str, Any]) -> None:
    order = c.surgery_order(in_days=None) | when
    assert soon(order) is True


def test_a_cpt_code_with_a_non_ascii_digit_is_not_surgery_and_not_a_crash() -> None:
    order = c.surgery_order("Procedure", in_days=3, cpt="4756²", category=[])
    assert soon(order) is False
