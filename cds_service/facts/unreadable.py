"""Results that could not be read: screens, naloxone challenges and liver tests, said on one card."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.challenge import CHALLENGES
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.liver import LIVER
from cds_service.facts.observations import Finding
from cds_service.facts.orders import OrderFacts
from cds_service.facts.screens import SCREENS
from cds_service.facts.wording import day
from cds_service.knowledge.policy import Policy

_TEST_NAMES = {"screen": "urine opioid screen", "challenge": "naloxone challenge", "liver": "liver test"}


@dataclass(frozen=True)
class Unreadable:
    findings: tuple[Finding, ...]


def _derive(derivation: Derivation) -> Unreadable:
    return Unreadable(
        derivation.of(SCREENS).unreadable
        + derivation.of(CHALLENGES).unreadable
        + derivation.of(LIVER).unreadable
    )


UNREADABLE = Domain("unreadable-results", _derive)


@UNREADABLE.fact(
    "result_unreadable",
    "a screen, challenge or liver test in its look-back could not be read (and nothing newer replaces it)",
)
def _unreadable(facts: Unreadable, order: OrderFacts) -> bool:
    return bool(facts.findings)


@UNREADABLE.placeholder("unreadable_summary", "which results could not be read")
def _summary(facts: Unreadable, order: OrderFacts, policy: Policy) -> str:
    found = facts.findings
    tests = list(dict.fromkeys(_TEST_NAMES.get(f.test, f.name) for f in found))
    if not tests:
        return "a result"
    joined = tests[0] if len(tests) == 1 else ", ".join(tests[:-1]) + " and " + tests[-1]
    latest = max((f.day for f in found if f.day), default=None)
    when = f" of {day(latest)}" if latest and len(found) == 1 else ""
    return f"the {joined} {'results' if len(found) > 1 else 'result'}{when}"


@UNREADABLE.evidence("unreadable_results", "each unreadable result, quoting what it says")
def _lines(facts: Unreadable, order: OrderFacts, policy: Policy) -> list[str]:
    return [f.evidence() for f in facts.findings]
