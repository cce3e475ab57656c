"""Laboratory results and the naloxone challenge, as dated, interpreted findings.

How a result is read: every part of the Observation that states a result is read — its
``interpretation`` (POS/DET/A/H... vs NEG/ND/N, IND/E; HL7 v3 or v2 table 0078), a coded value
(positive/negative answer value sets), the words of a ``valueString`` or of a coded value's text (through
``result_text``: analytes, negation, several analytes in one string), a ``valueBoolean`` (screens only:
true = present; a challenge recorded as true/false says neither passed nor failed), and a
``valueQuantity`` (against its reference range, or its comparator: "<300" is negative). Then safety
decides: any part that says positive makes the result positive; otherwise any part that cannot be read
makes it *unreadable*; negative only when what was read says so. An unreadable result is never taken as
negative: the cards say it could not be read.

Drug panels often carry each drug as a ``component``: components are read like Observations of their own,
dated and statused by their parent.

A long-lived patient has thousands of results and the rules ask a dozen questions of them ("the ALTs",
"the urine opioid screens"...): ``Readings`` indexes them once by code and by name, so that each question
costs the number of *distinct* codes and names in the record, not the number of results.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.result_text import UNSPECIFIED_OPIOID, Reading, ResultVocabulary
from cds_service.facts.wording import day, fact_line
from cds_service.fhir import (
    Resource,
    as_dict,
    as_list,
    first_day,
    number,
    parse_day,
    parse_instant,
    reference_of,
    text,
)
from cds_service.knowledge.terminology import V3_INTERPRETATION, Code, Terminology, codings, concept_texts

Result = Reading
ResultKind = Literal["screen", "challenge", "presence"]
"""A drug screen (analytes), a naloxone challenge (passed/failed), or any other presence test (hCG)."""

_COUNTED_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
_INTERPRETATION_SYSTEMS = frozenset(
    {V3_INTERPRETATION, "http://terminology.hl7.org/CodeSystem/v2-0078", "http://hl7.org/fhir/v2/0078"}
)
_POSITIVE_INTERPRETATIONS = frozenset({"POS", "DET", "A", "AA", "H", "HH", "HU", ">"})
_NEGATIVE_INTERPRETATIONS = frozenset({"NEG", "ND", "N"})
_UNREADABLE_INTERPRETATIONS = frozenset({"IND", "E", "EQV", "NR", "QCF"})
NALOXONE_CHALLENGE = ("http://naltrexone-cds.org/fhir/CodeSystem/observation", "naloxone-challenge")
_QUOTED_TEXT = 80
# Enzyme activity units, normalised (NFKC, micro -> u, lower case, no spaces), and their factor to U/L.
# UCUM [IU]/L is an arbitrary unit, but labs use IU/L and U/L alike for ALT and AST.
_ENZYME_UNITS = {
    "u/l": 1.0,
    "iu/l": 1.0,
    "[iu]/l": 1.0,
    "units/l": 1.0,
    "unit/l": 1.0,
    "u/liter": 1.0,
    "u/litre": 1.0,
    "iu/liter": 1.0,
    "ukat/l": 60.0,
    "mckat/l": 60.0,
    "microkat/l": 60.0,
    "nkat/l": 0.06,
}
# Total bilirubin, normalised, and the factor to mg/dL (1 mg/dL = 17.1 umol/L).
_BILIRUBIN_UNITS = {
    "mg/dl": 1.0,
    "mg/100ml": 1.0,
    "mg/l": 0.1,
    "umol/l": 1 / 17.1,
    "mcmol/l": 1 / 17.1,
    "micromol/l": 1 / 17.1,
    "mmol/l": 1000 / 17.1,
}


def normalise_unit(unit: str) -> str:
    """A unit string as compared here: NFKC (the micro sign becomes Greek mu), mu -> u, lower case,
    no spaces, and a trailing annotation such as "(37 C)" dropped."""
    folded = unicodedata.normalize("NFKC", unit).replace("\u03bc", "u").casefold()
    return re.sub(r"\(.*?\)|\{.*?\}|\s+", "", folded)


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
    analytes: Mapping[str, Result] = field(default_factory=dict)
    """For drug screens: each opioid analyte class read, and its result."""
    said: str | None = None
    """What the record says, quoted on the card when the result could not be read."""
    test: ResultKind | Literal["liver"] = "screen"
    at: datetime | None = None
    """The moment it was taken, when the record gives a time with an offset."""

    def is_after(self, other: Finding) -> bool:
        """Strictly later: by moment when both have one (offsets may differ), else by calendar day."""
        if self.at is not None and other.at is not None:
            return self.at > other.at
        return self.day is not None and other.day is not None and self.day > other.day

    def is_on_or_after(self, other: Finding) -> bool:
        """By moment when both have one; by day otherwise, except that the same day without both moments
        is not "after": which came first cannot be told, and this decides whether a contraindication lifts."""
        if self.at is not None and other.at is not None:
            return self.at >= other.at
        return self.day is not None and other.day is not None and self.day > other.day

    @property
    def uln_multiple(self) -> float | None:
        if self.value is None or not self.uln:
            return None
        return self.value / self.uln

    def evidence(self, what: str | None = None) -> str:
        when = day(self.day) if self.day else "date not recorded"
        if what is None:
            what = self.result if self.result in ("positive", "negative") else self.unreadable_text()
        # a LOINC long name's bracketed property and system add nothing on a card: "Opiates [Presence] in
        # Urine by Screen method" is "Opiates"
        return fact_line(_TEST_NAME.sub("", self.name) or self.name, f"{when}: {what}", self.reference)

    def unreadable_text(self) -> str:
        return f'could not be read ("{self.said}")' if self.said else "could not be read"


def counted(observation: Resource) -> bool:
    return text(observation.get("status")) in _COUNTED_STATUSES


def _effective(observation: Resource) -> tuple[Any, ...]:
    period = as_dict(observation.get("effectivePeriod"))
    return (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("end"),
        period.get("start"),
        observation.get("issued"),
    )


def observation_day(observation: Resource) -> date | None:
    return first_day(*_effective(observation))


def observation_instant(observation: Resource) -> datetime | None:
    """The moment of the value that dates the Observation, when it has a time and an offset."""
    for value in _effective(observation):
        if parse_day(value) is not None:
            return parse_instant(value)
    return None


def observation_name(observation: Resource) -> str:
    texts = concept_texts(observation.get("code"))
    return texts[0] if texts else "observation"


_TEST_NAME = re.compile(r"\s*\[.*$")


@dataclass(frozen=True, slots=True)
class ResultReading:
    result: Result
    analytes: Mapping[str, Result] = field(default_factory=dict)
    said: str | None = None


def read_result(
    observation: Resource, terminology: Terminology, kind: ResultKind = "screen"
) -> ResultReading | None:
    """What the Observation (or component) says; ``None`` when it states no result at all."""
    words = terminology.result_words
    own = _own_analytes(observation, words, kind)
    readings: list[ResultReading] = []
    for interpretation in as_list(observation.get("interpretation")):
        for system, code in codings(interpretation):
            flag = _interpretation(system, code)
            if flag is not None:
                readings.append(ResultReading(flag, {a: flag for a in own}))
    value_concept = observation.get("valueCodeableConcept")
    if isinstance(value_concept, Mapping):
        if terminology.in_valueset("result-positive", value_concept):
            readings.append(ResultReading("positive", {a: "positive" for a in own}))
        elif terminology.in_valueset("result-negative", value_concept):
            readings.append(ResultReading("negative", {a: "negative" for a in own}))
    for said in [*concept_texts(value_concept), *[t for t in (text(observation.get("valueString")),) if t]]:
        readings.append(_read_words(said, own, words, kind))
    boolean = observation.get("valueBoolean")
    if isinstance(boolean, bool):
        if kind == "challenge":
            readings.append(ResultReading("unreadable", said="true" if boolean else "false"))
        else:
            flag = "positive" if boolean else "negative"
            readings.append(ResultReading(flag, {a: flag for a in own}))
    quantity = as_dict(observation.get("valueQuantity"))
    if quantity:
        flag = _quantity_result(quantity, _reference_range_high(observation)[0])
        readings.append(ResultReading(flag, {a: flag for a in own}, said=_quantity_text(quantity)))
    if not readings:
        return None
    return _combined(readings)


def _own_analytes(observation: Resource, words: ResultVocabulary, kind: ResultKind) -> tuple[str, ...]:
    if kind != "screen":
        return ("test",)
    names = tuple(concept_texts(observation.get("code")))
    if sum(map(len, names)) > _CACHED_TEXT_LENGTH:
        return words.analytes_named(names) or ("opioids",)
    return _analytes_named(names, words) or ("opioids",)


# A record repeats the same test names and result texts ("Negative", "NEGATIVE for all drugs"...): each
# is read once per process. Bounded in entries and in length (4,096 texts of at most 1,000 characters;
# longer ones are read afresh), so a stream of unique or huge texts cannot grow a worker.
_CACHED_TEXT_LENGTH = 1000


@functools.lru_cache(maxsize=4096)
def _analytes_named(names: tuple[str, ...], words: ResultVocabulary) -> tuple[str, ...]:
    return words.analytes_named(names)


def _interpretation(system: str, code: str) -> Result | None:
    if system not in _INTERPRETATION_SYSTEMS:
        return None
    flag = code.upper()
    if flag in _POSITIVE_INTERPRETATIONS:
        return "positive"
    if flag in _NEGATIVE_INTERPRETATIONS:
        return "negative"
    if flag in _UNREADABLE_INTERPRETATIONS:
        return "unreadable"
    return None


def _read_words(said: str, own: tuple[str, ...], words: ResultVocabulary, kind: ResultKind) -> ResultReading:
    if len(said) > _CACHED_TEXT_LENGTH:
        return _read_words_afresh(said, own, words, kind)
    return _read_words_once(said, own, words, kind)


def _read_words_afresh(
    said: str, own: tuple[str, ...], words: ResultVocabulary, kind: ResultKind
) -> ResultReading:
    quoted = _quote(said)
    if kind == "challenge":
        challenge = words.read_challenge(said)
        result: Result = {"failed": "positive", "passed": "negative"}.get(challenge, "unreadable")  # type: ignore[assignment]
        return ResultReading(result, said=quoted)
    decides = words.is_opioid if kind == "screen" else (lambda analyte: analyte == "test")
    screen = words.read_screen(said, own, decides=decides)
    return ResultReading(screen.reading, screen.analytes, said=quoted)


@functools.lru_cache(maxsize=4096)
def _read_words_once(
    said: str, own: tuple[str, ...], words: ResultVocabulary, kind: ResultKind
) -> ResultReading:
    reading = _read_words_afresh(said, own, words, kind)
    # shared by every later request that reads the same text: read-only
    return dataclasses.replace(reading, analytes=MappingProxyType(dict(reading.analytes)))


def _quote(said: str) -> str:
    flat = " ".join(said.split())
    return flat if len(flat) <= _QUOTED_TEXT else flat[: _QUOTED_TEXT - 1].rstrip() + "…"


def _quantity_result(quantity: Mapping[str, object], high: float | None) -> Result:
    value = number(quantity.get("value"))
    comparator = text(quantity.get("comparator"))
    if value is None:
        return "unreadable"
    if comparator in ("<", "<="):
        return "negative" if high is None or value <= high else "unreadable"
    if comparator in (">", ">="):
        return "positive" if high is None or value >= high else "unreadable"
    if high is not None:
        return "positive" if value > high else "negative"
    # A drug concentration is reported only when the drug was found: a number above zero means present.
    return "positive" if value > 0 else "negative"


def _quantity_text(quantity: Mapping[str, object]) -> str:
    parts = [
        text(quantity.get("comparator")) or "",
        str(quantity.get("value", "")),
        str(quantity.get("unit") or ""),
    ]
    return _quote(" ".join(p for p in parts if p).strip())


def _combined(readings: list[ResultReading]) -> ResultReading:
    """Positive anywhere wins; then unreadable anywhere; negative only when every part says so."""
    analytes: dict[str, Result] = {}
    for reading in readings:
        for analyte, result in reading.analytes.items():
            previous = analytes.get(analyte)
            if previous is None or _RANK[result] > _RANK[previous]:
                analytes[analyte] = result
    overall = max((r.result for r in readings), key=_RANK.__getitem__)
    said = next((r.said for r in readings if r.result == overall and r.said), None)
    return ResultReading(overall, analytes, said)


_RANK: dict[Result, int] = {"negative": 0, "unreadable": 1, "positive": 2}


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
    kind: ResultKind = "screen",
) -> list[Finding]:
    """Counted readings whose code is in ``valueset`` and that state a result, newest first."""
    found = []
    for reading, observation in coded_in(observations, valueset, terminology, named=named):
        result = read_result(reading, terminology, kind)
        if result is not None:
            found.append(_finding(reading, observation, result, test=kind))
    return newest_first(found)


def _finding(
    reading: Resource, observation: Resource, result: ResultReading, *, test: ResultKind, name: str = ""
) -> Finding:
    return Finding(
        reference=reference_of(observation),
        name=name or observation_name(reading),
        day=observation_day(observation),
        at=observation_instant(observation),
        result=result.result,
        analytes=result.analytes,
        said=result.said,
        test=test,
    )


def drug_panel_findings(
    observations: Iterable[Resource] | Readings, terminology: Terminology
) -> list[Finding]:
    """General drug panels whose name names no opioid ("Urine drug screen, 9-panel cup"), newest first:
    only what they say about opioids. A panel naming opioid analytes ("OPI neg, FEN POS") is read per
    analyte; "positive" with no analyte named could be any drug of the panel, so it is unreadable;
    "negative" naming no drug, or a panel that speaks only of other drugs ("THC pos"), says nothing here."""
    screens = terminology.valuesets.get("opioid-urine-screens")
    found = []
    for reading, observation in readings_of(observations).matching(
        lambda c: False, terminology, "drug_panel"
    ):
        names = concept_texts(reading.get("code"))
        if any(screens.contains(*c) for c in codings(reading.get("code"))) or terminology.lexicon.matches(
            "opioid_drug_test", names
        ):
            continue  # an opioid screen, read as such
        result = read_result(reading, terminology, "screen")
        about_opioids = _about_opioids(result) if result is not None else None
        if about_opioids is not None:
            found.append(_finding(reading, observation, about_opioids, test="screen"))
    return newest_first(found)


def _about_opioids(reading: ResultReading) -> ResultReading | None:
    named = {a: r for a, r in reading.analytes.items() if a != UNSPECIFIED_OPIOID}
    if named:
        results = set(named.values())
        overall: Result = (
            "positive" if "positive" in results else "negative" if results == {"negative"} else "unreadable"
        )
        return ResultReading(overall, named, reading.said)
    # Naming no drug: "positive" may be any drug of the panel (unreadable); "negative" cannot show which
    # opioids were tested (common panels do not detect fentanyl, buprenorphine or methadone), so it does not
    # count as an opioid screen.
    if reading.analytes.get(UNSPECIFIED_OPIOID) == "positive":
        return ResultReading("unreadable", {UNSPECIFIED_OPIOID: "unreadable"}, reading.said)
    return None


def naloxone_challenges(
    observations: Iterable[Resource] | Readings, terminology: Terminology
) -> list[Finding]:
    """Challenges recorded as described in rules/README.md, newest first: positive = failed (withdrawal),
    negative = passed; a ``valueBoolean`` is unreadable (true could mean "passed" or "withdrawal seen")."""
    found = []
    challenges = readings_of(observations).matching(
        lambda c: c == NALOXONE_CHALLENGE, terminology, named="naloxone_challenge"
    )
    for reading, observation in challenges:
        result = read_result(reading, terminology, "challenge")
        if result is not None:
            found.append(_finding(reading, observation, result, test="challenge", name="naloxone challenge"))
    return newest_first(found)


def enzyme_results(
    observations: Iterable[Resource] | Readings, valueset: str, terminology: Terminology, default_uln: float
) -> list[Finding]:
    """ALT/AST results in U/L with their upper limit of normal, newest first.

    A result whose unit cannot be converted and that has no reference range to compare with is kept as
    *unreadable* (the cards say so): it is never dropped, and never read as normal.
    """
    found = []
    for reading, observation in coded_in(observations, valueset, terminology):
        finding = _quantitative(reading, observation, _ENZYME_UNITS, "U/L", default_uln)
        if finding is not None:
            found.append(finding)
    return newest_first(found)


def bilirubin_results(
    observations: Iterable[Resource] | Readings, terminology: Terminology, default_uln_mg_per_dl: float
) -> list[Finding]:
    """Total bilirubin in mg/dL with its upper limit of normal, newest first (unreadable kept as such)."""
    found = []
    for reading, observation in coded_in(observations, "bilirubin-total-tests", terminology):
        finding = _quantitative(reading, observation, _BILIRUBIN_UNITS, "mg/dL", default_uln_mg_per_dl)
        if finding is not None:
            found.append(finding)
    return newest_first(found)


_NUMBER_TEXT = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:\.\d+)?)\s*([^\d\s].*)?$")


def _quantity_of(reading: Resource) -> tuple[float | None, str, str | None]:
    """(value, unit, what was said): from valueQuantity, else a number written as text ("<10 U/L")."""
    quantity = as_dict(reading.get("valueQuantity"))
    if quantity:
        unit = text(quantity.get("code")) or text(quantity.get("unit")) or ""
        return number(quantity.get("value")), unit, _quantity_text(quantity)
    said = text(reading.get("valueString"))
    if said is None:
        return None, "", None
    match = _NUMBER_TEXT.match(unicodedata.normalize("NFKC", said))
    if match is None:
        return None, "", _quote(said)
    return float(match.group(2)), (match.group(3) or "").strip(), _quote(said)


def _quantitative(
    reading: Resource, observation: Resource, units: Mapping[str, float], canonical: str, default_uln: float
) -> Finding | None:
    value, unit, said = _quantity_of(reading)
    if value is None and said is None:
        return None  # no value at all (e.g. dataAbsentReason): not a result
    lab_uln, lab_unit = _reference_range_high(reading)
    factor = units.get(normalise_unit(unit)) if unit else None
    uln: float | None = None
    from_lab = False
    if value is None:
        pass
    elif lab_uln and (lab_unit is None or not unit or normalise_unit(lab_unit) == normalise_unit(unit)):
        uln, from_lab = lab_uln, True  # the lab's own limit in the result's own unit: no conversion
    elif lab_uln and factor is not None and units.get(normalise_unit(lab_unit or "")) is not None:
        value, uln, from_lab = value * factor, lab_uln * units[normalise_unit(lab_unit or "")], True
        unit = canonical
    elif factor is not None:
        value, uln, unit = value * factor, default_uln, canonical
    readable = value is not None and uln is not None
    return Finding(
        reference=reference_of(observation),
        name=observation_name(reading),
        day=observation_day(observation),
        at=observation_instant(observation),
        result=None if readable else "unreadable",
        value=value if readable else None,
        unit=unit or None,
        uln=uln if readable else None,
        uln_from_lab=readable and from_lab,
        said=None if readable else said,
        test="liver",
    )


def _reference_range_high(observation: Resource) -> tuple[float | None, str | None]:
    for reference_range in as_list(observation.get("referenceRange")):
        high = as_dict(reference_range.get("high"))
        value = number(high.get("value"))
        if value is not None:
            return value, text(high.get("code")) or text(high.get("unit"))
    return None, None


def newest_first(found: list[Finding]) -> list[Finding]:
    return sorted(found, key=lambda f: (f.day is not None, f.day or date.min), reverse=True)


def unread_since_readable(results: Sequence[Finding], today: date, days: int) -> list[Finding]:
    """Unreadable results in the look-back newer than the newest readable result of the same test
    (``results`` newest first): the ones a card must say could not be read."""
    unreadable = []
    for finding in results:
        if not within(finding, today, days):
            continue
        if finding.result != "unreadable":
            break
        unreadable.append(finding)
    return unreadable


def latest_within(results: Sequence[Finding], today: date, days: int) -> Finding | None:
    """The newest readable result in the look-back."""
    return next((f for f in results if f.result != "unreadable" and within(f, today, days)), None)


def within(finding: Finding, today: date, days: int) -> bool:
    return finding.day is not None and 0 <= (today - finding.day).days <= days


def _index(derivation: Derivation) -> Readings:
    return Readings(derivation.inputs.record.of_type("Observation"))


RESULTS = Domain("results", _index)
"""The record's counted results, indexed once per request for every domain that asks about them."""
