"""Laboratory results and the naloxone challenge, as dated, interpreted findings.

How a result is read, in order: the Observation's ``interpretation`` (POS/DET/A/H... vs NEG/ND/N),
then a coded value (positive/negative answer value sets), then a ``valueString`` ("POS", "Negative",
"not detected"...), then a ``valueBoolean``, then a ``valueQuantity`` against its reference range.
A result none of these decide is *unreadable*: it is never taken as negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from cds_service.facts.fhir import Resource, as_dict, as_list, first_day, number, reference_of, text
from cds_service.terminology import V3_INTERPRETATION, Terminology, codings, concept_texts

Result = Literal["positive", "negative"]

_COUNTED_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
_POSITIVE_INTERPRETATIONS = frozenset({"POS", "DET", "A", "AA", "H", "HH", "HU", ">"})
_NEGATIVE_INTERPRETATIONS = frozenset({"NEG", "ND", "N"})
NALOXONE_CHALLENGE = ("http://naltrexone-cds.org/fhir/CodeSystem/observation", "naloxone-challenge")


@dataclass(frozen=True, slots=True)
class Finding:
    reference: str
    name: str
    day: date | None
    result: Result | None
    value: float | None = None
    unit: str | None = None
    uln: float | None = None
    uln_from_lab: bool = False

    @property
    def uln_multiple(self) -> float | None:
        if self.value is None or not self.uln:
            return None
        return self.value / self.uln

    def evidence(self, what: str | None = None) -> str:
        when = self.day.isoformat() if self.day else "date not recorded"
        if what is None:
            what = self.result or "result could not be read"
        return f"{self.name} — {self.reference}, {when}: {what}"


def counted(observation: Resource) -> bool:
    return text(observation.get("status")) in _COUNTED_STATUSES


def observation_day(observation: Resource) -> date | None:
    period = as_dict(observation.get("effectivePeriod"))
    return first_day(
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("end"),
        period.get("start"),
        observation.get("issued"),
    )


def observation_name(observation: Resource) -> str:
    code = as_dict(observation.get("code"))
    texts = concept_texts(code)
    return texts[0] if texts else "observation"


def read_result(observation: Resource, terminology: Terminology) -> Result | None:
    for interpretation in as_list(observation.get("interpretation")):
        for system, code in codings(interpretation):
            if system == V3_INTERPRETATION and code.upper() in _POSITIVE_INTERPRETATIONS:
                return "positive"
            if system == V3_INTERPRETATION and code.upper() in _NEGATIVE_INTERPRETATIONS:
                return "negative"
    value_concept = observation.get("valueCodeableConcept")
    if isinstance(value_concept, Mapping):
        if terminology.in_valueset("result-positive", value_concept):
            return "positive"
        if terminology.in_valueset("result-negative", value_concept):
            return "negative"
        texts = concept_texts(value_concept)
        if terminology.lexicon.matches("positive", texts):
            return "positive"
        if terminology.lexicon.matches("negative", texts):
            return "negative"
    value_string = text(observation.get("valueString"))
    if value_string is not None:
        if terminology.lexicon.matches("positive", [value_string]):
            return "positive"
        if terminology.lexicon.matches("negative", [value_string]):
            return "negative"
    if isinstance(observation.get("valueBoolean"), bool):
        return "positive" if observation["valueBoolean"] else "negative"
    quantity = as_dict(observation.get("valueQuantity"))
    value = number(quantity.get("value"))
    high = _reference_high(observation)
    if value is not None and high is not None:
        return "positive" if value > high else "negative"
    return None


def _reference_high(observation: Resource) -> float | None:
    for reference_range in as_list(observation.get("referenceRange")):
        high = number(as_dict(reference_range.get("high")).get("value"))
        if high is not None:
            return high
    return None


def coded_in(observations: Iterable[Resource], valueset: str, terminology: Terminology) -> Iterable[Resource]:
    """Observations with a counted status whose code is in ``valueset``."""
    members = terminology.valuesets.get(valueset)
    for observation in observations:
        if counted(observation) and any(members.contains(s, c) for s, c in codings(observation.get("code"))):
            yield observation


def findings_in(observations: Iterable[Resource], valueset: str, terminology: Terminology) -> list[Finding]:
    """Counted observations whose code is in ``valueset``, newest first (undated last)."""
    found = []
    for observation in coded_in(observations, valueset, terminology):
        found.append(
            Finding(
                reference=reference_of(observation),
                name=observation_name(observation),
                day=observation_day(observation),
                result=read_result(observation, terminology),
            )
        )
    return _newest_first(found)


def naloxone_challenges(observations: Iterable[Resource], terminology: Terminology) -> list[Finding]:
    """Challenges recorded as described in rules/README.md, newest first."""
    found = []
    for observation in observations:
        code = observation.get("code")
        if NALOXONE_CHALLENGE not in set(codings(code)) and not terminology.lexicon.matches(
            "naloxone_challenge", concept_texts(code)
        ):
            continue
        if not counted(observation):
            continue
        found.append(
            Finding(
                reference=reference_of(observation),
                name="naloxone challenge",
                day=observation_day(observation),
                result=read_result(observation, terminology),
            )
        )
    return _newest_first(found)


def quantitative(
    observations: Iterable[Resource], valueset: str, terminology: Terminology, default_uln: Any
) -> list[Finding]:
    """Counted numeric results in ``valueset`` with their upper limit of normal, newest first.

    ``default_uln`` maps a unit (lower case) to the ULN used when the result has no reference range.
    """
    found = []
    for observation in coded_in(observations, valueset, terminology):
        quantity = as_dict(observation.get("valueQuantity"))
        value = number(quantity.get("value"))
        if value is None:
            continue
        unit = text(quantity.get("unit")) or text(quantity.get("code"))
        lab_uln = _reference_high(observation)
        uln = lab_uln if lab_uln else default_uln.get((unit or "").lower())
        found.append(
            Finding(
                reference=reference_of(observation),
                name=observation_name(observation),
                day=observation_day(observation),
                result=None,
                value=value,
                unit=unit,
                uln=uln,
                uln_from_lab=bool(lab_uln),
            )
        )
    return _newest_first(found)


def _newest_first(found: list[Finding]) -> list[Finding]:
    return sorted(found, key=lambda f: (f.day is not None, f.day or date.min), reverse=True)


def within(finding: Finding, today: date, days: int) -> bool:
    return finding.day is not None and 0 <= (today - finding.day).days <= days
