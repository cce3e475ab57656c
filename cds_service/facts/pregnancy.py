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

from cds_service.facts.conditions import PROBLEMS, affirmed, current_diagnoses, status_code
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.observations import (
    RESULTS,
    Finding,
    Readings,
    coded_in,
    findings_in,
    observation_day,
    within,
)
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day, fact_line
from cds_service.fhir import Resource, as_dict, as_list, first_day, reference_of, text
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import CPT, SNOMED, Terminology, codings, concept_texts


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
    # A negative test or a "not pregnant" status discards older evidence only; an outcome (delivery, loss,
    # termination) also makes a positive hCG in the weeks after it residual.
    not_pregnant = _not_pregnant_on(derivation, latest_test, today)
    outcome = _outcome_on(derivation, today)
    for ended in (not_pregnant, outcome):
        if ended is not None:
            # an undated diagnosis is kept: nothing shows it predates the end
            diagnoses = [d for d in diagnoses if d.onset is None or d.onset > ended]
    if latest_test is not None and latest_test.result == "positive" and outcome is not None:
        residual = (latest_test.day - outcome).days if latest_test.day else 0
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
    if status and all(ended is None or status[0] > ended for ended in (not_pregnant, outcome)):
        evidence.append(status[1])
    return Pregnancy(tuple(evidence))


def _not_pregnant_on(derivation: Derivation, latest_test: Finding | None, today: date) -> date | None:
    """The latest negative pregnancy test or "not pregnant" status, up to today."""
    days = [latest_test.day] if latest_test and latest_test.result == "negative" and latest_test.day else []
    terminology = derivation.inputs.terminology
    for reading, observation in coded_in(derivation.of(RESULTS), "pregnancy-status-observation", terminology):
        if terminology.in_valueset("not-pregnant-answers", reading.get("valueCodeableConcept")):
            seen = observation_day(observation)
            days += [seen] if seen else []
    return max((d for d in days if d <= today), default=None)


def _outcome_on(derivation: Derivation, today: date) -> date | None:
    """The latest day the record says a pregnancy ended in a delivery, a loss or a termination."""
    inputs = derivation.inputs
    terminology = inputs.terminology
    days: list[date] = []
    for condition in derivation.of(PROBLEMS).coded_in(
        "pregnancy-outcomes", terminology, named="pregnancy_ended"
    ):
        if not _confirmed(condition) or terminology.lexicon.matches(
            "pregnancy_not_ended", concept_texts(condition.get("code"))
        ):
            continue
        day = first_day(
            condition.get("onsetDateTime"),
            as_dict(condition.get("onsetPeriod")).get("start"),
            condition.get("abatementDateTime"),
            # a recorded date dates the outcome only when recorded at the encounter it happened in: a
            # history entry imported today for a birth years ago must not end a current pregnancy
            condition.get("recordedDate") if _encounter_diagnosis(condition) else None,
        )
        days += [day] if day else []
    for procedure in inputs.record.of_type("Procedure"):
        if text(procedure.get("status")) != "completed" or not _ends_pregnancy(procedure, terminology):
            continue
        period = as_dict(procedure.get("performedPeriod"))
        day = first_day(procedure.get("performedDateTime"), period.get("end"), period.get("start"))
        days += [day] if day else []
    return max((d for d in days if d <= today), default=None)


def _confirmed(condition: Resource) -> bool:
    """Confirmed, or no verification status: a suspected (provisional) miscarriage ends nothing."""
    status = status_code(condition, "verificationStatus")
    return status is None or status == "confirmed"


def _encounter_diagnosis(condition: Resource) -> bool:
    return any(
        code == "encounter-diagnosis" for c in as_list(condition.get("category")) for _, code in codings(c)
    )


def _ends_pregnancy(procedure: Resource, terminology: Terminology) -> bool:
    """A completed delivery, evacuation or termination. Codes decide; words count only without a code."""
    concept = procedure.get("code")
    if terminology.in_valueset("pregnancy-outcomes", concept):
        return True
    codes = list(codings(concept))
    if any(system == CPT and code in _CPT_PREGNANCY_ENDING for system, code in codes):
        return True
    if any(system in (CPT, SNOMED) for system, _ in codes):
        return False
    texts = concept_texts(concept)
    return terminology.lexicon.matches(
        "pregnancy_ended", [affirmed(name) for name in texts]
    ) and not terminology.lexicon.matches("pregnancy_not_ended", texts)


# CPT codes that record a delivery, postpartum care or the end of a pregnancy: vaginal and caesarean
# deliveries (with or without antepartum and postpartum care), delivery of the placenta, postpartum care,
# postpartum curettage, and the treatment of incomplete, missed or septic abortion and induced abortion.
# Antepartum care alone (59425, 59426) and external cephalic version (59412) are not among them.
_CPT_PREGNANCY_ENDING = frozenset(
    {
        "59160", "59400", "59409", "59410", "59414", "59430", "59510", "59514", "59515", "59610", "59612",
        "59614", "59618", "59620", "59622", "59812", "59820", "59821", "59830", "59840", "59841", "59850",
        "59851", "59852", "59855", "59856", "59857",
    }
)  # fmt: skip


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
    return latest[0], fact_line("pregnancy status: pregnant", day(latest[0]), reference_of(latest[2]))


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
