"""Diagnoses and allergies: clinical and verification status, the code forms EHRs send, intolerance."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.facts.conditions import affirmed, allergies_to, current_diagnoses
from fhir_fixtures import clinical as c
from tests.support.derivations import TERMS

# ---------------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("clinical", "verification", "counts"),
    [
        ("active", None, True),
        ("recurrence", "confirmed", True),
        (None, None, True),
        ("resolved", None, False),
        ("inactive", None, False),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
        ("active", "provisional", True),
    ],
)
def test_condition_status(clinical: str | None, verification: str | None, counts: bool) -> None:
    condition = c.condition(
        c.ICD10, "F11.20", "Opioid dependence", clinical=clinical, verification=verification
    )
    assert bool(current_diagnoses([condition], "opioid-use-disorder", TERMS)) is counts


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (c.ICD10, "F11.21"),
        (c.ICD10, "F1121"),
        ("urn:oid:2.16.840.1.113883.6.90", "F11.20"),
        (c.SNOMED, "75544000"),
    ],
)
def test_condition_codes_in_the_forms_ehrs_send(system: str, code: str) -> None:
    condition = c.condition(system, code, "opioid use disorder")
    assert current_diagnoses([condition], "opioid-use-disorder", TERMS)


@pytest.mark.parametrize(
    ("allergy", "counts"),
    [
        (c.allergy(c.rx("7243", "naltrexone")), True),
        (c.allergy({"text": "Naltrexone (ReVia)"}), True),
        (c.allergy({"text": "nuts"}) | {"reaction": [{"substance": {"text": "naltrexone"}}]}, True),
        (c.allergy(c.rx("7243", "naltrexone"), verification="refuted"), False),
        (c.allergy(c.rx("7243", "naltrexone"), clinical="inactive"), False),
        (c.allergy({"text": "naloxone"}), False),
    ],
)
def test_naltrexone_allergy(allergy: dict[str, Any], counts: bool) -> None:
    assert bool(allergies_to([allergy], "naltrexone-allergens", "naltrexone", TERMS)) is counts


@pytest.mark.parametrize(
    ("extra", "intolerance_only"),
    [
        (
            {
                "type": "intolerance",
                "criticality": "low",
                "reaction": [{"manifestation": [{"text": "nausea"}]}],
            },
            True,
        ),
        (
            {
                "type": "intolerance",
                "reaction": [{"manifestation": [{"text": "headache"}], "severity": "mild"}],
            },
            True,
        ),
        ({"type": "intolerance", "criticality": "high"}, False),
        ({"type": "intolerance", "reaction": [{"manifestation": [{"text": "Urticaria"}]}]}, False),
        (
            {
                "type": "intolerance",
                "reaction": [{"manifestation": [{"text": "vomiting"}], "severity": "severe"}],
            },
            False,
        ),
        (
            {"type": "allergy", "criticality": "low", "reaction": [{"manifestation": [{"text": "nausea"}]}]},
            False,
        ),
        ({}, False),
    ],
)
def test_intolerance_is_not_hypersensitivity(extra: dict[str, Any], intolerance_only: bool) -> None:
    entry = c.allergy(c.rx("7243", "naltrexone"))
    entry.update(extra)
    (found,) = allergies_to([entry], "naltrexone-allergens", "naltrexone", TERMS)
    assert found.intolerance_only is intolerance_only


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        ({"text": "Naloxone"}, True),
        ({"text": "NARCAN nasal spray"}, True),
        (c.rx("7242", "naloxone"), True),
        ({"text": "nalmefene (Opvee)"}, True),
        ({"text": "naltrexone"}, False),
        (c.rx("1010603", "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film [Suboxone]"), False),
    ],
)
def test_naloxone_allergy(code: dict[str, Any], counts: bool) -> None:
    found = allergies_to([c.allergy(code)], "naloxone-allergens", "naloxone_allergen", TERMS)
    assert bool(found) is counts


@pytest.mark.parametrize(
    ("name", "affirmed_name"),
    [
        ("Cirrhosis without ascites or varices", "Cirrhosis"),
        ("no hepatic encephalopathy, portal hypertension present", ", portal hypertension present"),
        ("Cirrhosis w/o ascites but with varices", "Cirrhosis but with varices"),
        ("Hepatitis C, ruled out", ""),  # a negation standing alone applies to what precedes it
        ("Hepatic encephalopathy ruled out", ""),
        ("Screening for esophageal varices", ""),
        ("Cirrhosis without ascites - Child-Pugh C", "Cirrhosis - Child-Pugh C"),  # a clause ends at " - "
        (
            "Alcoholic cirrhosis, no varices and hepatic encephalopathy",
            "Alcoholic cirrhosis, and hepatic encephalopathy",
        ),
        ("Cirrhosis w/o varices + ascites", "Cirrhosis + ascites"),
        ("Opioid use disorder, severe", "Opioid use disorder, severe"),
        ("Nonalcoholic cirrhosis", "Nonalcoholic cirrhosis"),
    ],
)
def test_a_name_is_read_without_the_clauses_it_negates(name: str, affirmed_name: str) -> None:
    assert affirmed(name) == affirmed_name


@pytest.mark.parametrize(
    ("clinical", "abatement", "counts"),
    [
        (None, {"abatementString": "resolved 2019"}, False),  # no status: the abatement decides
        (None, {"abatementAge": {"value": 30, "unit": "a"}}, False),
        ("active", {"abatementString": "not resolved"}, True),  # a coded status beats free text
        (None, {"abatementDateTime": "2099-01-01"}, True),  # abates in the future: still current
        ("active", {"abatementDateTime": "2020-01-01"}, False),  # a past abatement date
        (None, {"abatementBoolean": True}, False),
    ],
)
def test_abatement(clinical: str | None, abatement: dict[str, Any], counts: bool) -> None:
    condition = c.condition(c.ICD10, "F11.20", "Opioid dependence", clinical=clinical) | abatement
    assert bool(current_diagnoses([condition], "opioid-use-disorder", TERMS, c.TODAY)) is counts
