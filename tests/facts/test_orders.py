"""The orders: kinds, regimens, the low-dose titration plan, and triage before any data is gathered."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds_service.facts.orders import identify_orders
from cds_service.knowledge.services import load_services
from cds_service.pipeline import default_knowledge
from cds_service.resources import default_rules_dir
from cds_service.validate import parse_hook_request
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order
from tests.support.derivations import fact, facts_of

SELECT = load_services(default_rules_dir())["naltrexone-order-select"]


@pytest.mark.parametrize(
    ("order", "kind", "regimen"),
    [
        (naltrexone_order(), "naltrexone-oral", "50-mg-daily"),
        (c.ldn_order(3.0), "naltrexone-low-dose", "low-dose"),
        (c.xr_order(), "naltrexone-xr", "extended-release-monthly"),
        (c.xr_order(190), "naltrexone-xr", "unrecognized"),
    ],
)
def test_kind_and_regimen(order: dict[str, object], kind: str, regimen: str) -> None:
    facts = facts_of(order=order)
    assert (fact(facts, "kind"), fact(facts, "regimen")) == (kind, regimen)


def test_a_low_dose_step_beyond_the_plan() -> None:
    earlier = c.medication_request(
        {"text": "naltrexone 1.5 mg capsule (compounded)"}, authored=-3, supply_days=30
    )
    earlier["dosageInstruction"] = c.ldn_order(1.5)["dosageInstruction"]
    facts = facts_of(earlier, order=c.ldn_order(3.0))
    assert fact(facts, "ldn_on_plan") is False
    assert facts.placeholder("ldn_plan_summary", facts.orders[0]).startswith(
        "Step low-dose naltrexone to 1.5 mg, not 3 mg"
    )


def test_triage_needs_no_patient_data_for_another_drug() -> None:
    knowledge = default_knowledge()
    other = naltrexone_order(medicationCodeableConcept={"text": "amoxicillin 500 mg capsule"})
    request = parse_hook_request(SELECT, c.scenario(order=other))
    assert not identify_orders(request, knowledge.terminology, knowledge.policy).needs_review
    request = parse_hook_request(SELECT, c.scenario())
    assert identify_orders(request, knowledge.terminology, knowledge.policy).needs_review


def with_dose(order: dict[str, Any], value: Any, unit: str, code: str | None = None) -> dict[str, Any]:
    order = copy.deepcopy(order)
    quantity: dict[str, Any] = {"value": value, "unit": unit}
    if code:
        quantity |= {"system": "http://unitsofmeasure.org", "code": code}
    order["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": quantity}]
    return order


def ldn_solution(strength: dict[str, Any] | None, name: str = "Naltrexone oral solution (compounded)") -> Any:
    medication: dict[str, Any] = {
        "resourceType": "Medication",
        "id": "solution",
        "code": {"text": name},
        "ingredient": [{"itemCodeableConcept": c.rx("7243", "naltrexone")}],
    }
    if strength:
        medication["ingredient"][0]["strength"] = strength
    order = c.ldn_order(4.5)
    del order["medicationCodeableConcept"]
    order["contained"] = [medication]
    order["medicationReference"] = {"reference": "#solution"}
    return order


MG_PER_ML = {
    "numerator": {"value": 1, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
    "denominator": {"value": 1, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"},
}


@pytest.mark.parametrize(
    ("order", "dose_mg", "regimen"),
    [
        # the extended-release injection is ordered by the kit, the vial, the injection or its volume
        (with_dose(c.xr_order(), 1, "kit", "{kit}"), 380, "extended-release-monthly"),
        (with_dose(c.xr_order(), 1, "vial"), 380, "extended-release-monthly"),
        (with_dose(c.xr_order(), 1, "injection"), 380, "extended-release-monthly"),
        (with_dose(c.xr_order(), 1, "each"), 380, "extended-release-monthly"),
        (with_dose(c.xr_order(), 4, "mL", "mL"), 380, "extended-release-monthly"),
        (with_dose(c.xr_order(), 2, "kit"), 760, "unrecognized"),
        # a liquid in mL is read with its concentration: the ingredient's strength, or its name
        (with_dose(ldn_solution(MG_PER_ML), 4.5, "mL", "mL"), 4.5, "low-dose"),
        (with_dose(ldn_solution(None, "Naltrexone 5 mg/mL oral suspension"), 0.9, "mL"), 4.5, "low-dose"),
        (with_dose(ldn_solution(None, "Naltrexone 1 mg per mL solution"), 3, "ml"), 3, "low-dose"),
        (with_dose(c.ldn_order(), 4500, "mcg", "ug"), 4.5, "low-dose"),
    ],
)
def test_doses_in_the_units_orders_are_written_in(
    order: dict[str, Any], dose_mg: float, regimen: str
) -> None:
    facts = facts_of(order=order)
    assert fact(facts, "dose_mg") == dose_mg and fact(facts, "regimen") == regimen


@pytest.mark.parametrize(
    ("order", "sent"),
    [
        (with_dose(naltrexone_order(), 0, "mg", "mg"), "0 mg"),
        (with_dose(naltrexone_order(), -50, "mg", "mg"), "-50 mg"),
        (with_dose(naltrexone_order(), 5e7, "mg", "mg"), "50000000.0 mg"),
        (with_dose(naltrexone_order(), 1, "spoon"), "1 spoon"),
        (with_dose(ldn_solution(None), 4.5, "mL", "mL"), "4.5 mL with no concentration stated"),
    ],
)
def test_a_dose_that_cannot_be_read_is_said_with_what_was_sent(order: dict[str, Any], sent: str) -> None:
    facts = facts_of(order=order)
    assert fact(facts, "regimen") == "unrecognized" and fact(facts, "dose_mg") is None
    assert facts.placeholder("dose_problem", facts.orders[0]) == f"a dose that could not be read ({sent})"


def test_a_zero_period_is_not_daily() -> None:
    order = naltrexone_order()
    order["dosageInstruction"][0]["timing"]["repeat"] = {"frequency": 1, "period": 0, "periodUnit": "d"}
    facts = facts_of(order=order)
    assert fact(facts, "regimen") == "unrecognized"
    assert "could not be read: every 0 d" in facts.placeholder("order_dosing", facts.orders[0])


def test_an_increase_already_due_is_not_given_a_past_date() -> None:
    previous = c.medication_request(
        {"text": "naltrexone 1.5 mg capsule (compounded)"},
        authored=-30,
        supply_days=60,
        dosageInstruction=c.ldn_order(1.5)["dosageInstruction"],
    )
    facts = facts_of(previous, order=c.ldn_order(4.5))
    summary = facts.placeholder("ldn_plan_summary", facts.orders[0])
    assert "increase due now" in summary and "2026-" not in summary.split("increase")[-1]


def test_an_interval_of_centuries_is_unreadable_not_a_crash() -> None:
    order = naltrexone_order()
    order["dosageInstruction"][0]["timing"]["repeat"] = {"frequency": 1, "period": 1e306, "periodUnit": "a"}
    facts = facts_of(order=order)
    assert fact(facts, "regimen") == "unrecognized"


def test_an_injection_kit_is_380_mg_whatever_strength_its_name_gives() -> None:
    order = with_dose(c.xr_order(), 1, "kit")
    order["medicationCodeableConcept"] = {"text": "4 ML naltrexone 95 MG/ML Injectable Suspension [Vivitrol]"}
    assert fact(facts_of(order=order), "dose_mg") == 380


def test_a_zero_strength_product_is_a_dose_that_cannot_be_read() -> None:
    order = with_dose(c.ldn_order(), 1, "capsule")
    order["medicationCodeableConcept"] = {"text": "naltrexone 0 mg capsule (compounded)"}
    facts = facts_of(order=order)
    assert fact(facts, "regimen") == "unrecognized"
