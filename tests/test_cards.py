"""Cards as an EHR and a clinician see them: shape, explanations, valid FHIR suggestions, noise control.

The pipeline is run directly (no Flask); tests/api covers the HTTP layer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.errors import CdsError
from cds_service.pipeline import Pipeline
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order, sandbox_hook_bodies
from tests.support import answer, by_rule
from tests.support.rule_cases import CASES, READY

REFERENCE = re.compile(
    r"\b(MedicationRequest|MedicationDispense|MedicationStatement|MedicationAdministration|"
    r"Condition|AllergyIntolerance|Observation)/[A-Za-z0-9.-]+"
)


def cards(pipeline: Pipeline, body: dict[str, Any], hook: str = "order-select") -> list[dict[str, Any]]:
    assert body["hook"] == hook
    return answer(pipeline, body)


def all_cards(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [card for case in CASES for card in cards(pipeline, case.body, case.hook)]


def test_every_suggested_resource_is_valid_fhir(pipeline: Pipeline) -> None:
    checked = 0
    for card in all_cards(pipeline):
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "delete":
                    assert re.fullmatch(r"MedicationRequest/[\w.-]+", action["resourceId"])
                    continue
                resource = action["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                checked += 1
    assert checked > 30


def test_cards_name_their_rule_and_source_once_and_link_to_the_rule_page(pipeline: Pipeline) -> None:
    for card in all_cards(pipeline):
        topic = card["source"]["topic"]
        assert topic["system"] == "http://naltrexone-cds.org/fhir/CodeSystem/rule"
        assert card["source"]["url"] not in card["detail"]  # the EHR shows the source; the detail does not
        assert card["links"] == [
            {
                "label": f"{topic['display']}: details and sources",
                "url": f"http://127.0.0.1:8000/rules/{topic['code']}",
                "type": "absolute",
            }
        ]
        assert card["detail"].startswith("**Why:** ") and "\n\n**Do:** " in card["detail"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] == "at-most-one"
        assert 1 <= len(card.get("overrideReasons", [])) <= 5


@pytest.mark.parametrize(
    ("rule_id", "resources", "reference_type"),
    [
        ("opioid-active", [c.medication_request(c.OXYCODONE, authored=-3)], "MedicationRequest"),
        ("opioid-recent", [c.dispense(c.OXYCODONE, handed=-10, days_supply=7)], "MedicationDispense"),
        ("uds-positive", [c.urine_opiates("positive", when=-2)], "Observation"),
        ("hypersensitivity", [c.allergy(c.rx("7243", "naltrexone"))], "AllergyIntolerance"),
        (
            "opioid-withdrawal",
            [c.condition(c.ICD10, "F11.23", "Opioid dependence with withdrawal", onset=-2)],
            "Condition",
        ),
    ],
)
def test_the_triggering_record_is_named_with_its_reference(
    pipeline: Pipeline, rule_id: str, resources: list[dict[str, Any]], reference_type: str
) -> None:
    card = by_rule(cards(pipeline, c.scenario(*resources, c.oud())))[rule_id]
    expected = f"{reference_type}/{resources[0]['id']}"
    assert expected in card["detail"]


def test_opioid_active_card_explains_and_offers_to_cancel(pipeline: Pipeline) -> None:
    oxy = c.medication_request(c.OXYCODONE, authored=-3, supply_days=30)
    card = by_rule(cards(pipeline, c.scenario(oxy, *READY)))["opioid-active"]
    assert card["summary"] == "Do not start naltrexone: oxycodone in current use."
    supply = "active, ordered 19 Nov 2026, supply to 18 Dec 2026"
    assert f"- oxycodone 5 mg, {supply} (MedicationRequest/{oxy['id']})" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft naltrexone order",
            "resourceId": "MedicationRequest/draft-1",
        }
    ]


def test_opioid_recent_says_when_the_start_may_be_and_moves_it(pipeline: Pipeline) -> None:
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-10, days_supply=7), *READY)
    card = by_rule(cards(pipeline, body))["opioid-recent"]
    # supply ended 18 Nov (day -4); 10 opioid-free days: not before 28 Nov
    assert card["summary"] == "Do not start naltrexone before 28 Nov 2026: last oxycodone on 18 Nov 2026."
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    assert action["resource"]["id"] == "draft-1"
    assert action["resource"]["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] == c.day(6)
    assert action["resource"]["dispenseRequest"]["validityPeriod"]["start"] == c.day(6)


def test_methadone_needs_fourteen_days(pipeline: Pipeline) -> None:
    body = c.scenario(c.statement(c.METHADONE, status="completed", start=-90, end=-5), *READY)
    assert "before 1 Dec 2026" in by_rule(cards(pipeline, body))["opioid-recent"]["summary"]


def test_test_dose_updates_the_draft_and_creates_the_follow_on(pipeline: Pipeline) -> None:
    card = by_rule(cards(pipeline, c.scenario(*READY)))["test-dose"]
    update, create = card["suggestions"][0]["actions"]
    assert update["type"] == "update" and update["resource"]["id"] == "draft-1"
    dose = update["resource"]["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseQuantity"]["value"] == 25
    assert dose["timing"]["repeat"]["count"] == 1
    assert create["type"] == "create" and "id" not in create["resource"]
    follow_on = create["resource"]["dosageInstruction"][0]
    assert follow_on["doseAndRate"][0]["doseQuantity"]["value"] == 50
    assert follow_on["timing"]["repeat"]["boundsPeriod"]["start"] == c.day(1)
    assert "count" not in follow_on["timing"]["repeat"]


def test_ldn_suggestions_set_the_step_bedtime_and_compounded_form(pipeline: Pipeline) -> None:
    order = c.ldn_order(3, when=["MORN"], text="naltrexone 3 mg SR capsule")
    rules = by_rule(cards(pipeline, c.scenario(order=order)))
    step = rules["ldn-titration"]["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]
    assert step["doseAndRate"][0]["doseQuantity"]["value"] == 1.5 and step["timing"]["repeat"]["when"] == [
        "HS"
    ]
    bedtime = rules["ldn-bedtime"]["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]
    assert bedtime["timing"]["repeat"]["when"] == ["HS"]
    form = rules["ldn-formulation"]["suggestions"][0]["actions"][0]["resource"]["medicationCodeableConcept"]
    assert "compounded immediate-release" in form["text"]


def test_noise_control_drops_guidance_when_a_contraindication_fires(pipeline: Pipeline) -> None:
    body = c.scenario(c.oud(), c.medication_request(c.OXYCODONE, authored=-2))
    rules = by_rule(cards(pipeline, body))
    assert "opioid-active" in rules
    for guidance in ("test-dose", "naloxone-challenge-needed", "naloxone-rescue", "lft-needed", "uds-needed"):
        assert guidance not in rules
    without = by_rule(cards(pipeline, c.scenario(c.oud())))
    assert {"test-dose", "naloxone-rescue", "lft-needed", "uds-needed"} <= set(without)


def test_order_sign_returns_warning_and_critical_only(pipeline: Pipeline) -> None:
    select = cards(pipeline, c.scenario(c.oud()))
    sign = cards(pipeline, c.scenario(c.oud(), hook="order-sign"), hook="order-sign")
    assert any(card["indicator"] == "info" for card in select)
    assert sign and all(card["indicator"] in ("warning", "critical") for card in sign)


def test_cards_are_sorted_critical_warning_info_with_one_per_rule(pipeline: Pipeline) -> None:
    second = naltrexone_order("draft-2")
    body = c.scenario(
        c.allergy(c.rx("7243", "naltrexone")),
        c.oud(),
        drafts=[second],
        selections=["MedicationRequest/draft-1", "MedicationRequest/draft-2"],
    )
    result = cards(pipeline, body)
    ranks = [{"critical": 0, "warning": 1, "info": 2}[card["indicator"]] for card in result]
    assert ranks == sorted(ranks)
    codes = [card["source"]["topic"]["code"] for card in result]
    assert len(codes) == len(set(codes))
    allergy_card = by_rule(result)["hypersensitivity"]
    assert "draft-1" in allergy_card["detail"] and "draft-2" in allergy_card["detail"]
    assert len(allergy_card["suggestions"]) == 2  # cancel each order


def test_order_select_reviews_only_the_selected_order(pipeline: Pipeline) -> None:
    opioid = c.opioid_order()
    body = c.scenario(
        c.administration(c.VIVITROL, given=-5), drafts=[opioid], selections=["MedicationRequest/draft-1"]
    )
    assert "opioid-blockade" not in by_rule(cards(pipeline, body))
    body["context"]["selections"] = ["MedicationRequest/opioid-1"]
    assert set(by_rule(cards(pipeline, body))) == {"opioid-blockade"}


def test_unavailable_data_is_never_read_as_safe(pipeline: Pipeline) -> None:
    failure = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    body = c.scenario(*READY, prefetch_override={"medicationStatements": failure, "allergies": failure})
    rules = by_rule(cards(pipeline, body))
    assert rules["opioid-history-unverified"]["indicator"] == "warning"
    assert rules["patient-data-unverified"]["indicator"] == "warning"
    assert "allergies" in rules["patient-data-unverified"]["summary"]


def test_an_unidentifiable_medication_in_the_history_is_flagged(pipeline: Pipeline) -> None:
    unknown = c.medication_request({"text": "x"}, authored=-2)
    unknown.pop("medicationCodeableConcept")
    unknown["medicationReference"] = {"reference": "Medication/not-sent"}
    rules = by_rule(cards(pipeline, c.scenario(unknown, *READY)))
    assert f"MedicationRequest/{unknown['id']}" in rules["opioid-history-unverified"]["detail"]


def test_unrelated_orders_get_no_cards_and_need_no_prefetch(pipeline: Pipeline) -> None:
    amoxicillin = naltrexone_order(
        medicationCodeableConcept=c.rx("308182", "amoxicillin 250 MG Oral Capsule")
    )
    body = c.scenario(order=amoxicillin)
    body["prefetch"] = {}
    assert cards(pipeline, body) == []


def _sandbox_naltrexone_request(hook: str) -> dict[str, Any]:
    return next(
        body
        for body in sandbox_hook_bodies(hook)
        if "medicationCodeableConcept" in body["context"]["draftOrders"]["entry"][0]["resource"]
    )


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_the_real_sandbox_request_for_pat1(pipeline: Pipeline, hook: str) -> None:
    """The sandbox's own request: pat1's fentanyl patch, still marked active, arrives under another
    service's prefetch key ("meds"); this service's keys are absent and fhirServer is named."""
    rules = by_rule(cards(pipeline, _sandbox_naltrexone_request(hook), hook))
    assert rules["opioid-active"]["indicator"] == "critical"
    assert "MedicationRequest/medrx0327" in rules["opioid-active"]["detail"]
    assert "still marked active" in rules["opioid-active"]["detail"]
    assert rules["opioid-history-unverified"]["indicator"] == "warning"  # its own keys were not fetched


def test_the_sandbox_request_without_fhir_server_is_412(pipeline: Pipeline) -> None:
    body = _sandbox_naltrexone_request("order-select")
    del body["fhirServer"]
    with pytest.raises(CdsError) as refused:
        pipeline.run(pipeline.service_for_hook("order-select"), body)
    assert refused.value.status == 412
    assert "medicationRequests" in refused.value.to_operation_outcome()["issue"][0]["diagnostics"]
