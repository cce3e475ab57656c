"""Urine opioid screens: a positive one, cleared analyte by analyte by newer negatives, or lifted by a
passed naloxone challenge; a recent one."""

from __future__ import annotations

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
