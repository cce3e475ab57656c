"""The orders: kinds, regimens, the low-dose titration plan, and triage before any data is gathered."""

from __future__ import annotations

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
    assert "beyond the next step" in facts.placeholder("ldn_plan_summary", facts.orders[0])


def test_triage_needs_no_patient_data_for_another_drug() -> None:
    knowledge = default_knowledge()
    other = naltrexone_order(medicationCodeableConcept={"text": "amoxicillin 500 mg capsule"})
    request = parse_hook_request(SELECT, c.scenario(order=other))
    assert not identify_orders(request, knowledge.terminology, knowledge.policy).needs_review
    request = parse_hook_request(SELECT, c.scenario())
    assert identify_orders(request, knowledge.terminology, knowledge.policy).needs_review
