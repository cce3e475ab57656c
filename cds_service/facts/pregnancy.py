"""Pregnancy now: a recent diagnosis, a positive hCG or a pregnancy status, unless something newer ends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.facts.conditions import PROBLEMS, current_diagnoses
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import RESULTS, Readings, coded_in, findings_in, observation_day, within
from cds_service.facts.orders import OrderFacts
from cds_service.fhir import Resource, reference_of
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import Terminology


@dataclass(frozen=True)
class Pregnancy:
    evidence: tuple[str, ...]
    """Evidence lines of a current pregnancy (empty: none on record)."""


def _derive(derivation: Derivation) -> Pregnancy:
    inputs = derivation.inputs
    policy, today, terminology = inputs.policy, inputs.today, inputs.terminology
    results = derivation.of(RESULTS)
    diagnoses = current_diagnoses(
        derivation.of(PROBLEMS),
        "pregnancy-conditions",
        terminology,
        today,
        within_days=policy.pregnancy_max_days,
    )
    tests = [
        f
        for f in findings_in(results, "hcg-tests", terminology, kind="presence")
        if f.result in ("positive", "negative")
    ]
    latest_test = next((f for f in tests if within(f, today, policy.hcg_lookback_days)), None)
    if latest_test is not None and latest_test.result == "negative" and latest_test.day is not None:
        test_day = latest_test.day
        diagnoses = [d for d in diagnoses if d.onset is None or d.onset > test_day]
    evidence = [d.evidence() for d in diagnoses]
    # A quantitative hCG is also a tumour marker: for a patient recorded as male it is not a pregnancy.
    if (
        latest_test is not None
        and latest_test.result == "positive"
        and not _recorded_male(inputs.record.of_type("Patient"))
    ):
        evidence.append(latest_test.evidence("positive"))
    status = _pregnancy_status(results, terminology, policy, today)
    if status:
        evidence.append(status)
    return Pregnancy(tuple(evidence))


def _recorded_male(patients: tuple[Resource, ...]) -> bool:
    return bool(patients) and all(p.get("gender") == "male" for p in patients)


def _pregnancy_status(results: Readings, terminology: Terminology, policy: Policy, today: date) -> str | None:
    latest: tuple[date, Resource, Resource] | None = None
    for reading, observation in coded_in(results, "pregnancy-status-observation", terminology):
        seen = observation_day(observation)
        if seen is None or (today - seen).days > policy.hcg_lookback_days:
            continue
        if latest is None or seen > latest[0]:
            latest = (seen, reading, observation)
    if latest is None or not terminology.in_valueset(
        "pregnancy-answers", latest[1].get("valueCodeableConcept")
    ):
        return None
    return f"pregnancy status — {reference_of(latest[2])}, {latest[0].isoformat()}: pregnant"


PREGNANCY = Domain(
    "pregnancy",
    _derive,
    valuesets=("pregnancy-conditions", "hcg-tests", "pregnancy-status-observation", "pregnancy-answers"),
)


@PREGNANCY.fact(
    "pregnant", "pregnancy diagnosis, positive hCG or pregnancy status within `hcg_lookback_days`"
)
def _pregnant(facts: Pregnancy, order: OrderFacts) -> bool:
    return bool(facts.evidence)


@PREGNANCY.evidence("pregnancy", "what says the patient is pregnant")
def _lines(facts: Pregnancy, order: OrderFacts, policy: Policy) -> list[str]:
    return list(facts.evidence)
