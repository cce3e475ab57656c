"""Reading results: screens per analyte, naloxone challenges, liver tests in every unit."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_service.facts.observations import (
    bilirubin_results,
    enzyme_results,
    findings_in,
    naloxone_challenges,
    read_result,
)
from fhir_fixtures import clinical as c
from tests.support.derivations import TERMS
from tests.support.memory import resident_mb

# ---------------------------------------------------------------------------------- results


@pytest.mark.parametrize(
    ("extra", "result"),
    [
        ({"valueString": "POS"}, "positive"),
        ({"valueString": "Negative"}, "negative"),
        ({"valueString": "not detected"}, "negative"),
        ({"valueCodeableConcept": {"coding": [{"system": c.SNOMED, "code": "10828004"}]}}, "positive"),
        ({"valueCodeableConcept": {"coding": [{"system": c.LOINC, "code": "LA6577-6"}]}}, "negative"),
        ({"valueCodeableConcept": {"text": "Detected"}}, "positive"),
        (
            {
                "interpretation": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                "code": "POS",
                            }
                        ]
                    }
                ],
                "valueString": "see report",
            },
            "positive",
        ),
        (
            {"valueQuantity": {"value": 450, "unit": "ng/mL"}, "referenceRange": [{"high": {"value": 300}}]},
            "positive",
        ),
        (
            {"valueQuantity": {"value": 20, "unit": "ng/mL"}, "referenceRange": [{"high": {"value": 300}}]},
            "negative",
        ),
        # a concentration is reported when the drug was found
        ({"valueQuantity": {"value": 450, "unit": "ng/mL"}}, "positive"),
        ({"valueQuantity": {"value": 100, "unit": "ng/mL", "comparator": "<"}}, "negative"),
        ({"valueString": "see scanned report"}, "unreadable"),
        ({"valueString": "AMP-, THC+, OPI-, FEN+"}, "positive"),
        ({"valueString": "AMP-, THC+, OPI-, FEN-"}, "negative"),
        ({"valueString": "NEG DILUTE"}, "unreadable"),
        ({"valueBoolean": True}, "positive"),
        # positive anywhere wins over a negative flag
        (
            {"valueString": "FEN POS", "interpretation": [{"coding": [{"system": c.V3, "code": "NEG"}]}]},
            "positive",
        ),
        ({"interpretation": [{"coding": [{"system": c.V3, "code": "IND"}]}]}, "unreadable"),
        ({"dataAbsentReason": {"text": "not performed"}}, None),
    ],
)
def test_reading_a_screen_result(extra: dict[str, Any], result: str | None) -> None:
    observation = c.observation("19295-5", "Opiates screen", when=-1, **extra)
    reading = read_result(observation, TERMS)
    assert (reading.result if reading else None) == result


def test_a_screen_is_read_per_analyte() -> None:
    observation = c.observation("19295-5", "Opiates screen", when=-1, valueString="OPI neg, FEN pos, OXY neg")
    reading = read_result(observation, TERMS)
    assert reading is not None
    assert dict(reading.analytes) == {"opiates": "negative", "fentanyl": "positive", "oxycodone": "negative"}


@pytest.mark.parametrize(
    ("extra", "result"),
    [
        ({"valueString": "Not passed - withdrawal seen"}, "positive"),
        ({"valueString": "withdrawal signs: none"}, "negative"),
        ({"valueBoolean": True}, "unreadable"),
        ({"valueBoolean": False}, "unreadable"),
        ({"valueString": "see note"}, "unreadable"),
    ],
)
def test_reading_a_naloxone_challenge(extra: dict[str, Any], result: str) -> None:
    challenge = c.observation(
        "naloxone-challenge", "Naloxone challenge", when=-1, system=c.PROJECT_OBSERVATION, **extra
    )
    (finding,) = naloxone_challenges([challenge], TERMS)
    assert finding.result == result


def test_screens_exclude_naltrexone_assays_and_uncounted_statuses() -> None:
    screens = [
        c.urine_opiates("positive", when=-1),
        c.observation("19609-7", "Naltrexone [Presence] in Urine", when=-1, valueString="positive"),
        c.urine_opiates("positive", when=-1, status="cancelled"),
        c.urine_opiates("positive", when=-1, status="preliminary"),
    ]
    found = findings_in(screens, "opioid-urine-screens", TERMS)
    assert [f.reference for f in found] == [
        f"Observation/{screens[0]['id']}",
        f"Observation/{screens[3]['id']}",
    ]


def test_naloxone_challenge_by_project_code_or_by_name() -> None:
    coded = c.naloxone_challenge("failed", when=-1)
    named = c.observation(
        "LOCAL-123", "Naloxone challenge test", when=-2, system="urn:local", valueString="passed"
    )
    found = naloxone_challenges([coded, named], TERMS)
    assert [(f.result, f.day) for f in found] == [
        ("positive", date(2026, 11, 21)),
        ("negative", date(2026, 11, 20)),
    ]


def test_liver_tests_as_multiples_of_the_upper_limit() -> None:
    with_range = enzyme_results([c.alt(120, high=30)], "alt-tests", TERMS, 40)
    assert with_range[0].uln_multiple == 4.0 and with_range[0].uln_from_lab
    default = enzyme_results([c.alt(120, high=None)], "alt-tests", TERMS, 40)
    assert default[0].uln_multiple == 3.0 and not default[0].uln_from_lab
    spelled = c.lab_value("1742-6", "ALT", 120, "Units/L", when=-2)
    assert enzyme_results([spelled], "alt-tests", TERMS, 40)[0].uln_multiple == 3.0
    katal = c.lab_value("1742-6", "ALT", 2.0, "ukat/L", when=-2)
    assert enzyme_results([katal], "alt-tests", TERMS, 40)[0].uln_multiple == 3.0  # 2 µkat/L = 120 U/L
    unknown_unit = c.lab_value("1742-6", "ALT", 120, "mg", when=-2)
    (unreadable,) = enzyme_results([unknown_unit], "alt-tests", TERMS, 40)
    assert unreadable.result == "unreadable" and unreadable.uln_multiple is None  # said, never "normal"
    bilirubin = c.lab_value("1975-2", "Bilirubin total", 41.04, "umol/L", when=-3, high=None)
    assert round(bilirubin_results([bilirubin], TERMS, 1.2)[0].uln_multiple or 0, 2) == 2.0  # 2.4 mg/dL


@pytest.mark.parametrize(
    "unit",
    ["\u00b5kat/L", "\u03bckat/L", "ukat/L", "µkat/l", "UKAT/L", " µkat / L ", "ukat/L (37 C)"],
)
def test_enzyme_units_in_every_spelling(unit: str) -> None:
    katal = c.lab_value("1742-6", "ALT", 2.0, unit, when=-2)
    assert enzyme_results([katal], "alt-tests", TERMS, 40)[0].uln_multiple == 3.0  # 2 µkat/L = 120 U/L


def test_remembered_readings_cannot_grow_a_worker_by_the_size_of_what_was_sent() -> None:
    """100 different urine screens, each saying 'negative' followed by a megabyte: each is read, and the
    process keeps none of the megabytes (texts past 1,000 characters are read afresh, not remembered)."""
    before = resident_mb()
    for index in range(100):
        screen = c.urine_opiates("negative", when=-3)
        screen["valueString"] = f"negative {index} " + "x" * 1_000_000
        screen.pop("valueCodeableConcept", None)
        assert read_result(screen, TERMS) is not None
    assert resident_mb() - before < 30
