"""Diagnoses and allergies that are current, respecting clinical and verification status.

A Condition counts unless the record says otherwise: ``clinicalStatus`` inactive/remission/resolved, an
``abatement`` in the past, or ``verificationStatus`` refuted/entered-in-error/differential (one of several
possibilities under consideration). A missing status counts as current: absence is not reassurance.
Acute states (withdrawal) and time-limited ones (pregnancy) also need a recent enough date.

``Problems`` indexes a record's conditions by code once, so the many value-set questions the rules ask
cost the number of distinct codes, not of conditions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from cds_service.facts.fhir import Resource, as_dict, as_list, first_day, reference_of
from cds_service.terminology import Code, Terminology, codings, concept_texts

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


class Problems:
    """A record's Conditions, indexed by code."""

    def __init__(self, conditions: Iterable[Resource]) -> None:
        self._conditions: list[Resource] = []
        self._by_code: defaultdict[Code, list[int]] = defaultdict(list)
        for position, condition in enumerate(conditions):
            self._conditions.append(condition)
            for coding in set(codings(condition.get("code"))):
                self._by_code[coding].append(position)

    def coded_in(self, valueset: str, terminology: Terminology) -> list[Resource]:
        members = terminology.valuesets.get(valueset)
        positions: set[int] = set()
        for (system, code), where in self._by_code.items():
            if members.contains(system, code):
                positions.update(where)
        return [self._conditions[p] for p in sorted(positions)]


def current_diagnoses(
    conditions: Iterable[Resource] | Problems,
    valueset: str,
    terminology: Terminology,
    today: date | None = None,
    *,
    within_days: int | None = None,
) -> list[Diagnosis]:
    """Current conditions coded in ``valueset``; with ``within_days``, only those dated that recently
    (by onset, else recorded date; an undated one still counts)."""
    problems = conditions if isinstance(conditions, Problems) else Problems(conditions)
    found = []
    for condition in problems.coded_in(valueset, terminology):
        if not is_current(condition, today):
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
