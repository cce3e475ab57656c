"""The naloxone challenge: the newest readable result, and one that could not be read."""

from __future__ import annotations

from typing import Any

from cds_service.facts.challenge import CHALLENGES
from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of


def challenge(when: int, **value: Any) -> dict[str, Any]:
    return c.observation(
        "naloxone-challenge", "Naloxone challenge", when=when, system=c.PROJECT_OBSERVATION, **value
    )


def test_the_newest_readable_challenge_decides() -> None:
    facts = facts_of(c.naloxone_challenge("failed", when=-3), c.naloxone_challenge("passed", when=-1))
    assert fact(facts, "challenge_failed_recent") is False and fact(facts, "challenge_recent") is True


def test_a_failed_challenge_in_words() -> None:
    facts = facts_of(challenge(-1, valueString="Did not pass - yawning and rhinorrhea at 10 min"))
    assert fact(facts, "challenge_failed_recent") is True


def test_a_true_false_challenge_is_unreadable_but_counts_as_done() -> None:
    facts = facts_of(challenge(-1, valueBoolean=True))
    assert fact(facts, "challenge_recent") is True and fact(facts, "challenge_failed_recent") is False
    assert facts.of(CHALLENGES).unreadable[0].said == "true"


def test_a_challenge_older_than_the_look_back_does_not_count() -> None:
    assert fact(facts_of(c.naloxone_challenge("failed", when=-8)), "challenge_recent") is False
