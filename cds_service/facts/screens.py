"""Urine opioid screens: a positive one in the look-back, whether newer screens cleared it, a recent one.

A positive screen is cleared, analyte by analyte, by newer screens negative for the same analytes once
the opioid-free wait since it has passed (14 days for methadone and buprenorphine, 10 otherwise): a newer
negative "opiates" immunoassay does not clear a positive fentanyl. A passed naloxone challenge on or after
the positive screen also lifts it (SAMHSA TIP 63, 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cds_service.facts.challenge import CHALLENGES
from cds_service.facts.diagnoses import DIAGNOSES
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import (
    RESULTS,
    Finding,
    drug_panel_findings,
    findings_in,
    newest_first,
    unread_since_readable,
    within,
)
from cds_service.facts.opioid_exposure import OPIOIDS
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day, since
from cds_service.knowledge.policy import Policy

_LONG_ACTING_ANALYTES = frozenset({"methadone", "buprenorphine"})


@dataclass(frozen=True)
class Screens:
    today: date
    positive: Finding | None
    """The newest positive screen in the look-back that no newer screen cleared (else the newest cleared
    one, with ``cleared_by`` set)."""
    cleared_by: tuple[Finding, ...]
    challenge_after: Finding | None
    """A passed naloxone challenge on or after the positive screen."""
    recent: Finding | None
    """The newest screen within ``uds_recent_days`` (an unreadable one counts: its own card asks for it)."""
    unreadable: tuple[Finding, ...]
    reasons: tuple[str, ...]
    """Why a screen is wanted: opioid use disorder, opioid exposure in the look-back."""


def _derive(derivation: Derivation) -> Screens:
    inputs = derivation.inputs
    policy, today = inputs.policy, inputs.today
    results = derivation.of(RESULTS)
    uds = newest_first(
        findings_in(results, "opioid-urine-screens", inputs.terminology, named="opioid_drug_test")
        + drug_panel_findings(results, inputs.terminology)
    )
    positives = [
        f for f in uds if f.result == "positive" and within(f, today, policy.uds_positive_lookback_days)
    ]
    cleared = {id(p): _cleared_by(p, uds, policy, today) for p in positives}
    standing = [p for p in positives if not cleared[id(p)]]
    positive = standing[0] if standing else (positives[0] if positives else None)
    passed_after = None
    if positive is not None:
        screen = positive
        passed_after = next(
            (
                c
                for c in derivation.of(CHALLENGES).in_lookback
                if c.result == "negative" and c.is_on_or_after(screen)
            ),
            None,
        )
    exposure = derivation.of(OPIOIDS)
    return Screens(
        today=today,
        positive=positive,
        cleared_by=cleared[id(positive)] if positive is not None else (),
        challenge_after=passed_after,
        recent=next((f for f in uds if within(f, today, policy.uds_recent_days)), None),
        unreadable=tuple(unread_since_readable(uds, today, policy.uds_positive_lookback_days)),
        reasons=tuple(d.evidence() for d in derivation.of(DIAGNOSES).oud)
        + tuple(e.evidence() for e in exposure.within_lookback[:5]),
    )


def _cleared_by(
    positive: Finding, screens: Sequence[Finding], policy: Policy, today: date
) -> tuple[Finding, ...]:
    if positive.day is None:
        return ()
    found: list[Finding] = []
    for analyte, result in positive.analytes.items():
        if result != "positive":
            continue
        if (today - positive.day).days < policy.washout_days(long_acting=analyte in _LONG_ACTING_ANALYTES):
            return ()
        newer = next(
            (s for s in screens if s.is_after(positive) and s.analytes.get(analyte) == "negative"),
            None,
        )
        if newer is None:
            return ()
        if newer not in found:
            found.append(newer)
    return tuple(found)


SCREENS = Domain(
    "urine-screens", _derive, valuesets=("opioid-urine-screens", "result-positive", "result-negative")
)


@SCREENS.fact("uds_positive_recent", "a positive urine opioid screen within `uds_positive_lookback_days`")
def _positive(facts: Screens, order: OrderFacts) -> bool:
    return facts.positive is not None


@SCREENS.fact(
    "uds_positive_cleared",
    "newer screens are negative for every analyte it was positive for, the opioid-free wait since it met",
)
def _cleared(facts: Screens, order: OrderFacts) -> bool:
    return bool(facts.cleared_by)


@SCREENS.fact("challenge_passed_after_uds", "a passed naloxone challenge on or after that positive screen")
def _challenge_after(facts: Screens, order: OrderFacts) -> bool:
    return facts.challenge_after is not None


@SCREENS.fact("uds_recent", "a urine opioid screen within `uds_recent_days` (an unreadable one counts)")
def _recent(facts: Screens, order: OrderFacts) -> bool:
    return facts.recent is not None


@SCREENS.placeholder("uds_positive_date", "the date of the positive screen")
def _positive_date(facts: Screens, order: OrderFacts, policy: Policy) -> str:
    return day(facts.positive.day if facts.positive else None)


@SCREENS.placeholder("uds_negative_date", "the date of the newest screen that cleared it")
def _negative_date(facts: Screens, order: OrderFacts, policy: Policy) -> str:
    return day(max((f.day for f in facts.cleared_by if f.day), default=None))


@SCREENS.evidence("uds_positive", "the positive screen, and the newer negatives that cleared it")
def _positive_lines(facts: Screens, order: OrderFacts, policy: Policy) -> list[str]:
    if facts.positive is None:
        return []
    return [facts.positive.evidence("positive")] + [f.evidence("negative, newer") for f in facts.cleared_by]


@SCREENS.evidence("uds_absence", "the look-back with no readable screen")
def _absence(facts: Screens, order: OrderFacts, policy: Policy) -> list[str]:
    return [f"no readable urine opioid screen dated on or after {since(facts.today, policy.uds_recent_days)}"]


@SCREENS.evidence("uds_reason", "why a screen is wanted (opioid use disorder, recent opioids)")
def _reasons(facts: Screens, order: OrderFacts, policy: Policy) -> list[str]:
    return list(facts.reasons)
