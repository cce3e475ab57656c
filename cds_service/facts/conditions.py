"""Diagnoses and allergies that are current, respecting clinical and verification status.

A Condition counts unless the record says otherwise: ``clinicalStatus`` inactive/remission/resolved, an
``abatement`` in the past, or ``verificationStatus`` refuted/entered-in-error/differential (one of several
possibilities under consideration). A missing status counts as current: absence is not reassurance.
Acute states (withdrawal) and time-limited ones (pregnancy) also need a recent enough date.

``Problems`` indexes a record's conditions by code once, so the many value-set questions the rules ask
cost the number of distinct codes, not of conditions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.wording import day, fact_line
from cds_service.fhir import Resource, as_dict, as_list, first_day, reference_of
from cds_service.knowledge.terminology import ICD10CM, SNOMED, Code, Terminology, codings, concept_texts

_INACTIVE = frozenset({"inactive", "remission", "resolved"})
_STANDARD_SYSTEMS = frozenset({ICD10CM, SNOMED})
_NOT_TRUE = frozenset({"refuted", "entered-in-error", "differential"})

# A diagnosis name states what is absent as often as what is present ("cirrhosis without ascites or
# varices", "no hepatic encephalopathy, portal hypertension present"): a name is read without its negated
# clauses, which run from the negation to the next clause boundary.
# A negated clause ends at punctuation, a joining sign or word ("-", "/", "+", "&", "and", "but", "with"): a
# finding after it is read ("no varices and hepatic encephalopathy grade 2" still says encephalopathy).
_CLAUSE_END = r"(?=[,;.:()\[\]/+&]|\s-\s|\s-|\band\b|\bbut\b|\bwith\b|\bhowever\b|$)"
_NEGATED_CLAUSE = re.compile(
    r"\b(without|w/o|no|not|negative for|denies|ruled out|r/o|rule out|absence of|free of|screening for|"
    r"screen for|evaluation for|assessment for|at risk of|risk of)\b.*?" + _CLAUSE_END,
    re.IGNORECASE,
)
# ...and a finding followed by its negation: "hepatic encephalopathy ruled out", "hepatitis C, ruled out".
_NEGATION_AFTER = re.compile(r"\b(ruled out|excluded|absent|not present|not seen)\s*$", re.IGNORECASE)


def affirmed(name: str) -> str:
    """``name`` without the clauses it negates."""
    kept: list[str] = []
    for segment in re.split(r"([,;.:()\[\]/+&]|\s-\s)", name):
        if _NEGATION_AFTER.search(segment):
            if not _NEGATION_AFTER.sub("", segment).strip() and kept:
                # "hepatitis C, ruled out": the negation stands alone and applies to what precedes it
                while kept and not kept[-1].strip(" ,;:-()[]"):
                    kept.pop()
                if kept:
                    kept.pop()
            continue
        kept.append(segment)
    return " ".join(_NEGATED_CLAUSE.sub(" ", "".join(kept)).split())


@dataclass(frozen=True, slots=True)
class Diagnosis:
    reference: str
    name: str
    onset: date | None

    def evidence(self) -> str:
        return fact_line(
            self.name, f"active since {day(self.onset)}" if self.onset else "active", self.reference
        )


def status_code(resource: Resource, element: str) -> str | None:
    """The code of a status element: a CodeableConcept (R4) or a plain string (STU3)."""
    value = resource.get(element)
    if isinstance(value, str):  # FHIR STU3: a plain code
        return value
    codes = [code for _, code in codings(value)]
    return codes[0] if codes else None


def is_current(resource: Resource, today: date | None = None) -> bool:
    clinical = status_code(resource, "clinicalStatus")
    verification = status_code(resource, "verificationStatus")
    if clinical in _INACTIVE or verification in _NOT_TRUE:
        return False
    if resource.get("abatementBoolean") is True:
        return False
    if clinical is None and any(
        resource.get(k) for k in ("abatementString", "abatementAge", "abatementRange")
    ):
        # An abatement with no date and no status (FHIR con-4 requires an abated condition to say it is
        # inactive). With a coded status present, the status decides: free text may say anything.
        return False
    abated = first_day(
        resource.get("abatementDateTime"), as_dict(resource.get("abatementPeriod")).get("end"), end=True
    )
    return abated is None or today is None or abated >= today


class Problems:
    """A record's Conditions, indexed by code and by name."""

    def __init__(self, conditions: Iterable[Resource]) -> None:
        self._conditions: list[Resource] = []
        self._by_code: defaultdict[Code, list[int]] = defaultdict(list)
        self._by_name: defaultdict[str, list[int]] = defaultdict(list)
        self._by_any_name: defaultdict[str, list[int]] = defaultdict(list)
        for position, condition in enumerate(conditions):
            self._conditions.append(condition)
            codes = set(codings(condition.get("code")))
            for coding in codes:
                self._by_code[coding].append(position)
            names = {affirmed(name) for name in concept_texts(condition.get("code"))}
            for name in names:
                self._by_any_name[name].append(position)
            if not any(system in _STANDARD_SYSTEMS for system, _ in codes):
                # codes decide; a name is read only when no standard code says what the condition is
                for name in names:
                    self._by_name[name].append(position)

    def coded_in(
        self,
        valueset: str,
        terminology: Terminology,
        *,
        named: str | None = None,
        qualified: tuple[str, str] | None = None,
    ) -> list[Resource]:
        """Conditions coded in ``valueset``; or (``named``) uncoded ones whose name matches that lexicon
        pattern; or (``qualified``: pattern, value set) uncoded ones, or ones coded in that value set, whose
        name matches the pattern: for qualifiers a code leaves out ("cirrhosis, Child-Pugh class C" coded
        as unspecified cirrhosis), never read from the name of an unrelated condition."""
        members = terminology.valuesets.get(valueset)
        positions: set[int] = set()
        for (system, code), where in self._by_code.items():
            if members.contains(system, code):
                positions.update(where)
        if named:
            positions.update(self._named(named, self._by_name, terminology))
        if qualified:
            pattern, within = qualified
            context = set(self._named(None, self._by_name, terminology)) | {
                p for p in range(len(self._conditions)) if self._coded(p, within, terminology)
            }
            positions.update(p for p in self._named(pattern, self._by_any_name, terminology) if p in context)
        return [self._conditions[p] for p in sorted(positions)]

    def _named(
        self, pattern: str | None, index: Mapping[str, list[int]], terminology: Terminology
    ) -> list[int]:
        """Positions whose name (in ``index``) matches ``pattern`` (every position in it without one)."""
        return [
            p
            for name, where in index.items()
            if pattern is None or terminology.lexicon.matches(pattern, (name,))
            for p in where
        ]

    def _coded(self, position: int, valueset: str, terminology: Terminology) -> bool:
        members = terminology.valuesets.get(valueset)
        return any(members.contains(*c) for c in codings(self._conditions[position].get("code")))


def current_diagnoses(
    conditions: Iterable[Resource] | Problems,
    valueset: str,
    terminology: Terminology,
    today: date | None = None,
    *,
    within_days: int | None = None,
    named: str | None = None,
    qualified: tuple[str, str] | None = None,
    or_recorded_within: int | None = None,
) -> list[Diagnosis]:
    """Current conditions coded in ``valueset`` (or named by the lexicon pattern ``named``); with
    ``within_days``, only those dated that recently (by onset, else recorded date; an undated one still
    counts); with ``or_recorded_within``, also inactive ones dated that recently (an episode of ascites
    last month marks the liver disease even once it has resolved)."""
    problems = conditions if isinstance(conditions, Problems) else Problems(conditions)
    found = []
    for condition in problems.coded_in(valueset, terminology, named=named, qualified=qualified):
        if not is_current(condition, today) and not _recent_episode(condition, today, or_recorded_within):
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


def _recent_episode(condition: Resource, today: date | None, days: int | None) -> bool:
    if days is None or today is None or status_code(condition, "verificationStatus") in _NOT_TRUE:
        return False
    dated = first_day(
        condition.get("recordedDate"),
        condition.get("onsetDateTime"),
        as_dict(condition.get("onsetPeriod")).get("start"),
        condition.get("abatementDateTime"),
    )
    return dated is not None and 0 <= (today - dated).days <= days


def _diagnosis(condition: Resource) -> Diagnosis:
    texts = concept_texts(condition.get("code"))
    onset = first_day(
        condition.get("onsetDateTime"),
        as_dict(condition.get("onsetPeriod")).get("start"),
        condition.get("recordedDate"),
    )
    return Diagnosis(reference_of(condition), texts[0] if texts else "diagnosis", onset)


@dataclass(frozen=True, slots=True)
class Allergy:
    """A current allergy or intolerance entry to a substance, with what it says about the reaction."""

    reference: str
    substance: str
    kind: str
    """allergy | intolerance (FHIR ``type``; an entry without one is read as an allergy)."""
    criticality: str | None
    reactions: tuple[str, ...]
    severe: bool
    """High criticality, a severe reaction, or a manifestation of a true allergic reaction."""
    recorded: date | None

    @property
    def intolerance_only(self) -> bool:
        """A non-immune intolerance (nausea, headache...): not the hypersensitivity the label means."""
        return self.kind == "intolerance" and not self.severe and self.criticality != "high"

    def evidence(self) -> str:
        details = [", ".join(self.reactions)] if self.reactions else []
        if self.criticality:
            details.append(f"{self.criticality} criticality")
        return fact_line(f"{self.kind} to {self.substance}", ", ".join(details), self.reference)


def allergies_to(
    allergies: Iterable[Resource], valueset: str, pattern: str, terminology: Terminology
) -> list[Allergy]:
    """Current allergies or intolerances whose substance is in ``valueset`` or named by the lexicon
    ``pattern`` (in the code or a reaction's substance)."""
    found = []
    for allergy in allergies:
        if not is_current(allergy):
            continue
        reactions = as_list(allergy.get("reaction"))
        concepts = [allergy.get("code")] + [r.get("substance") for r in reactions]
        if not any(
            terminology.in_valueset(valueset, concept)
            or terminology.lexicon.matches(pattern, concept_texts(concept))
            for concept in concepts
        ):
            continue
        texts = concept_texts(allergy.get("code"))
        manifestations = tuple(
            dict.fromkeys(
                t for r in reactions for m in as_list(r.get("manifestation")) for t in concept_texts(m)[:1]
            )
        )
        criticality = allergy.get("criticality") if isinstance(allergy.get("criticality"), str) else None
        severe = any(r.get("severity") == "severe" for r in reactions) or terminology.lexicon.matches(
            "allergic_reaction", manifestations
        )
        found.append(
            Allergy(
                reference=reference_of(allergy),
                substance=texts[0] if texts else pattern.replace("_", " "),
                kind="intolerance" if allergy.get("type") == "intolerance" else "allergy",
                criticality=criticality,
                reactions=manifestations,
                severe=severe,
                recorded=first_day(allergy.get("recordedDate"), allergy.get("onsetDateTime")),
            )
        )
    return found


def _index(derivation: Derivation) -> Problems:
    return Problems(derivation.inputs.record.of_type("Condition"))


PROBLEMS = Domain("problems", _index)
"""The record's Conditions, indexed once per request for every domain that asks about them."""
