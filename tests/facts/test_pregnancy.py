"""Pregnancy now: a diagnosis, a positive hCG or a pregnancy status; a newer negative test ends it."""

from __future__ import annotations

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
