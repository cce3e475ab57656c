"""The liver: acute disease, cirrhosis and decompensation, and the liver tests as multiples of ULN."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.facts.liver import LIVER
from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of


def test_the_higher_of_alt_and_ast_as_a_multiple_of_the_lab_limit() -> None:
    facts = facts_of(c.alt(120, high=40), c.ast(200, high=40))
    assert fact(facts, "lft_max_uln_multiple") == 5.0 and fact(facts, "lft_recent") is True
    assert facts.placeholder("lft_summary", facts.orders[0]).startswith("ALT 3.0× ULN")


def test_an_alt_in_a_unit_nobody_can_convert_is_unreadable_not_normal() -> None:
    facts = facts_of(c.lab_value("1742-6", "ALT", 2.0, "mmol/h", when=-5))
    assert fact(facts, "lft_max_uln_multiple") is None
    assert fact(facts, "lft_recent") is True  # done: the unreadable-result card asks for it
    assert len(facts.of(LIVER).unreadable) == 1


def test_compensated_cirrhosis_is_cirrhosis_but_not_decompensated() -> None:
    facts = facts_of(c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver"))
    assert fact(facts, "cirrhosis") is True and fact(facts, "decompensated_cirrhosis") is False


def test_any_decompensation_event_is_decompensated_disease() -> None:
    facts = facts_of(c.condition(c.ICD10, "I85.00", "Esophageal varices without bleeding"))
    assert fact(facts, "decompensated_cirrhosis") is True and fact(facts, "cirrhosis") is True


def test_child_pugh_c_from_a_score() -> None:
    score = c.observation("CP", "Child-Pugh score", when=-10, system="urn:local", valueInteger=12)
    assert fact(facts_of(score), "decompensated_cirrhosis") is True
    lower = c.observation("CP", "Child-Pugh score", when=-10, system="urn:local", valueInteger=8)
    assert fact(facts_of(lower), "decompensated_cirrhosis") is False


def test_acute_hepatitis_is_the_contraindication() -> None:
    facts = facts_of(c.condition(c.SNOMED, "37871000", "Acute hepatitis"))
    assert fact(facts, "hepatic_contraindication") is True


def cirrhosis_named(text: str, code: str | None = "K74.60") -> Any:
    condition = c.condition(c.ICD10, code or "local", "Unspecified cirrhosis of liver")
    if code is None:
        condition["code"] = {"text": text}
    else:
        condition["code"]["text"] = text
    return condition


@pytest.mark.parametrize(
    ("text", "code", "decompensated"),
    [
        # the name qualifies a code that leaves the class or the complication out
        ("Cirrhosis of liver, Child-Pugh class C (score 11)", "K74.60", True),
        ("Cirrhosis with ascites", "K74.60", True),
        ("Cirrhosis, portal hypertension and varices on EGD", "K74.60", True),
        ("Cirrhosis without ascites or esophageal varices", "K74.60", False),
        ("Cirrhosis, no hepatic encephalopathy", "K74.60", False),
        ("Cirrhosis w/o ascites but with esophageal varices", "K74.60", True),
        ("Child-Pugh class B cirrhosis", "K74.60", False),
        ("no hepatic encephalopathy, portal hypertension present", None, True),
        ("Liver cirrhosis, not decompensated", None, False),
    ],
)
def test_the_name_of_a_cirrhosis_says_what_its_code_leaves_out(
    text: str, code: str | None, decompensated: bool
) -> None:
    facts = facts_of(cirrhosis_named(text, code))
    assert fact(facts, "decompensated_cirrhosis") is decompensated
    assert fact(facts, "cirrhosis") is True


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("N98.1", "Ovarian hyperstimulation syndrome with ascites"),
        ("Z13.89", "Screening for esophageal varices"),
    ],
)
def test_a_decompensation_word_in_an_unrelated_diagnosis_is_not_liver_disease(code: str, name: str) -> None:
    facts = facts_of(c.condition(c.ICD10, code, name))
    assert fact(facts, "decompensated_cirrhosis") is False and fact(facts, "cirrhosis") is False
