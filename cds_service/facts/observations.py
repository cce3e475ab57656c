"""Laboratory results and the naloxone challenge, as dated, interpreted findings.

How a result is read, in order: the Observation's ``interpretation`` (POS/DET/A/H... vs NEG/ND/N, HL7
v3 or v2 table 0078), then a coded value (positive/negative answer value sets), then words in a coded
value's text or a ``valueString`` ("Presumptive positive", "not detected", "FAIL - withdrawal signs"...;
negative wording is checked first, so "not detected" is never read as "detected"), then a
``valueBoolean`` (screens only: true = present), then a ``valueQuantity`` against its reference range.
A result none of these decide is *unreadable*: it is never taken as negative.

Drug panels often carry each drug as a ``component``: components are read like Observations of their own,
dated and statused by their parent.

A long-lived patient has thousands of results and the rules ask a dozen questions of them ("the ALTs",
"the urine opioid screens"...): ``Readings`` indexes them once by code and by name, so that each question
costs the number of *distinct* codes and names in the record, not the number of results.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from cds_service.facts.fhir import Resource, as_dict, as_list, first_day, number, reference_of, text
from cds_service.terminology import V3_INTERPRETATION, Code, Terminology, codings, concept_texts

Result = Literal["positive", "negative"]

_COUNTED_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
_INTERPRETATION_SYSTEMS = frozenset(
    {V3_INTERPRETATION, "http://terminology.hl7.org/CodeSystem/v2-0078", "http://hl7.org/fhir/v2/0078"}
)
_POSITIVE_INTERPRETATIONS = frozenset({"POS", "DET", "A", "AA", "H", "HH", "HU", ">"})
_NEGATIVE_INTERPRETATIONS = frozenset({"NEG", "ND", "N"})
NALOXONE_CHALLENGE = ("http://naltrexone-cds.org/fhir/CodeSystem/observation", "naloxone-challenge")
# Enzyme activity units as labs spell them, and their factor to U/L.
_ENZYME_UNITS = {
    "u/l": 1.0,
    "iu/l": 1.0,
    "[iu]/l": 1.0,
    "units/l": 1.0,
    "unit/l": 1.0,
    "ukat/l": 60.0,
    "µkat/l": 60.0,
}
_BILIRUBIN_UNITS = {"mg/dl": "mg/dl", "umol/l": "umol/l", "µmol/l": "umol/l", "micromol/l": "umol/l"}


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
    texts = concept_texts(observation.get("code"))
    return texts[0] if texts else "observation"


def read_result(
    observation: Resource, terminology: Terminology, *, boolean_is_presence: bool = True
) -> Result | None:
    for interpretation in as_list(observation.get("interpretation")):
        for system, code in codings(interpretation):
            if system in _INTERPRETATION_SYSTEMS and code.upper() in _POSITIVE_INTERPRETATIONS:
                return "positive"
            if system in _INTERPRETATION_SYSTEMS and code.upper() in _NEGATIVE_INTERPRETATIONS:
                return "negative"
    value_concept = observation.get("valueCodeableConcept")
    if isinstance(value_concept, Mapping):
        if terminology.in_valueset("result-positive", value_concept):
            return "positive"
        if terminology.in_valueset("result-negative", value_concept):
            return "negative"
    words = concept_texts(value_concept) + [t for t in (text(observation.get("valueString")),) if t]
    if terminology.lexicon.matches("negative", words):
        return "negative"
    if terminology.lexicon.matches("positive", words):
        return "positive"
    if boolean_is_presence and isinstance(observation.get("valueBoolean"), bool):
        return "positive" if observation["valueBoolean"] else "negative"
    value = number(as_dict(observation.get("valueQuantity")).get("value"))
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


def _readings(observations: Iterable[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """(reading, the Observation it belongs to): each counted Observation and each of its components."""
    for observation in observations:
        if not counted(observation):
            continue
        yield observation, observation
        for component in as_list(observation.get("component")):
            yield component, observation


class Readings:
    """The counted readings of a record (Observations and their components), indexed by code and name."""

    def __init__(self, observations: Iterable[Resource]) -> None:
        self._readings: list[tuple[Resource, Resource]] = []
        self._by_code: defaultdict[Code, list[int]] = defaultdict(list)
        self._by_name: defaultdict[str, list[int]] = defaultdict(list)
        for position, (reading, observation) in enumerate(_readings(observations)):
            self._readings.append((reading, observation))
            code = reading.get("code")
            for coding in set(codings(code)):
                self._by_code[coding].append(position)
            for name in set(concept_texts(code)):
                self._by_name[name].append(position)

    def matching(
        self, code_test: Callable[[Code], bool], terminology: Terminology, named: str | None = None
    ) -> list[tuple[Resource, Resource]]:
        """(reading, observation) pairs, in record order, whose code passes ``code_test`` or (for a
        local code) whose name matches the lexicon pattern ``named``."""
        positions: set[int] = set()
        for coding, where in self._by_code.items():
            if code_test(coding):
                positions.update(where)
        if named:
            for name, where in self._by_name.items():
                if terminology.lexicon.matches(named, (name,)):
                    positions.update(where)
        return [self._readings[p] for p in sorted(positions)]


def readings_of(observations: Iterable[Resource] | Readings) -> Readings:
    return observations if isinstance(observations, Readings) else Readings(observations)


def coded_in(
    observations: Iterable[Resource] | Readings,
    valueset: str,
    terminology: Terminology,
    *,
    named: str | None = None,
) -> list[tuple[Resource, Resource]]:
    """Readings whose code is in ``valueset`` (or, for a local code, whose text matches ``named``)."""
    members = terminology.valuesets.get(valueset)
    return readings_of(observations).matching(lambda c: members.contains(*c), terminology, named)


def findings_in(
    observations: Iterable[Resource] | Readings,
    valueset: str,
    terminology: Terminology,
    *,
    named: str | None = None,
) -> list[Finding]:
    """Counted readings whose code is in ``valueset``, newest first (undated last)."""
    found = [
        Finding(
            reference=reference_of(observation),
            name=observation_name(reading),
            day=observation_day(observation),
            result=read_result(reading, terminology),
        )
        for reading, observation in coded_in(observations, valueset, terminology, named=named)
    ]
    return _newest_first(found)


def naloxone_challenges(
    observations: Iterable[Resource] | Readings, terminology: Terminology
) -> list[Finding]:
    """Challenges recorded as described in rules/README.md, newest first.

    A ``valueBoolean`` is not read: whether true means "passed" or "withdrawal seen" depends on how the
    local form asks the question.
    """
    found = []
    challenges = readings_of(observations).matching(
        lambda c: c == NALOXONE_CHALLENGE, terminology, named="naloxone_challenge"
    )
    for reading, observation in challenges:
        found.append(
            Finding(
                reference=reference_of(observation),
                name="naloxone challenge",
                day=observation_day(observation),
                result=read_result(reading, terminology, boolean_is_presence=False),
            )
        )
    return _newest_first(found)


def enzyme_results(
    observations: Iterable[Resource] | Readings, valueset: str, terminology: Terminology, default_uln: float
) -> list[Finding]:
    """ALT/AST results in U/L with their upper limit of normal, newest first.

    A result in a unit that is not an enzyme activity unit, with no reference range, is unreadable and
    left out (so it cannot hide the need for liver tests).
    """
    found = []
    for reading, observation in coded_in(observations, valueset, terminology):
        finding = _quantitative(reading, observation, _ENZYME_UNITS, {"u/l": default_uln})
        if finding is not None:
            found.append(finding)
    return _newest_first(found)


def bilirubin_results(
    observations: Iterable[Resource] | Readings, terminology: Terminology, default_uln: Mapping[str, float]
) -> list[Finding]:
    """Total bilirubin with its upper limit of normal (mg/dL or µmol/L), newest first."""
    units = {spelling: 1.0 for spelling in _BILIRUBIN_UNITS}
    defaults = {spelling: default_uln[canonical] for spelling, canonical in _BILIRUBIN_UNITS.items()}
    found = []
    for reading, observation in coded_in(observations, "bilirubin-total-tests", terminology):
        finding = _quantitative(reading, observation, units, defaults)
        if finding is not None:
            found.append(finding)
    return _newest_first(found)


def _quantitative(
    reading: Resource, observation: Resource, units: Mapping[str, float], default_uln: Mapping[str, float]
) -> Finding | None:
    quantity = as_dict(reading.get("valueQuantity"))
    value = number(quantity.get("value"))
    if value is None:
        return None
    unit = text(quantity.get("code")) or text(quantity.get("unit")) or ""
    key = unit.replace(" ", "").lower()
    lab_uln = _reference_high(reading)
    if lab_uln:
        uln: float | None = lab_uln
    elif key in units:
        value *= units[key]
        uln = default_uln.get(key) or default_uln.get("u/l")
    else:
        return None
    return Finding(
        reference=reference_of(observation),
        name=observation_name(reading),
        day=observation_day(observation),
        result=None,
        value=value,
        unit=unit or None,
        uln=uln,
        uln_from_lab=bool(lab_uln),
    )


def _newest_first(found: list[Finding]) -> list[Finding]:
    return sorted(found, key=lambda f: (f.day is not None, f.day or date.min), reverse=True)


def within(finding: Finding, today: date, days: int) -> bool:
    return finding.day is not None and 0 <= (today - finding.day).days <= days
