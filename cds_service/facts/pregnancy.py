"""Pregnancy now: a recent diagnosis, a positive hCG or a pregnancy status, unless something newer ends it.

A pregnancy ends with a delivery, the postpartum period, a pregnancy loss or termination (diagnoses coded in
``pregnancy-outcomes`` or so named, whatever their status; completed procedures coded so, or CPT delivery
and abortion codes), a negative hCG or a "not pregnant" status. Pregnancy evidence dated on or before the
end no longer counts (a problem list often keeps "pregnant" active long after the birth); an hCG stays
positive for weeks after a pregnancy ends, so a positive one counts only ``hcg_residual_days`` after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.facts.conditions import PROBLEMS, affirmed, current_diagnoses, is_refuted
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import RESULTS, Readings, coded_in, findings_in, observation_day, within
from cds_service.facts.orders import OrderFacts
from cds_service.fhir import Resource, as_dict, first_day, reference_of, text
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import CPT, Terminology, codings, concept_texts


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
    ended = _ended_on(derivation, today)
    if ended is not None:
        diagnoses = [d for d in diagnoses if d.onset is not None and d.onset > ended]
        if latest_test is not None and latest_test.result == "positive":
            residual = (latest_test.day - ended).days if latest_test.day else 0
            latest_test = latest_test if residual > policy.hcg_residual_days else None
    evidence = [d.evidence() for d in diagnoses]
    # A quantitative hCG is also a tumour marker: for a patient recorded as male it is not a pregnancy.
    if (
        latest_test is not None
        and latest_test.result == "positive"
        and not _recorded_male(inputs.record.of_type("Patient"))
    ):
        evidence.append(latest_test.evidence("positive"))
    status = _pregnancy_status(results, terminology, policy, today)
    if status and (ended is None or status[0] > ended):
        evidence.append(status[1])
    return Pregnancy(tuple(evidence))


def _ended_on(derivation: Derivation, today: date) -> date | None:
    """The latest day the record says a pregnancy ended (up to today), if any."""
    inputs = derivation.inputs
    terminology = inputs.terminology
    days: list[date] = []
    for condition in derivation.of(PROBLEMS).coded_in(
        "pregnancy-outcomes", terminology, named="pregnancy_ended"
    ):
        if is_refuted(condition) or terminology.lexicon.matches(
            "pregnancy_not_ended", concept_texts(condition.get("code"))
        ):
            continue
        day = first_day(
            condition.get("onsetDateTime"),
            as_dict(condition.get("onsetPeriod")).get("start"),
            condition.get("recordedDate"),
        )
        days += [day] if day else []
    for procedure in inputs.record.of_type("Procedure"):
        if text(procedure.get("status")) != "completed" or not _ends_pregnancy(procedure, terminology):
            continue
        period = as_dict(procedure.get("performedPeriod"))
        day = first_day(procedure.get("performedDateTime"), period.get("end"), period.get("start"))
        days += [day] if day else []
    for reading, observation in coded_in(derivation.of(RESULTS), "pregnancy-status-observation", terminology):
        if terminology.in_valueset("not-pregnant-answers", reading.get("valueCodeableConcept")):
            day = observation_day(observation)
            days += [day] if day else []
    return max((d for d in days if d <= today), default=None)


def _ends_pregnancy(procedure: Resource, terminology: Terminology) -> bool:
    concept = procedure.get("code")
    if terminology.in_valueset("pregnancy-outcomes", concept):
        return True
    if any(system == CPT and _in_ranges(code, _CPT_PREGNANCY_ENDING) for system, code in codings(concept)):
        return True
    names = [affirmed(name) for name in concept_texts(concept)]
    return terminology.lexicon.matches("pregnancy_ended", names) and not terminology.lexicon.matches(
        "pregnancy_not_ended", names
    )


# CPT vaginal and caesarean delivery (59400-59622) and abortion (59812-59857): ranges, as CPT is licensed.
_CPT_PREGNANCY_ENDING = ((59400, 59622), (59812, 59857))


def _in_ranges(code: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    return len(code) == 5 and code.isdigit() and any(low <= int(code) <= high for low, high in ranges)


def _recorded_male(patients: tuple[Resource, ...]) -> bool:
    return bool(patients) and all(p.get("gender") == "male" for p in patients)


def _pregnancy_status(
    results: Readings, terminology: Terminology, policy: Policy, today: date
) -> tuple[date, str] | None:
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
    return latest[0], f"pregnancy status — {reference_of(latest[2])}, {latest[0].isoformat()}: pregnant"


PREGNANCY = Domain(
    "pregnancy",
    _derive,
    valuesets=(
        "pregnancy-conditions",
        "hcg-tests",
        "pregnancy-status-observation",
        "pregnancy-answers",
        "pregnancy-outcomes",
        "not-pregnant-answers",
    ),
)


@PREGNANCY.fact(
    "pregnant", "pregnancy diagnosis, positive hCG or pregnancy status within `hcg_lookback_days`"
)
def _pregnant(facts: Pregnancy, order: OrderFacts) -> bool:
    return bool(facts.evidence)


@PREGNANCY.evidence("pregnancy", "what says the patient is pregnant")
def _lines(facts: Pregnancy, order: OrderFacts, policy: Policy) -> list[str]:
    return list(facts.evidence)
