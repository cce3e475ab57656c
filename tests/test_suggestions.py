"""The FHIR actions a card offers, built directly from derived facts (no Flask, no engine)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.cdshooks import Suggestion
from cds_service.pipeline import default_knowledge
from cds_service.suggestions import BUILDERS, SuggestionContext, normalised_draft
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import PATIENT_ID, naltrexone_order
from tests.support.derivations import facts_of


def offered(name: str, *resources: Any, **scenario: Any) -> Suggestion | None:
    facts = facts_of(*resources, **scenario)
    context = SuggestionContext(facts.orders[0], facts, PATIENT_ID, "Practitioner/prac-1", "enc-1")
    return BUILDERS[name](context)


def resources_of(suggestion: Suggestion | None) -> list[dict[str, Any]]:
    assert suggestion is not None
    return [dict(action.resource) for action in suggestion.actions if action.resource is not None]


def oral_order(mg: float) -> dict[str, Any]:
    order = naltrexone_order()
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg
    return order


def dose_mg(resource: dict[str, Any]) -> float:
    value: float = resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
    return value


def test_every_builder_is_named_by_a_rule_and_every_named_builder_exists() -> None:
    rules = default_knowledge().rulebook.rules
    named = {name for rule in rules for variant in rule.variants for name in variant.suggestions}
    assert named == set(BUILDERS)


def test_non_r4_draft_shapes_are_repaired_before_they_are_sent_back() -> None:
    draft = {
        "resourceType": "MedicationRequest",
        "category": {"text": "outpatient"},
        "dosageInstruction": [
            {"doseQuantity": {"value": 50, "unit": "mg"}},
            {"doseAndRate": {"rateRatio": {}}},
        ],
    }
    repaired = normalised_draft(draft)
    assert repaired["category"] == [{"text": "outpatient"}]
    assert repaired["dosageInstruction"][0] == {
        "doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg"}}]
    }
    assert repaired["dosageInstruction"][1]["doseAndRate"] == [{"rateRatio": {}}]
    assert draft["category"] == {"text": "outpatient"}  # the request itself is not modified


def test_the_test_dose_is_one_tablet_without_refills_and_the_daily_order_keeps_the_supply() -> None:
    prescribed = naltrexone_order(
        dispenseRequest={
            "quantity": {"value": 30, "unit": "tablet"},
            "numberOfRepeatsAllowed": 2,
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            },
        }
    )
    first, follow_on = resources_of(offered("test-dose", c.oud(), order=prescribed))
    assert dose_mg(first) == 25
    assert first["dispenseRequest"] == {
        "quantity": {"value": 1, "unit": "tablet"},
        "numberOfRepeatsAllowed": 0,
    }
    assert follow_on["dispenseRequest"] == prescribed["dispenseRequest"]
    assert first["id"] == "draft-1"
    assert first["dosageInstruction"][0]["timing"]["repeat"]["count"] == 1
    assert dose_mg(follow_on) == 50
    assert "id" not in follow_on and follow_on["status"] == "draft"
    assert "count" not in follow_on["dosageInstruction"][0]["timing"]["repeat"]
    first_day = first["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    next_day = follow_on["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    assert (first_day, next_day) == (c.day(0), c.day(1))


def test_the_earliest_start_moves_the_order_and_its_validity() -> None:
    (moved,) = resources_of(offered("move-start", c.dispense(c.OXYCODONE, handed=-5, days_supply=3)))
    start = moved["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    assert start == moved["dispenseRequest"]["validityPeriod"]["start"]
    assert start > c.day(0)


def test_no_start_date_to_move_to_means_no_suggestion() -> None:
    assert offered("move-start") is None


@pytest.mark.parametrize("name", ["order-naloxone-challenge", "prescribe-naloxone"])
def test_naloxone_is_never_suggested_to_a_patient_allergic_to_it(name: str) -> None:
    assert offered(name) is not None
    assert offered(name, c.allergy(c.rx("7242", "naloxone"))) is None


def test_service_requests_name_the_patient_requester_and_encounter() -> None:
    (panel,) = resources_of(offered("order-liver-panel"))
    assert panel["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert panel["requester"] == {"reference": "Practitioner/prac-1"}
    assert panel["encounter"] == {"reference": "Encounter/enc-1"}


@pytest.mark.parametrize(
    ("order", "expected_mg"), [(c.xr_order(190), 380), (c.ldn_order(6), 1.5), (oral_order(100), 50)]
)
def test_the_standard_dose_depends_on_the_product(order: dict[str, Any], expected_mg: float) -> None:
    (changed,) = resources_of(offered("standard-dose", order=order))
    assert dose_mg(changed) == expected_mg


def test_every_builder_returns_valid_r4_resources() -> None:
    for name in BUILDERS:
        for order in (oral_order(50), c.ldn_order(3), c.xr_order()):
            suggestion = offered(name, c.dispense(c.OXYCODONE, handed=-3, days_supply=2), order=order)
            for resource in resources_of(suggestion) if suggestion else []:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
