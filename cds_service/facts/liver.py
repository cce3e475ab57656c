"""The liver: acute hepatitis or liver failure, cirrhosis and its decompensation, and the liver tests.

Liver tests are the newest ALT, AST and total bilirubin in the look-back, as multiples of the lab's upper
limit of normal (or of the configured default), units normalised (see ``observations``); one that cannot
be read is kept as unreadable. Decompensation is a code that says so, any decompensation event (current,
or an episode within ``decompensation_lookback_days``), or Child-Pugh class C (in words, or a score of
10-15); cirrhosis without any of these is compensated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cds_service.facts.conditions import PROBLEMS, Diagnosis, current_diagnoses
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import (
    RESULTS,
    Finding,
    bilirubin_results,
    enzyme_results,
    latest_within,
    observation_day,
    unread_since_readable,
)
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day, fact_line, names, since
from cds_service.fhir import Resource, as_dict, number, reference_of, text
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import concept_texts

_CLASS_LETTER = re.compile(r"(?:^|\b(?:class|grade|child[- ]?pugh)\s*)([abc])\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Liver:
    today: date
    hepatic: tuple[Diagnosis, ...]
    """Current acute hepatitis or liver failure."""
    decompensated: tuple[str, ...]
    """Evidence lines of decompensated liver disease."""
    cirrhosis: tuple[str, ...]
    """Cirrhosis of any kind (compensated included): naltrexone exposure is about 5x higher."""
    alt: Finding | None
    ast: Finding | None
    bilirubin: Finding | None
    unreadable: tuple[Finding, ...]

    @property
    def lft_max_multiple(self) -> float | None:
        multiples = [f.uln_multiple for f in (self.alt, self.ast) if f and f.uln_multiple is not None]
        return max(multiples) if multiples else None


def _derive(derivation: Derivation) -> Liver:
    inputs = derivation.inputs
    policy, today, terminology = inputs.policy, inputs.today, inputs.terminology
    problems, results = derivation.of(PROBLEMS), derivation.of(RESULTS)
    alt = enzyme_results(results, "alt-tests", terminology, policy.default_uln.alt_u_per_l)
    ast = enzyme_results(results, "ast-tests", terminology, policy.default_uln.ast_u_per_l)
    bilirubin = bilirubin_results(results, terminology, policy.default_uln.bilirubin_mg_per_dl)
    days = policy.lft_lookback_days
    coded = current_diagnoses(
        problems, "decompensated-cirrhosis", terminology, today, qualified=("child_pugh_c", "cirrhosis")
    )
    events = current_diagnoses(
        problems,
        "liver-decompensation-events",
        terminology,
        today,
        qualified=("liver_decompensation", "cirrhosis"),
        or_recorded_within=policy.decompensation_lookback_days,
    )
    decompensated = [d.evidence() for d in dict.fromkeys(coded + events)]
    for reading, observation in results.matching(lambda code: False, terminology, named="child_pugh"):
        seen = observation_day(observation)
        if seen is not None and (today - seen).days > policy.decompensation_lookback_days:
            continue
        if _child_pugh_class(reading) == "C":
            decompensated.append(fact_line("Child-Pugh class C", day(seen), reference_of(observation)))
    return Liver(
        today=today,
        hepatic=tuple(current_diagnoses(problems, "acute-hepatitis-or-liver-failure", terminology, today)),
        decompensated=tuple(decompensated),
        cirrhosis=tuple(
            d.evidence()
            for d in current_diagnoses(problems, "cirrhosis", terminology, today, named="cirrhosis")
        ),
        alt=latest_within(alt, today, days),
        ast=latest_within(ast, today, days),
        bilirubin=latest_within(bilirubin, today, days),
        unreadable=tuple(
            f for results_ in (alt, ast, bilirubin) for f in unread_since_readable(results_, today, days)
        ),
    )


def _child_pugh_class(observation: Resource) -> str | None:
    """The class a Child-Pugh Observation states: a score (5-6 A, 7-9 B, 10-15 C) or the letter."""
    score = number(as_dict(observation.get("valueQuantity")).get("value"))
    if score is None and isinstance(observation.get("valueInteger"), int):
        score = float(observation["valueInteger"])
    if score is not None:
        return "C" if score >= 10 else "B" if score >= 7 else "A"
    for words in [
        *concept_texts(observation.get("valueCodeableConcept")),
        text(observation.get("valueString")) or "",
    ]:
        letter = _CLASS_LETTER.search(words.strip())
        if letter:
            return letter.group(1).upper()
    return None


LIVER = Domain(
    "liver",
    _derive,
    valuesets=(
        "acute-hepatitis-or-liver-failure",
        "decompensated-cirrhosis",
        "cirrhosis",
        "liver-decompensation-events",
        "alt-tests",
        "ast-tests",
        "bilirubin-total-tests",
    ),
)


@LIVER.fact("hepatic_contraindication", "current acute hepatitis or liver failure")
def _hepatic(facts: Liver, order: OrderFacts) -> bool:
    return bool(facts.hepatic)


@LIVER.fact("decompensated_cirrhosis", "decompensated liver disease (see `hepatic-impairment`)")
def _decompensated(facts: Liver, order: OrderFacts) -> bool:
    return bool(facts.decompensated)


@LIVER.fact("cirrhosis", "cirrhosis of any kind, decompensated included")
def _cirrhosis(facts: Liver, order: OrderFacts) -> bool:
    return bool(facts.cirrhosis or facts.decompensated)


@LIVER.fact("lft_recent", "an ALT or AST within `lft_lookback_days` (an unreadable one counts as done)")
def _lft_recent(facts: Liver, order: OrderFacts) -> bool:
    return facts.alt is not None or facts.ast is not None or bool(facts.unreadable)


@LIVER.fact("lft_max_uln_multiple", "the latest ALT/AST (the higher) as a multiple of ULN (absent when none)")
def _lft_multiple(facts: Liver, order: OrderFacts) -> float | None:
    multiple = facts.lft_max_multiple
    return round(multiple, 3) if multiple is not None else None


@LIVER.fact("bilirubin_uln_multiple", "the latest total bilirubin as a multiple of ULN (absent when none)")
def _bilirubin_multiple(facts: Liver, order: OrderFacts) -> float | None:
    multiple = facts.bilirubin.uln_multiple if facts.bilirubin else None
    return round(multiple, 3) if multiple is not None else None


@LIVER.placeholder("hepatic_names", "the acute hepatitis or liver failure diagnoses")
def _hepatic_names(facts: Liver, order: OrderFacts, policy: Policy) -> str:
    return names(d.name for d in facts.hepatic)


@LIVER.placeholder("lft_summary", "the raised liver tests, as multiples of ULN with dates")
def _lft_summary(facts: Liver, order: OrderFacts, policy: Policy) -> str:
    parts = []
    for name, finding in (("ALT", facts.alt), ("AST", facts.ast)):
        if finding and finding.uln_multiple is not None:
            parts.append(f"{name} {finding.uln_multiple:.1f}× ULN on {day(finding.day)}")
    if facts.bilirubin and facts.bilirubin.uln_multiple is not None and facts.bilirubin.uln_multiple >= 1:
        parts.append(f"bilirubin {facts.bilirubin.uln_multiple:.1f}× ULN")
    return ", ".join(parts) or "liver enzymes raised"


@LIVER.evidence("hepatic", "the acute hepatitis or liver failure diagnoses")
def _hepatic_lines(facts: Liver, order: OrderFacts, policy: Policy) -> list[str]:
    return [d.evidence() for d in facts.hepatic]


@LIVER.evidence("decompensated", "the decompensation evidence, or the cirrhosis diagnoses")
def _decompensated_lines(facts: Liver, order: OrderFacts, policy: Policy) -> list[str]:
    return list(facts.decompensated or facts.cirrhosis)


@LIVER.evidence("liver_tests", "the latest ALT, AST and bilirubin with their ULN")
def _liver_lines(facts: Liver, order: OrderFacts, policy: Policy) -> list[str]:
    lines = []
    for finding in (facts.alt, facts.ast, facts.bilirubin):
        if finding is None or finding.value is None:
            continue
        multiple = f"{finding.uln_multiple:.1f}× ULN" if finding.uln_multiple is not None else "ULN unknown"
        limit = f"lab limit {finding.uln:g}" if finding.uln_from_lab else f"default limit {finding.uln:g}"
        value = f"{finding.value:g} {finding.unit or ''}".strip()
        lines.append(
            finding.evidence(f"{value}, {multiple} ({limit})" if finding.uln else f"{value}, {multiple}")
        )
    return lines


@LIVER.evidence("lft_absence", "the look-back with no ALT or AST")
def _lft_absence(facts: Liver, order: OrderFacts, policy: Policy) -> list[str]:
    return [f"no ALT or AST result dated on or after {since(facts.today, policy.lft_lookback_days)}"]
