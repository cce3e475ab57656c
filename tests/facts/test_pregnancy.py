"""Pregnancy now: a diagnosis, a positive hCG or a pregnancy status; a newer negative test ends it."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of

URINE_HCG = ("2106-3", "Choriogonadotropin (pregnancy test) [Presence] in Urine")


def test_a_pregnancy_diagnosis() -> None:
    assert fact(facts_of(c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental")), "pregnant") is True


def test_a_negative_test_after_the_diagnosis_ends_it() -> None:
    diagnosis = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-40)
    negative = c.observation(*URINE_HCG, when=-2, valueString="Negative")
    assert fact(facts_of(diagnosis, negative), "pregnant") is False


def test_a_positive_hcg_is_not_a_pregnancy_for_a_patient_recorded_as_male() -> None:
    positive = c.observation(*URINE_HCG, when=-2, valueString="Positive")
    assert fact(facts_of(positive), "pregnant") is True
    male = {"resourceType": "Patient", "id": "pat-tests-1", "gender": "male"}
    assert fact(facts_of(positive, prefetch_override={"patient": male}), "pregnant") is False


PREGNANT = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-270)


def uncoded(name: str, *, onset: int) -> Any:
    condition = c.condition(c.ICD10, "x", name, onset=onset)
    condition["code"] = {"text": name}
    return condition


@pytest.mark.parametrize(
    "outcome",
    [
        c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-21),
        c.condition(c.ICD10, "O80", "Encounter for full-term uncomplicated delivery", onset=-21),
        c.condition(c.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset=-7),
        c.condition(
            c.ICD10, "O03.9", "Complete or unspecified spontaneous abortion without complication", onset=-10
        ),
        c.condition(c.ICD10, "O99.214", "Obesity complicating childbirth", onset=-21),
        c.condition(c.SNOMED, "86569001", "Postpartum state", onset=-14, clinical="resolved"),
        uncoded("s/p vaginal delivery 11/01", onset=-21),
        c.procedure(c.SNOMED, "11466000", "Cesarean section", performed=-21),
        c.procedure(c.CPT, "59510", "Routine obstetric care including cesarean delivery", performed=-21),
        c.procedure("urn:local", "DEL", "Spontaneous vaginal delivery", performed=-21),
    ],
)
def test_a_delivery_a_loss_or_the_postpartum_period_ends_an_unresolved_pregnancy(outcome: Any) -> None:
    assert fact(facts_of(PREGNANT), "pregnant") is True
    assert fact(facts_of(PREGNANT, outcome), "pregnant") is False


def test_the_hcg_still_positive_after_the_birth_is_residual() -> None:
    birth = c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-21)
    before = c.observation(*URINE_HCG, when=-22, valueString="Positive")
    after = c.observation(*URINE_HCG, when=-5, valueString="Positive")
    assert fact(facts_of(birth, before), "pregnant") is False
    assert fact(facts_of(birth, after), "pregnant") is False  # 16 days after: residual hCG


def test_a_new_pregnancy_after_the_outcome_counts() -> None:
    birth = c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-200)
    again = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-20)
    assert fact(facts_of(birth, again), "pregnant") is True


@pytest.mark.parametrize(
    "near_miss",
    [
        # a current-pregnancy code that names a previous caesarean is not an outcome
        c.condition(c.ICD10, "O34.21", "Maternal care for scar from previous cesarean delivery", onset=-30),
        c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-21, verification="entered-in-error"),
        c.procedure(c.SNOMED, "11466000", "Cesarean section", status="preparation", performed=20),
        uncoded("delivery planned for January", onset=-30),
    ],
)
def test_what_does_not_end_a_pregnancy(near_miss: Any) -> None:
    assert fact(facts_of(PREGNANT, near_miss), "pregnant") is True


def test_a_not_pregnant_status_newer_than_the_evidence_ends_it() -> None:
    status = c.observation(
        "82810-3",
        "Pregnancy status",
        when=-3,
        valueCodeableConcept={
            "coding": [{"system": c.LOINC, "code": "LA26683-5", "display": "Not pregnant"}]
        },
    )
    assert fact(facts_of(PREGNANT, status), "pregnant") is False


# --- what must not end a pregnancy (review of issue 11) ------------------------------------------------


def test_a_not_pregnant_status_then_a_positive_test_is_a_new_pregnancy() -> None:
    status = c.observation(
        "82810-3",
        "Pregnancy status",
        when=-10,
        valueCodeableConcept={
            "coding": [{"system": c.LOINC, "code": "LA26683-5", "display": "Not pregnant"}]
        },
    )
    positive = c.observation(*URINE_HCG, when=-2, valueString="Positive")
    assert fact(facts_of(status, positive), "pregnant") is True


@pytest.mark.parametrize(
    "not_an_outcome",
    [
        c.procedure(c.CPT, "59425", "Antepartum care only; 4-6 visits", performed=-5),
        c.procedure(c.CPT, "59412", "External cephalic version", performed=-5),
        uncoded("Threatened miscarriage", onset=-5),
        uncoded("Recurrent miscarriage", onset=-5),
        uncoded("Requests termination of pregnancy", onset=-5),
        uncoded("Preterm labour - delivery not imminent", onset=-5),
        c.procedure("urn:local", "EDU", "Counselling about termination of pregnancy", performed=-5),
        c.procedure("urn:local", "US", "Ultrasound scan for threatened miscarriage", performed=-5),
        c.procedure("urn:local", "NX", "Naloxone overdose education delivered", performed=-5),
        c.procedure(c.SNOMED, "225323000", "Smoking cessation advice delivered", performed=-5),
        c.condition(c.SNOMED, "17369002", "Miscarriage", onset=-5, verification="provisional"),
        c.condition(
            c.ICD10,
            "O03.9",
            "Complete or unspecified spontaneous abortion",
            onset=-5,
            verification="unconfirmed",
        ),
    ],
)
def test_what_is_not_an_outcome_leaves_the_pregnancy(not_an_outcome: Any) -> None:
    pregnant = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60)
    assert fact(facts_of(pregnant, not_an_outcome), "pregnant") is True


def test_an_undated_pregnancy_diagnosis_is_not_ended_by_an_old_birth() -> None:
    undated = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental")
    del undated["onsetDateTime"]
    old_birth = c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-2000, clinical="resolved")
    assert fact(facts_of(undated, old_birth), "pregnant") is True


def test_an_old_birth_imported_today_does_not_end_a_current_pregnancy() -> None:
    pregnant = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60)
    imported = c.condition(c.ICD10, "Z37.0", "Single live birth")
    del imported["onsetDateTime"]
    imported["recordedDate"] = c.day(-1)
    imported["category"] = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                    "code": "problem-list-item",
                }
            ]
        }
    ]
    assert fact(facts_of(pregnant, imported), "pregnant") is True
    imported["category"][0]["coding"][0]["code"] = "encounter-diagnosis"  # recorded at the delivery
    assert fact(facts_of(pregnant, imported), "pregnant") is False


def test_a_cpt_code_with_a_non_ascii_digit_is_ignored_not_a_crash() -> None:
    pregnant = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60)
    assert fact(facts_of(pregnant, c.procedure(c.CPT, "5940²", "x", performed=-5)), "pregnant") is True
