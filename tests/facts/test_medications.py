"""What a medication is (classification, every opioid ingredient), how much and when (dosing), and
when the patient was last exposed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cds_service.facts.medications import (
    ProductClass,
    classify,
    dosing_of,
    exposures,
    medication_of,
)
from cds_service.fhir import parse_day
from cds_service.knowledge.terminology import load_terminology
from cds_service.resources import default_rules_dir
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import RXNORM
from tests.support.derivations import POLICY, TERMS
from tests.support.memory import resident_mb

TODAY = c.TODAY
RX = RXNORM


def product_of(resource: dict[str, Any], medications: dict[str, Any] | None = None) -> Any:
    return classify(medication_of(resource, medications or {}), TERMS)


def with_medication(medication: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "medicationCodeableConcept": medication}


# ---------------------------------------------------------------------------------- classification

CLASSIFY = [
    (
        "RxNorm naltrexone 50 mg tablet",
        with_medication(c.rx("1483744", "naltrexone hydrochloride 50 MG Oral Tablet")),
        ProductClass.NALTREXONE_ORAL,
    ),
    (
        "uncoded compounded low-dose naltrexone",
        with_medication({"text": "LDN 4.5mg caps (compounded)"}),
        ProductClass.NALTREXONE_ORAL,
    ),
    ("Vivitrol by RxNorm", with_medication(c.rx(*c.VIVITROL)), ProductClass.NALTREXONE_INJECTION),
    (
        "Vivitrol by name only",
        with_medication({"text": "Vivitrol 380 mg"}),
        ProductClass.NALTREXONE_INJECTION,
    ),
    (
        "NDC-only naltrexone tablet",
        with_medication({"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "68071-3654-3"}]}),
        ProductClass.NALTREXONE_ORAL,
    ),
    ("Contrave", with_medication(c.rx(*c.CONTRAVE)), ProductClass.NALTREXONE_BUPROPION),
    ("Embeda is an opioid", with_medication(c.rx(*c.EMBEDA)), ProductClass.OPIOID),
    ("Embeda by name only", with_medication({"text": "Embeda 20 mg/0.8 mg capsule"}), ProductClass.OPIOID),
    ("oxycodone by RxNorm", with_medication(c.rx(*c.OXYCODONE)), ProductClass.OPIOID),
    (
        "fentanyl patch by SNOMED display",
        with_medication(
            {
                "coding": [
                    {"system": c.SNOMED, "code": "333919005", "display": "Fentanyl 25micrograms/hour patch"}
                ]
            }
        ),
        ProductClass.OPIOID,
    ),
    (
        "Percocet by NDC display",
        with_medication(
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/ndc",
                        "code": "16590-619-30",
                        "display": "Percocet tablet",
                    }
                ]
            }
        ),
        ProductClass.OPIOID,
    ),
    (
        "Suboxone is an opioid, not a rescue naloxone",
        with_medication(c.rx(*c.BUPRENORPHINE_NALOXONE)),
        ProductClass.OPIOID,
    ),
    ("naloxone nasal spray", with_medication(c.rx(*c.NALOXONE_SPRAY)), ProductClass.NALOXONE_RESCUE),
    ("loperamide by name", with_medication({"text": c.LOPERAMIDE_TEXT}), ProductClass.ANTIDIARRHEAL_OPIOID),
    ("amoxicillin", with_medication(c.rx("308182", "amoxicillin 250 MG Oral Capsule")), ProductClass.OTHER),
]


@pytest.mark.parametrize(("name", "resource", "expected"), CLASSIFY, ids=[row[0] for row in CLASSIFY])
def test_classify(name: str, resource: dict[str, Any], expected: ProductClass) -> None:
    assert product_of(resource).product_class is expected


def test_medication_reference_to_a_contained_medication() -> None:
    order = {
        "resourceType": "MedicationRequest",
        "contained": [
            {"resourceType": "Medication", "id": "m1", "code": c.rx("1483744", "naltrexone 50 mg tab")}
        ],
        "medicationReference": {"reference": "#m1"},
    }
    assert product_of(order).product_class is ProductClass.NALTREXONE_ORAL


def test_medication_reference_to_a_medication_in_the_request() -> None:
    order = {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/abc"}}
    medication = {"resourceType": "Medication", "id": "abc", "code": c.rx(*c.VIVITROL)}
    assert product_of(order, {"abc": medication}).product_class is ProductClass.NALTREXONE_INJECTION


def test_medication_reference_resolved_by_its_display_when_not_sent() -> None:
    order = {
        "resourceType": "MedicationRequest",
        "medicationReference": {"reference": "Medication/x", "display": "oxyCODONE 5 mg tablet"},
    }
    assert product_of(order).product_class is ProductClass.OPIOID


def test_medication_reference_that_resolves_nowhere_is_unidentified() -> None:
    order = {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/x"}}
    assert product_of(order).product_class is ProductClass.UNIDENTIFIED


@pytest.mark.parametrize(
    ("ingredients", "expected"),
    [
        (["7052", "7243"], ProductClass.OPIOID),  # morphine + naltrexone
        (["42347", "7243"], ProductClass.NALTREXONE_BUPROPION),  # bupropion + naltrexone
        (["7243"], ProductClass.NALTREXONE_ORAL),
    ],
)
def test_medications_listing_their_ingredients(ingredients: list[str], expected: ProductClass) -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m",
        "ingredient": [
            {"itemCodeableConcept": {"coding": [{"system": RX, "code": code}]}} for code in ingredients
        ],
    }
    order = {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/m"}}
    assert product_of(order, {"m": medication}).product_class is expected


def test_long_acting_and_depot_opioids() -> None:
    assert product_of(with_medication(c.rx(*c.METHADONE))).long_acting
    assert product_of(with_medication(c.rx(*c.BUPRENORPHINE_NALOXONE))).long_acting
    assert not product_of(with_medication(c.rx(*c.OXYCODONE))).long_acting
    sublocade = product_of(with_medication(c.rx("1996184", "Sublocade 100 MG in 0.5 ML Prefilled Syringe")))
    assert sublocade.long_acting and sublocade.depot


# ---------------------------------------------------------------------------------- dosing


def dosing(order: dict[str, Any]) -> Any:
    return dosing_of(order, product_of(order), TERMS)


def naltrexone_with(dosage: dict[str, Any], medication: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": medication
        or c.rx("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"),
        "dosageInstruction": [dosage],
    }


DOSES = [
    ("mg", {"doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg"}}]}, 50.0),
    ("grams", {"doseAndRate": [{"doseQuantity": {"value": 0.05, "code": "g"}}]}, 50.0),
    ("micrograms", {"doseAndRate": [{"doseQuantity": {"value": 1500, "unit": "mcg"}}]}, 1.5),
    (
        "tablets x strength from the product",
        {"doseAndRate": [{"doseQuantity": {"value": 1, "code": "{pill}"}}]},
        50.0,
    ),
    ("half a tablet", {"doseAndRate": [{"doseQuantity": {"value": 0.5, "unit": "tablet"}}]}, 25.0),
    ("doseAndRate as one object", {"doseAndRate": {"doseQuantity": {"value": 50, "unit": "mg"}}}, 50.0),
    ("STU3 doseQuantity", {"doseQuantity": {"value": 100, "unit": "mg"}}, 100.0),
    (
        "range: its high end",
        {
            "doseAndRate": [
                {"doseRange": {"low": {"value": 25, "unit": "mg"}, "high": {"value": 50, "unit": "mg"}}}
            ]
        },
        50.0,
    ),
    ("free text", {"text": "take 4.5 mg by mouth at bedtime"}, 4.5),
    ("nothing", {"text": "as directed"}, None),
]


@pytest.mark.parametrize(("name", "dosage", "mg"), DOSES, ids=[row[0] for row in DOSES])
def test_dose_in_mg(name: str, dosage: dict[str, Any], mg: float | None) -> None:
    assert dosing(naltrexone_with(dosage)).dose_mg == mg


def test_tablet_count_times_a_medication_strength() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m",
        "code": {"text": "naltrexone capsule (compounded)"},
        "ingredient": [
            {
                "itemCodeableConcept": c.rx("7243", "naltrexone"),
                "strength": {
                    "numerator": {"value": 1.5, "unit": "mg"},
                    "denominator": {"value": 1, "unit": "capsule"},
                },
            }
        ],
    }
    order = {
        "resourceType": "MedicationRequest",
        "medicationReference": {"reference": "Medication/m"},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "capsule"}}]}],
    }
    product = classify(medication_of(order, {"m": medication}), TERMS)
    assert product.strength_mg == 1.5
    assert dosing_of(order, product, TERMS).dose_mg == 3.0


TIMINGS = [
    ("daily", {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}, 1.0, False),
    ("twice a day", {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, 0.5, False),
    ("every 2 days", {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}}, 2.0, False),
    ("every 4 weeks", {"repeat": {"frequency": 1, "period": 4, "periodUnit": "wk"}}, 28.0, False),
    ("monthly", {"repeat": {"period": 1, "periodUnit": "mo"}}, 30.0, False),
    ("BID code", {"code": {"coding": [{"code": "BID"}]}}, 0.5, False),
    (
        "bedtime by when HS",
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]}},
        1.0,
        True,
    ),
    ("bedtime by 22:00", {"repeat": {"timeOfDay": ["22:00:00"]}}, None, True),
    ("morning is not bedtime", {"repeat": {"when": ["MORN"], "timeOfDay": ["08:00:00"]}}, None, False),
    ("bedtime by code", {"code": {"coding": [{"code": "BED"}]}}, 1.0, True),
]


@pytest.mark.parametrize(("name", "timing", "interval", "bedtime"), TIMINGS, ids=[row[0] for row in TIMINGS])
def test_frequency_and_bedtime(
    name: str, timing: dict[str, Any], interval: float | None, bedtime: bool
) -> None:
    result = dosing(naltrexone_with({"timing": timing}))
    assert result.interval_days == interval
    assert result.bedtime is bedtime


def test_bedtime_from_the_dosage_text() -> None:
    assert dosing(naltrexone_with({"text": "1.5 mg qhs"})).bedtime


def test_route() -> None:
    im = {"route": {"coding": [{"system": c.SNOMED, "code": "78421000"}]}}
    assert dosing(naltrexone_with(im)).route == "intramuscular"
    assert dosing(naltrexone_with({"route": {"text": "oral"}})).route == "oral"
    assert dosing(naltrexone_with({})).route is None


@pytest.mark.parametrize(
    ("text", "extended"),
    [
        ("naltrexone 4.5 mg SR capsule", True),
        ("naltrexone 12 HR 3 MG tablet", True),
        ("naltrexone 3 mg extended-release", True),
        ("naltrexone 3 mg capsule", False),
    ],
)
def test_extended_release_formulation(text: str, extended: bool) -> None:
    assert product_of(with_medication({"text": text})).extended_release is extended


# ---------------------------------------------------------------------------------- exposures


def exposure(resource: dict[str, Any], policy: Any = POLICY) -> Any:
    found = exposures([resource], {}, TERMS, policy, TODAY)
    return found[0] if found else None


EXPOSURES = [
    (
        "request whose supply covers today",
        c.medication_request(c.OXYCODONE, authored=-5, supply_days=10),
        True,
        4,
    ),
    (
        "request with refills still covering today",
        c.medication_request(c.OXYCODONE, authored=-25, supply_days=10, repeats=2),
        True,
        4,
    ),
    (
        "completed request: all fills happened, refills included",
        c.medication_request(c.OXYCODONE, status="completed", authored=-25, supply_days=10, repeats=2),
        True,
        4,
    ),
    (
        "stopped request: refills may never have been filled",
        c.medication_request(c.OXYCODONE, status="stopped", authored=-25, supply_days=10, repeats=2),
        False,
        -16,
    ),
    (
        "active request with no supply information",
        c.medication_request(c.OXYCODONE, supply_days=None),
        True,
        None,
    ),
    (
        "completed request with no supply information: the usual supply assumed",
        c.medication_request(c.OXYCODONE, status="completed", authored=-40, supply_days=None),
        False,
        -11,
    ),
    (
        "dispense with no days' supply: the usual supply assumed",
        {**c.dispense(c.OXYCODONE, handed=-12, days_supply=1), "daysSupply": None},
        True,
        17,
    ),
    (
        "a taper: the latest of several dosage instructions",
        c.methadone_taper(),
        False,
        -5,
    ),
    (
        "a month as an end date means its last day",
        c.statement(c.OXYCODONE, status="completed")
        | {"effectivePeriod": {"start": "2026-10", "end": "2026-11"}},
        True,
        8,
    ),
    ("dispense: handed over + days' supply", c.dispense(c.OXYCODONE, handed=-5, days_supply=10), True, 4),
    ("active statement", c.statement(c.OXYCODONE), True, None),
    ("completed statement", c.statement(c.OXYCODONE, status="completed", end=-12), False, -12),
    ("administration in progress", c.administration(c.OXYCODONE, given=-1, status="in-progress"), True, None),
    ("completed administration", c.administration(c.OXYCODONE, given=-3), False, -3),
    ("depot administration acts for a month", c.administration(c.VIVITROL, given=-10), True, 17),
]


@pytest.mark.parametrize(("name", "resource", "current", "end"), EXPOSURES, ids=[row[0] for row in EXPOSURES])
def test_exposure(name: str, resource: dict[str, Any], current: bool, end: int | None) -> None:
    found = exposure(resource)
    assert found is not None
    assert found.current is current
    assert found.end == (None if end is None else parse_day(c.day(end)))


@pytest.mark.parametrize(
    "resource",
    [
        c.medication_request(c.OXYCODONE, status="entered-in-error"),
        c.medication_request(c.OXYCODONE, status="cancelled"),
        c.medication_request(c.OXYCODONE, intent="plan"),
        c.statement(c.OXYCODONE, status="not-taken"),
        c.dispense(c.OXYCODONE, handed=-2, days_supply=5, status="declined"),
        {**c.dispense(c.OXYCODONE, handed=-2, days_supply=5, status="in-progress"), "whenHandedOver": None},
    ],
)
def test_records_that_are_not_exposure(resource: dict[str, Any]) -> None:
    if resource.get("whenHandedOver") is None:
        resource.pop("whenHandedOver", None)
    assert exposure(resource) is None


def test_stale_active_prescription_is_current_by_policy() -> None:
    stale = c.medication_request(c.OXYCODONE, authored=-60, supply_days=10)
    assert exposure(stale).current and exposure(stale).stale
    trusting_dates = dataclasses.replace(POLICY, stale_active_prescription_is_current=False)
    assert not exposure(stale, trusting_dates).current


def test_active_prescription_ended_inside_the_washout_dates_the_last_exposure() -> None:
    found = exposure(c.medication_request(c.OXYCODONE, authored=-10, supply_days=5))
    assert not found.current and found.end == date(2026, 11, 16)


# ------------------------------------------------------------------------- opioid coverage by ingredient

# Every opioid ingredient of the research notes (section G2), with its RxNorm ingredient code and a product
# name as RxNorm or an EHR would write it (injectables, mixed agonist-antagonists, antitussives included).
OPIOID_INGREDIENTS = [
    ("7052", "morphine", "morphine sulfate 4 MG/ML Injectable Solution"),
    ("2670", "codeine", "codeine phosphate 2 MG/ML / promethazine hydrochloride 1.25 MG/ML Oral Solution"),
    ("5489", "hydrocodone", "hydrocodone bitartrate 5 MG / acetaminophen 325 MG Oral Tablet"),
    ("7804", "oxycodone", "oxycodone hydrochloride 5 MG Oral Tablet"),
    ("3423", "hydromorphone", "hydromorphone hydrochloride 2 MG/ML Injectable Solution"),
    ("7814", "oxymorphone", "oxymorphone hydrochloride 1 MG/ML Injectable Solution"),
    ("4337", "fentanyl", "fentanyl citrate 0.05 MG/ML Injectable Solution"),
    ("6754", "meperidine", "meperidine hydrochloride 50 MG/ML Injectable Solution"),
    ("6813", "methadone", "methadone hydrochloride 10 MG/ML Oral Concentrate"),
    ("6378", "levorphanol", "levorphanol tartrate 2 MG Oral Tablet"),
    ("787390", "tapentadol", "tapentadol 50 MG Oral Tablet"),
    ("10689", "tramadol", "tramadol hydrochloride 50 MG Oral Tablet"),
    ("7676", "opium", "opium tincture 10 MG/ML Oral Solution"),
    ("23088", "dihydrocodeine", "acetaminophen / caffeine / dihydrocodeine Oral Capsule"),
    ("8785", "propoxyphene", "propoxyphene napsylate 100 MG Oral Tablet"),
    ("56795", "sufentanil", "sufentanil 0.05 MG/ML Injectable Solution"),
    ("480", "alfentanil", "alfentanil 0.5 MG/ML Injectable Solution"),
    ("73032", "remifentanil", "remifentanil 1 MG Injection"),
    ("2001352", "benzhydrocodone", "benzhydrocodone 6.12 MG / acetaminophen 325 MG Oral Tablet"),
    ("2392230", "oliceridine", "oliceridine 1 MG/ML Injectable Solution"),
    ("1819", "buprenorphine", "buprenorphine 0.3 MG/ML Injectable Solution"),
    ("1841", "butorphanol", "butorphanol tartrate 10 MG/ML Metered Dose Nasal Spray"),
    ("7238", "nalbuphine", "nalbuphine hydrochloride 10 MG/ML Injectable Solution"),
    ("8001", "pentazocine", "naloxone 0.5 MG / pentazocine 50 MG Oral Tablet"),
]


@pytest.mark.parametrize(("rxcui", "ingredient", "product"), OPIOID_INGREDIENTS, ids=lambda v: str(v))
def test_every_opioid_ingredient_is_recognised(rxcui: str, ingredient: str, product: str) -> None:
    as_ingredient = {"coding": [{"system": RXNORM, "code": rxcui, "display": ingredient}]}
    assert classify(medication_of({"medicationCodeableConcept": as_ingredient}, {}), TERMS).product_class is (
        ProductClass.OPIOID
    )
    # a product code the value sets do not list, with its name: the name decides
    unknown_product = {"coding": [{"system": RXNORM, "code": "999999999", "display": product}]}
    assert classify(
        medication_of({"medicationCodeableConcept": unknown_product}, {}), TERMS
    ).product_class is (ProductClass.OPIOID)
    # a Medication listing the ingredient
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "ingredient": [{"itemCodeableConcept": as_ingredient}],
    }
    order = {"medicationReference": {"reference": "Medication/m1"}}
    assert classify(medication_of(order, {"m1": medication}), TERMS).product_class is ProductClass.OPIOID


@pytest.mark.parametrize(
    "text",
    [
        "Kratom powder 2 g daily",
        "mitragynine extract",
        "7-OH tablets (7-hydroxymitragynine)",
        "Mitragyna speciosa capsules",
        "Ketum leaf tea",
        "tianeptine sodium (Zaza)",
        "isotonitazene",
    ],
)
def test_unregulated_opioids_are_opioids(text: str) -> None:
    product = classify(medication_of({"medicationCodeableConcept": {"text": text}}, {}), TERMS)
    assert product.product_class is ProductClass.OPIOID


@pytest.mark.parametrize(
    "text",
    [
        "diphenoxylate hydrochloride 2.5 MG / atropine sulfate 0.025 MG Oral Tablet",
        "eluxadoline 100 MG",
        "Lomotil",
    ],
)
def test_opioid_antidiarrheals(text: str) -> None:
    product = classify(medication_of({"medicationCodeableConcept": {"text": text}}, {}), TERMS)
    assert product.product_class is ProductClass.ANTIDIARRHEAL_OPIOID


def test_an_unknown_rxnorm_code_without_a_name_is_unidentified_not_safe() -> None:
    concept = {"coding": [{"system": RXNORM, "code": "999999999"}]}
    product = classify(medication_of({"medicationCodeableConcept": concept}, {}), TERMS)
    assert product.product_class is ProductClass.UNIDENTIFIED


@pytest.mark.parametrize(
    "text",
    [
        "naloxone 4 MG Nasal Spray",
        "nalmefene",
        "methylnaltrexone",
        "naloxegol",
        "apomorphine",
        "dextromethorphan",
    ],
)
def test_antagonists_and_look_alikes_are_not_opioids(text: str) -> None:
    product = classify(medication_of({"medicationCodeableConcept": {"text": text}}, {}), TERMS)
    assert product.product_class is not ProductClass.OPIOID


# ------------------------------------------------------------------------ classification, remembered


def test_a_product_is_classed_by_the_value_sets_in_force_not_by_what_the_process_saw_before(
    tmp_path: Path,
) -> None:
    """Classes are remembered per process and per terminology: a site that adds a local code to the
    opioid value set gets it recognised, and the shipped value sets still do not know it."""
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules)
    local = rules / "valuesets" / "opioid-medications.json"
    valueset = json.loads(local.read_text(encoding="utf-8"))
    valueset["compose"]["include"].append(
        {"system": "http://hospital.example.org/formulary", "concept": [{"code": "OPI-77"}]}
    )
    local.write_text(json.dumps(valueset), encoding="utf-8")
    site_terms = load_terminology(rules)
    order = with_medication(
        {"coding": [{"system": "http://hospital.example.org/formulary", "code": "OPI-77"}]}
    )

    assert classify(medication_of(order, {}), TERMS).product_class is ProductClass.UNIDENTIFIED
    assert classify(medication_of(order, {}), site_terms).product_class is ProductClass.OPIOID
    assert classify(medication_of(order, {}), TERMS).product_class is ProductClass.UNIDENTIFIED


def test_a_medication_holding_an_integer_beyond_64_bits_is_still_classed() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": RX, "code": "1483744"}], "text": "naltrexone 50 mg tablet"},
        "ingredient": [
            {"itemCodeableConcept": {"text": "naltrexone"}, "strength": {"numerator": {"value": 2**70}}}
        ],
    }
    order = {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/m1"}}
    twice = [classify(medication_of(order, {"m1": medication}), TERMS) for _ in range(2)]
    assert [p.product_class for p in twice] == [ProductClass.NALTREXONE_ORAL] * 2


def test_remembered_classes_cannot_grow_a_worker_by_the_size_of_what_was_sent() -> None:
    """100 different Medications, each with a 1 MB narrative: the classes are right, and the process
    keeps none of the megabytes (keys are bounded in bytes, not only in number)."""
    before = resident_mb()
    for index in range(100):
        medication = {
            "resourceType": "Medication",
            "id": f"m{index}",
            "text": {"status": "generated", "div": f"<div>{index}{'x' * 1_000_000}</div>"},
            "code": {"coding": [{"system": RX, "code": "7804"}], "text": "oxycodone 5 mg tablet"},
        }
        order = {
            "resourceType": "MedicationRequest",
            "medicationReference": {"reference": f"Medication/m{index}"},
        }
        assert (
            classify(medication_of(order, {f"m{index}": medication}), TERMS).product_class
            is ProductClass.OPIOID
        )
    assert resident_mb() - before < 30
