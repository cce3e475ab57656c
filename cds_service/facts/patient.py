"""What the record says about the patient, each statement with the FHIR references behind it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.conditions import Allergy, Diagnosis, Problems, allergies_to, current_diagnoses
from cds_service.facts.fhir import Resource, as_dict, number, reference_of, text
from cds_service.facts.medications import NALTREXONE_CLASSES, Exposure, ProductClass
from cds_service.facts.observations import (
    Finding,
    Readings,
    bilirubin_results,
    coded_in,
    enzyme_results,
    findings_in,
    naloxone_challenges,
    observation_day,
    within,
)
from cds_service.facts.orders import ClassifiedOrder
from cds_service.gather import Availability, PatientRecord
from cds_service.policy import Policy
from cds_service.terminology import Terminology, concept_texts


@dataclass(frozen=True)
class PatientFacts:
    today: date
    current_opioids: tuple[Exposure, ...]
    recent_opioids: tuple[Exposure, ...]
    """Opioid exposure that ended inside the opioid-free interval (and is not current)."""
    earliest_start: date | None
    """First day a naltrexone start is outside every opioid-free interval (None: no recent opioid)."""
    opioids_within_lookback: tuple[Exposure, ...]
    draft_opioids: tuple[tuple[str, str], ...]
    """(reference, name) of opioid orders among the draft orders of the same session."""
    naltrexone_history: tuple[Exposure, ...]
    antidiarrheals_current: tuple[Exposure, ...]
    naloxone_rescue: tuple[str, ...]
    """References of naloxone/nalmefene prescriptions in the look-back (or in this session's drafts)."""
    unidentified_medications: tuple[Exposure, ...]
    uds_positive: Finding | None
    """The newest positive urine opioid screen in the look-back that a newer screen has not cleared
    (else the newest cleared one, with ``uds_cleared_by`` set)."""
    uds_cleared_by: tuple[Finding, ...]
    """Newer negative screens of every analyte ``uds_positive`` was positive for, the wait since met."""
    challenge_after_uds: Finding | None
    uds_recent: Finding | None
    challenge_latest: Finding | None
    """The newest readable naloxone challenge in the look-back."""
    unreadable_results: tuple[Finding, ...]
    """Screens, challenges and liver tests in their look-backs that could not be read, with no newer
    readable result of the same test."""
    alt: Finding | None
    ast: Finding | None
    bilirubin: Finding | None
    oud: tuple[Diagnosis, ...]
    aud: tuple[Diagnosis, ...]
    withdrawal: tuple[Diagnosis, ...]
    hepatic: tuple[Diagnosis, ...]
    decompensated_cirrhosis: tuple[str, ...]
    """Evidence lines of decompensated liver disease (diagnoses, events, Child-Pugh C)."""
    cirrhosis: tuple[str, ...]
    """Cirrhosis of any kind (compensated included): naltrexone exposure is about 5× higher."""
    pregnancy: tuple[str, ...]
    allergies: tuple[Allergy, ...]
    """Current allergies or intolerances to naltrexone."""
    naloxone_allergies: tuple[Allergy, ...]
    """Current allergies or intolerances to naloxone or nalmefene (cross-sensitivity unknown)."""
    unavailable: Mapping[str, tuple[str, ...]]
    """Data domain -> why it could not be obtained (only domains that could not)."""

    @property
    def lft_max_multiple(self) -> float | None:
        multiples = [f.uln_multiple for f in (self.alt, self.ast) if f and f.uln_multiple is not None]
        return max(multiples) if multiples else None


def patient_facts(
    history: Sequence[Exposure],
    drafts: Sequence[ClassifiedOrder],
    record: PatientRecord,
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> PatientFacts:
    opioids = [e for e in history if e.product.product_class is ProductClass.OPIOID]
    recent, earliest = _within_washout(opioids, policy, today)
    lookback = today - timedelta(days=policy.opioid_exposure_lookback_days)
    observations = Readings(record.of_type("Observation"))
    conditions = Problems(record.of_type("Condition"))
    uds, challenges, unreadable = _screens_and_challenges(observations, terminology, policy, today)
    alt = enzyme_results(observations, "alt-tests", terminology, policy.default_uln.alt_u_per_l)
    ast = enzyme_results(observations, "ast-tests", terminology, policy.default_uln.ast_u_per_l)
    bilirubin = bilirubin_results(observations, terminology, policy.default_uln.bilirubin_mg_per_dl)
    for results in (alt, ast, bilirubin):
        unreadable += _unread_since_readable(results, today, policy.lft_lookback_days)
    return PatientFacts(
        today=today,
        current_opioids=tuple(e for e in opioids if e.current),
        recent_opioids=recent,
        earliest_start=earliest,
        opioids_within_lookback=tuple(e for e in opioids if e.current or (e.end and e.end >= lookback)),
        draft_opioids=tuple((reference_of(d.resource), d.product.name) for d in drafts if d.kind == "opioid"),
        naltrexone_history=tuple(e for e in history if e.product.product_class in NALTREXONE_CLASSES),
        antidiarrheals_current=tuple(
            e for e in history if e.product.product_class is ProductClass.ANTIDIARRHEAL_OPIOID and e.current
        ),
        naloxone_rescue=_naloxone_rescue(history, drafts, policy, today),
        unidentified_medications=tuple(
            e
            for e in history
            if e.product.product_class is ProductClass.UNIDENTIFIED
            and (e.current or (e.end and e.end >= lookback))
        ),
        uds_positive=uds.positive,
        uds_cleared_by=uds.cleared_by,
        challenge_after_uds=uds.challenge_after,
        uds_recent=uds.recent,
        challenge_latest=challenges,
        unreadable_results=tuple(unreadable),
        alt=_latest_within(alt, today, policy.lft_lookback_days),
        ast=_latest_within(ast, today, policy.lft_lookback_days),
        bilirubin=_latest_within(bilirubin, today, policy.lft_lookback_days),
        oud=tuple(current_diagnoses(conditions, "opioid-use-disorder", terminology, today)),
        aud=tuple(current_diagnoses(conditions, "alcohol-use-disorder", terminology, today)),
        withdrawal=tuple(
            current_diagnoses(
                conditions,
                "opioid-withdrawal",
                terminology,
                today,
                within_days=policy.withdrawal_lookback_days,
            )
        ),
        hepatic=tuple(current_diagnoses(conditions, "acute-hepatitis-or-liver-failure", terminology, today)),
        decompensated_cirrhosis=_decompensated(conditions, observations, terminology, policy, today),
        cirrhosis=_cirrhosis(conditions, terminology, today),
        pregnancy=_pregnancy(record, conditions, observations, terminology, policy, today),
        allergies=tuple(
            allergies_to(
                record.of_type("AllergyIntolerance"), "naltrexone-allergens", "naltrexone", terminology
            )
        ),
        naloxone_allergies=tuple(
            allergies_to(
                record.of_type("AllergyIntolerance"), "naloxone-allergens", "naloxone_allergen", terminology
            )
        ),
        unavailable={
            domain: data.problems
            for domain, data in record.domains.items()
            if data.availability is Availability.UNAVAILABLE
        },
    )


def _within_washout(
    opioids: Sequence[Exposure], policy: Policy, today: date
) -> tuple[tuple[Exposure, ...], date | None]:
    recent = []
    earliest: date | None = None
    for exposure in opioids:
        if exposure.current or exposure.end is None:
            continue
        safe = exposure.end + timedelta(days=policy.washout_days(long_acting=exposure.product.long_acting))
        if safe > today:
            recent.append(exposure)
            earliest = max(earliest, safe) if earliest else safe
    return tuple(recent), earliest


def _naloxone_rescue(
    history: Sequence[Exposure], drafts: Sequence[ClassifiedOrder], policy: Policy, today: date
) -> tuple[str, ...]:
    """Prescriptions or dispenses (not a dose given in clinic, e.g. the challenge vial), and drafts."""
    since = today - timedelta(days=policy.naloxone_rescue_lookback_days)
    prescribed = tuple(
        e.reference
        for e in history
        if e.product.product_class is ProductClass.NALOXONE_RESCUE
        and e.kind != "administration"
        and (e.current or (e.start or e.end or date.min) >= since)
    )
    drafted = tuple(
        reference_of(d.resource) for d in drafts if d.product.product_class is ProductClass.NALOXONE_RESCUE
    )
    return prescribed + drafted


@dataclass(frozen=True)
class _Screens:
    positive: Finding | None
    cleared_by: tuple[Finding, ...]
    challenge_after: Finding | None
    recent: Finding | None


def _screens_and_challenges(
    observations: Readings, terminology: Terminology, policy: Policy, today: date
) -> tuple[_Screens, Finding | None, list[Finding]]:
    uds = findings_in(observations, "opioid-urine-screens", terminology, named="opioid_drug_test")
    challenges = [
        c for c in naloxone_challenges(observations, terminology)
        if within(c, today, policy.naloxone_challenge_lookback_days)
    ]  # fmt: skip
    readable_challenges = [c for c in challenges if c.result != "unreadable"]
    positives = [
        f for f in uds if f.result == "positive" and within(f, today, policy.uds_positive_lookback_days)
    ]
    cleared = {id(p): _cleared_by(p, uds, policy, today) for p in positives}
    standing = [p for p in positives if not cleared[id(p)]]
    positive = standing[0] if standing else (positives[0] if positives else None)
    passed_after = None
    if positive is not None and positive.day is not None:
        day = positive.day
        passed_after = next(
            (c for c in readable_challenges if c.result == "negative" and c.day and c.day >= day), None
        )
    recent = next((f for f in uds if within(f, today, policy.uds_recent_days)), None)
    unreadable = _unread_since_readable(uds, today, policy.uds_positive_lookback_days)
    unreadable += _unread_since_readable(challenges, today, policy.naloxone_challenge_lookback_days)
    screens = _Screens(
        positive=positive,
        cleared_by=cleared[id(positive)] if positive is not None else (),
        challenge_after=passed_after,
        recent=recent,
    )
    return screens, (readable_challenges[0] if readable_challenges else None), unreadable


def _cleared_by(
    positive: Finding, screens: Sequence[Finding], policy: Policy, today: date
) -> tuple[Finding, ...]:
    """Newer screens negative for every analyte ``positive`` was positive for, once the opioid-free wait
    since the positive one has passed; empty if any analyte is not cleared."""
    if positive.day is None:
        return ()
    found: list[Finding] = []
    for analyte, result in positive.analytes.items():
        if result != "positive":
            continue
        wait = policy.washout_days(long_acting=analyte in _LONG_ACTING_ANALYTES)
        if (today - positive.day).days < wait:
            return ()
        newer = next(
            (
                s
                for s in screens
                if s.day is not None and s.day > positive.day and s.analytes.get(analyte) == "negative"
            ),
            None,
        )
        if newer is None:
            return ()
        if newer not in found:
            found.append(newer)
    return tuple(found)


_LONG_ACTING_ANALYTES = frozenset({"methadone", "buprenorphine"})


def _unread_since_readable(results: Sequence[Finding], today: date, days: int) -> list[Finding]:
    """Unreadable results in the look-back newer than the newest readable result of the same test."""
    unreadable = []
    for finding in results:  # newest first
        if not within(finding, today, days):
            continue
        if finding.result != "unreadable":
            break
        unreadable.append(finding)
    return unreadable


def _latest_within(results: Sequence[Finding], today: date, days: int) -> Finding | None:
    """The newest readable result in the look-back."""
    return next((f for f in results if f.result != "unreadable" and within(f, today, days)), None)


def _decompensated(
    conditions: Problems, observations: Readings, terminology: Terminology, policy: Policy, today: date
) -> tuple[str, ...]:
    """Evidence of decompensated liver disease: a code that says so, any decompensation event (ascites,
    varices, portal hypertension, hepatorenal syndrome, encephalopathy, SBP; current, or an episode in the
    look-back), or Child-Pugh class C (written in a diagnosis, or a score of 10-15)."""
    coded = current_diagnoses(conditions, "decompensated-cirrhosis", terminology, today, named="child_pugh_c")
    events = current_diagnoses(
        conditions,
        "liver-decompensation-events",
        terminology,
        today,
        named="liver_decompensation",
        or_recorded_within=policy.decompensation_lookback_days,
    )
    evidence = [d.evidence() for d in dict.fromkeys(coded + events)]
    for reading, observation in observations.matching(lambda code: False, terminology, named="child_pugh"):
        day = observation_day(observation)
        if day is not None and (today - day).days > policy.decompensation_lookback_days:
            continue
        if _child_pugh_class(reading, terminology) == "C":
            evidence.append(f"Child-Pugh class C — {reference_of(observation)}, {_day_text(day)}")
    return tuple(evidence)


def _child_pugh_class(observation: Resource, terminology: Terminology) -> str | None:
    """The class a Child-Pugh Observation states: a score (5-6 A, 7-9 B, 10-15 C) or the letter."""
    score = number(as_dict(observation.get("valueQuantity")).get("value"))
    if score is None and isinstance(observation.get("valueInteger"), int):
        score = float(observation["valueInteger"])
    if score is not None:
        return "C" if score >= 10 else "B" if score >= 7 else "A"
    said = [
        *concept_texts(observation.get("valueCodeableConcept")),
        text(observation.get("valueString")) or "",
    ]
    for words in said:
        letter = re.search(r"(?:^|\b(?:class|grade|child[- ]?pugh)\s*)([abc])\s*$", words.strip(), re.I)
        if letter:
            return letter.group(1).upper()
    return None


def _day_text(day: date | None) -> str:
    return day.isoformat() if day else "date not recorded"


def _cirrhosis(conditions: Problems, terminology: Terminology, today: date) -> tuple[str, ...]:
    return tuple(
        d.evidence()
        for d in current_diagnoses(conditions, "cirrhosis", terminology, today, named="cirrhosis")
    )


def _pregnancy(
    record: PatientRecord,
    conditions: Problems,
    observations: Readings,
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> tuple[str, ...]:
    """Current pregnancy: a recent diagnosis, a positive hCG or a pregnancy status, unless a newer test
    or status says not pregnant."""
    diagnoses = current_diagnoses(
        conditions, "pregnancy-conditions", terminology, today, within_days=policy.pregnancy_max_days
    )
    tests = [
        f
        for f in findings_in(observations, "hcg-tests", terminology, kind="presence")
        if f.result in ("positive", "negative")
    ]
    latest_test = next((f for f in tests if within(f, today, policy.hcg_lookback_days)), None)
    if latest_test is not None and latest_test.result == "negative" and latest_test.day is not None:
        test_day = latest_test.day
        diagnoses = [d for d in diagnoses if d.onset is None or d.onset > test_day]
    evidence = [d.evidence() for d in diagnoses]
    # A quantitative hCG is also a tumour marker: for a patient recorded as male it is not a pregnancy.
    if latest_test is not None and latest_test.result == "positive" and not _recorded_male(record):
        evidence.append(latest_test.evidence("positive"))
    status = _pregnancy_status(observations, terminology, policy, today)
    if status:
        evidence.append(status)
    return tuple(evidence)


def _recorded_male(record: PatientRecord) -> bool:
    patients = record.of_type("Patient")
    return bool(patients) and all(p.get("gender") == "male" for p in patients)


def _pregnancy_status(
    observations: Readings, terminology: Terminology, policy: Policy, today: date
) -> str | None:
    latest: tuple[date, Resource, Resource] | None = None
    for reading, observation in coded_in(observations, "pregnancy-status-observation", terminology):
        day = observation_day(observation)
        if day is None or (today - day).days > policy.hcg_lookback_days:
            continue
        if latest is None or day > latest[0]:
            latest = (day, reading, observation)
    if latest is None or not terminology.in_valueset(
        "pregnancy-answers", latest[1].get("valueCodeableConcept")
    ):
        return None
    return f"pregnancy status — {reference_of(latest[2])}, {latest[0].isoformat()}: pregnant"
