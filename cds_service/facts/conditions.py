"""Diagnoses and allergies that are current, respecting clinical and verification status.

A Condition counts unless the record says otherwise: ``clinicalStatus`` inactive/remission/resolved, an
``abatement`` in the past, or ``verificationStatus`` refuted/entered-in-error/differential (one of several
possibilities under consideration). A missing status counts as current: absence is not reassurance.
Acute states (withdrawal) and time-limited ones (pregnancy) also need a recent enough date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from cds_service.facts.fhir import Resource, as_dict, as_list, first_day, reference_of
from cds_service.terminology import Terminology, codings, concept_texts

_INACTIVE = frozenset({"inactive", "remission", "resolved"})
_NOT_TRUE = frozenset({"refuted", "entered-in-error", "differential"})


@dataclass(frozen=True, slots=True)
class Diagnosis:
    reference: str
    name: str
    onset: date | None

    def evidence(self) -> str:
        since = f", since {self.onset.isoformat()}" if self.onset else ""
        return f"{self.name} — {self.reference}, active{since}"


def _status(resource: Resource, element: str) -> str | None:
    codes = [code for _, code in codings(resource.get(element))]
    return codes[0] if codes else None


def is_current(resource: Resource, today: date | None = None) -> bool:
    clinical = _status(resource, "clinicalStatus")
    verification = _status(resource, "verificationStatus")
    if clinical in _INACTIVE or verification in _NOT_TRUE:
        return False
    if resource.get("abatementBoolean") is True:
        return False
    abated = first_day(
        resource.get("abatementDateTime"), as_dict(resource.get("abatementPeriod")).get("end"), end=True
    )
    return abated is None or today is None or abated >= today


def current_diagnoses(
    conditions: Iterable[Resource],
    valueset: str,
    terminology: Terminology,
    today: date | None = None,
    *,
    within_days: int | None = None,
) -> list[Diagnosis]:
    """Current conditions coded in ``valueset``; with ``within_days``, only those dated that recently
    (by onset, else recorded date; an undated one still counts)."""
    members = terminology.valuesets.get(valueset)
    found = []
    for condition in conditions:
        if not is_current(condition, today):
            continue
        if not any(members.contains(s, c) for s, c in codings(condition.get("code"))):
            continue
        diagnosis = _diagnosis(condition)
        too_old = (
            within_days is not None
            and today is not None
            and diagnosis.onset is not None
            and (today - diagnosis.onset).days > within_days
        )
        if not too_old:
            found.append(diagnosis)
    return found


def _diagnosis(condition: Resource) -> Diagnosis:
    texts = concept_texts(condition.get("code"))
    onset = first_day(
        condition.get("onsetDateTime"),
        as_dict(condition.get("onsetPeriod")).get("start"),
        condition.get("recordedDate"),
    )
    return Diagnosis(reference_of(condition), texts[0] if texts else "diagnosis", onset)


def naltrexone_allergies(allergies: Iterable[Resource], terminology: Terminology) -> list[Diagnosis]:
    """Current allergies or intolerances whose substance is naltrexone (coded, or named in text)."""
    found = []
    for allergy in allergies:
        if not is_current(allergy):
            continue
        concepts = [allergy.get("code")] + [r.get("substance") for r in as_list(allergy.get("reaction"))]
        for concept in concepts:
            if terminology.in_valueset("naltrexone-allergens", concept) or terminology.lexicon.matches(
                "naltrexone", concept_texts(concept)
            ):
                texts = concept_texts(allergy.get("code"))
                kind = allergy.get("type") if allergy.get("type") in ("allergy", "intolerance") else "allergy"
                name = f"{kind}: {texts[0] if texts else 'naltrexone'}"
                found.append(Diagnosis(reference_of(allergy), name, first_day(allergy.get("recordedDate"))))
                break
    return found
