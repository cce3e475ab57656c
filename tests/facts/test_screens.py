"""Urine opioid screens: a positive one, cleared analyte by analyte by newer negatives, or lifted by a
passed naloxone challenge; a recent one."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.facts.screens import SCREENS
from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of

FENTANYL = ("59673-4", "fentaNYL [Presence] in Urine by Screen method")


def test_a_positive_screen_in_the_look_back_stands() -> None:
    facts = facts_of(c.urine_opiates("POS", when=-3))
    assert fact(facts, "uds_positive_recent") is True and fact(facts, "uds_positive_cleared") is False


def test_a_newer_negative_of_the_same_analyte_after_the_wait_clears_it() -> None:
    facts = facts_of(c.urine_opiates("POS", when=-12), c.urine_opiates("NEG", when=-2))
    screens = facts.of(SCREENS)
    assert fact(facts, "uds_positive_cleared") is True
    assert [f.day.isoformat() for f in screens.cleared_by if f.day] == ["2026-11-20"]


def test_a_newer_negative_of_another_analyte_does_not_clear_it() -> None:
    fentanyl = c.observation(*FENTANYL, when=-12, valueString="POS")
    facts = facts_of(fentanyl, c.urine_opiates("NEG", when=-2))
    assert fact(facts, "uds_positive_recent") is True and fact(facts, "uds_positive_cleared") is False


def test_the_wait_since_the_positive_must_be_over() -> None:
    facts = facts_of(c.urine_opiates("POS", when=-5), c.urine_opiates("NEG", when=-1))
    assert fact(facts, "uds_positive_cleared") is False


def test_a_passed_challenge_on_or_after_the_positive_lifts_it() -> None:
    facts = facts_of(c.urine_opiates("POS", when=-3), c.naloxone_challenge("passed", when=-1))
    assert fact(facts, "challenge_passed_after_uds") is True


def test_an_unreadable_screen_counts_as_done_and_is_said() -> None:
    facts = facts_of(c.urine_opiates("NEG DILUTE", when=-1))
    assert fact(facts, "uds_recent") is True
    assert [f.said for f in facts.of(SCREENS).unreadable] == ["NEG DILUTE"]


def panel(
    result: str, *, when: int = -1, name: str = "Urine drug screen, 9-panel cup (point of care)"
) -> Any:
    """A point-of-care cup under a local code: only its name says what it is."""
    return c.observation("POCUDS9", name, when=when, system="urn:oid:1.2.3.4", valueString=result)


@pytest.mark.parametrize(
    ("said", "positive", "recent"),
    [
        ("AMP neg, BZO neg, COC neg, THC pos, OPI neg, OXY neg, MTD neg, BUP neg, FEN POS", True, True),
        ("AMP pos, OPI neg, FEN neg, BUP neg, MTD neg, OXY neg", False, True),  # another drug positive
        ("Negative", False, False),  # naming no drug: which opioids were tested is unknown
        ("THC positive", False, False),  # says nothing about opioids: no opioid screen on record
    ],
)
def test_a_general_drug_panel_is_read_for_what_it_says_about_opioids(
    said: str, positive: bool, recent: bool
) -> None:
    facts = facts_of(panel(said))
    assert fact(facts, "uds_positive_recent") is positive
    assert fact(facts, "uds_recent") is recent


def test_a_general_panel_positive_for_no_named_drug_is_unreadable_not_an_opioid_positive() -> None:
    facts = facts_of(panel("Positive"))
    assert fact(facts, "uds_positive_recent") is False and fact(facts, "result_unreadable") is True


def test_a_naltrexone_level_is_not_a_drug_panel() -> None:
    facts = facts_of(panel("Positive", name="Naltrexone drug test, urine"))
    assert fact(facts, "uds_recent") is False and fact(facts, "result_unreadable") is False


def test_a_challenge_passed_hours_after_the_screen_lifts_it_whatever_the_offsets() -> None:
    """00:40 UTC on the 21st is before 21:15 on the 20th in New York (02:15 UTC on the 21st)."""
    screen = c.urine_opiates("Presumptive positive", when=-1) | {"effectiveDateTime": "2026-11-21T00:40:00Z"}
    challenge = c.naloxone_challenge("passed", when=-2) | {"effectiveDateTime": "2026-11-20T21:15:00-05:00"}
    assert fact(facts_of(screen, challenge), "challenge_passed_after_uds") is True
    earlier = challenge | {"effectiveDateTime": "2026-11-20T19:15:00-05:00"}  # 00:15 UTC: before the screen
    assert fact(facts_of(screen, earlier), "challenge_passed_after_uds") is False


# --- review of issue 11 -------------------------------------------------------------------------------


@pytest.mark.parametrize("said", ["Negative", "None detected"])
def test_a_general_panel_negative_naming_no_opioid_is_not_an_opioid_screen(said: str) -> None:
    three_panel = panel(said, name="Drug screen 3-panel (THC/COC/AMP)")
    assert fact(facts_of(three_panel), "uds_recent") is False


def test_a_panel_that_also_tests_alcohol_is_still_read() -> None:
    facts = facts_of(panel("Opiates POSITIVE", name="Drugs of abuse screen with alcohol"))
    assert fact(facts, "uds_positive_recent") is True


@pytest.mark.parametrize("challenge_time", ["T09:00:00", ""])  # no offset, or a date only
def test_a_challenge_the_same_day_without_both_moments_does_not_lift_a_positive(challenge_time: str) -> None:
    screen = c.urine_opiates("Positive", when=-2) | {"effectiveDateTime": c.day(-2) + "T14:00:00Z"}
    challenge = c.naloxone_challenge("passed", when=-2) | {"effectiveDateTime": c.day(-2) + challenge_time}
    assert fact(facts_of(screen, challenge), "challenge_passed_after_uds") is False
    next_day = challenge | {"effectiveDateTime": c.day(-1)}
    assert fact(facts_of(screen, next_day), "challenge_passed_after_uds") is True
