"""The naloxone challenge: the newest readable result in the look-back, and any that could not be read.

How a challenge is recorded and read is in rules/README.md: positive = failed (withdrawal), negative =
passed; a ``valueBoolean`` or ambiguous text is unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import (
    RESULTS,
    Finding,
    naloxone_challenges,
    unread_since_readable,
    within,
)
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day, since
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class Challenges:
    today: date
    in_lookback: tuple[Finding, ...]
    """Every challenge in the look-back with a result (unreadable included), newest first."""
    latest: Finding | None
    """The newest readable challenge in the look-back."""
    unreadable: tuple[Finding, ...]


def _derive(derivation: Derivation) -> Challenges:
    inputs = derivation.inputs
    days = inputs.policy.naloxone_challenge_lookback_days
    found = tuple(
        c
        for c in naloxone_challenges(derivation.of(RESULTS), inputs.terminology)
        if within(c, inputs.today, days)
    )
    readable = [c for c in found if c.result != "unreadable"]
    return Challenges(
        today=inputs.today,
        in_lookback=found,
        latest=readable[0] if readable else None,
        unreadable=tuple(unread_since_readable(found, inputs.today, days)),
    )


CHALLENGES = Domain("naloxone-challenge", _derive)


@CHALLENGES.fact(
    "challenge_recent", "a naloxone challenge result within the look-back (an unreadable one counts as done)"
)
def _recent(facts: Challenges, order: OrderFacts) -> bool:
    return facts.latest is not None or bool(facts.unreadable)


@CHALLENGES.fact("challenge_failed_recent", "the newest readable challenge in the look-back failed")
def _failed(facts: Challenges, order: OrderFacts) -> bool:
    return facts.latest is not None and facts.latest.result == "positive"


@CHALLENGES.placeholder("challenge_date", "the date of the newest readable challenge")
def _challenge_date(facts: Challenges, order: OrderFacts, policy: Policy) -> str:
    return day(facts.latest.day if facts.latest else None)


@CHALLENGES.evidence("challenge", "the failed challenge")
def _challenge(facts: Challenges, order: OrderFacts, policy: Policy) -> list[str]:
    return [facts.latest.evidence("failed (withdrawal signs)")] if facts.latest else []


@CHALLENGES.evidence("challenge_absence", "the look-back with no challenge")
def _absence(facts: Challenges, order: OrderFacts, policy: Policy) -> list[str]:
    start = since(facts.today, policy.naloxone_challenge_lookback_days)
    return [f"no naloxone challenge result on or after {start}"]
