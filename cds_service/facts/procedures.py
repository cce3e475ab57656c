"""Planned surgery: an anticipated need for opioid analgesia soon after a naltrexone start.

SAMHSA TIP 63 lists an anticipated need for opioid analgesics within 7 days as a contraindication; ASAM
(2015) advises stopping oral naltrexone 72 hours and the injection 30 days before elective surgery. The
record shows planned surgery as an active ServiceRequest, a proposed/pending/booked Appointment or a
Procedure in preparation, each with its date. It is surgery when it is coded so (SNOMED "Surgical
procedure" category, a CPT surgery or anaesthesia code) or named so (``rules/lexicon.yaml``:
``surgical_procedure``, unless the name says it is only a visit about one: ``not_an_operation``).

This data is optional evidence: when the EHR sends none, nothing is said (no data-gap card).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day, fact_line, names
from cds_service.fhir import Resource, as_dict, as_list, parse_day, reference_of, strings, text
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import CPT, Terminology, codings, concept_texts

_SERVICE_REQUEST_STATUSES = frozenset({"active"})
_APPOINTMENT_STATUSES = frozenset({"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"})
_PROCEDURE_STATUSES = frozenset({"preparation", "in-progress"})
# CPT surgery (10004-69990) and anaesthesia (00100-01999) sections: matched as ranges, no list shipped;
# minus the parts of the surgery section that are not operations: paring and nail trimming, injections
# and aspirations (arthrocentesis), casts and strapping, and vascular access (venipuncture, IV lines).
_CPT_SURGICAL_RANGES = ((10004, 69990), (100, 1999))
_CPT_NOT_OPERATIONS = ((11055, 11057), (11719, 11721), (20500, 20615), (29000, 29799), (36000, 36999))


@dataclass(frozen=True)
class PlannedProcedure:
    reference: str
    name: str
    day: date | None
    """The planned date (``None``: the record does not give one)."""

    def evidence(self) -> str:
        return fact_line(
            self.name, f"planned {day(self.day)}" if self.day else "date not recorded", self.reference
        )


@dataclass(frozen=True)
class PlannedProcedures:
    today: date
    policy: Policy
    upcoming: tuple[PlannedProcedure, ...]
    """Planned surgery from today on, soonest first (undated ones last)."""

    def within_hold(self, order: OrderFacts) -> tuple[PlannedProcedure, ...]:
        """The planned surgery inside the hold before surgery that applies to ``order``."""
        days = hold_days(order, self.policy)
        return tuple(p for p in self.upcoming if p.day is not None and (p.day - self.today).days <= days)

    @property
    def undated(self) -> tuple[PlannedProcedure, ...]:
        return tuple(p for p in self.upcoming if p.day is None)


def hold_days(order: OrderFacts, policy: Policy) -> int:
    """How long before surgery this order's naltrexone should not be started (or be stopped)."""
    if order.kind == "naltrexone-xr":
        return policy.procedure_window_days_injection
    if order.kind == "naltrexone-low-dose":
        return policy.procedure_window_days_low_dose
    return policy.procedure_window_days_oral


def _derive(derivation: Derivation) -> PlannedProcedures:
    inputs = derivation.inputs
    record, terminology, today = inputs.record, inputs.terminology, inputs.today
    planned = [
        *_planned(record.of_type("ServiceRequest"), _SERVICE_REQUEST_STATUSES, _service_request_window),
        *_planned(record.of_type("Appointment"), _APPOINTMENT_STATUSES, _appointment_window),
        *_planned(record.of_type("Procedure"), _PROCEDURE_STATUSES, _procedure_window),
    ]
    upcoming = [
        PlannedProcedure(
            reference_of(resource), _name(resource), None if window is None else max(window[0], today)
        )
        for resource, window in planned
        if (window is None or window[1] >= today) and _is_surgery(resource, terminology)
    ]
    upcoming.sort(key=lambda p: (p.day is None, p.day or date.max))
    return PlannedProcedures(today, inputs.policy, tuple(dict.fromkeys(upcoming)))


Window = tuple[date, date]


def _planned(
    resources: Iterable[Resource], statuses: frozenset[str], window_of: Callable[[Resource], Window | None]
) -> Iterator[tuple[Resource, Window | None]]:
    for resource in resources:
        if text(resource.get("status")) in statuses:
            yield resource, window_of(resource)


def _window(start: Any, end: Any = None) -> Window | None:
    """The days a planned event may fall on: a date, a month ("2026-11": any day of it) or a period (a
    window that opened before today is still open until its end)."""
    first = parse_day(start)
    if first is None:
        return None
    last = parse_day(end, end=True) or parse_day(start, end=True) or first
    return first, max(first, last)


def _first_window(*candidates: Window | None) -> Window | None:
    return next((w for w in candidates if w is not None), None)


def _service_request_window(resource: Resource) -> Window | None:
    timing = as_dict(resource.get("occurrenceTiming"))
    bounds = as_dict(as_dict(timing.get("repeat")).get("boundsPeriod"))
    period = as_dict(resource.get("occurrencePeriod"))
    return _first_window(
        _window(resource.get("occurrenceDateTime")),
        _window(period.get("start"), period.get("end")),
        *(_window(event) for event in strings(timing.get("event"))),
        _window(bounds.get("start"), bounds.get("end")),
    )


def _appointment_window(resource: Resource) -> Window | None:
    requested = [
        _window(as_dict(p).get("start"), as_dict(p).get("end"))
        for p in as_list(resource.get("requestedPeriod"))
    ]
    return _first_window(_window(resource.get("start"), resource.get("end")), *requested)


def _procedure_window(resource: Resource) -> Window | None:
    period = as_dict(resource.get("performedPeriod"))
    return _first_window(
        _window(resource.get("performedDateTime")), _window(period.get("start"), period.get("end"))
    )


def _concepts(resource: Resource) -> list[Mapping[str, object]]:
    """Every CodeableConcept that can say what the event is."""
    found: list[Mapping[str, object]] = []
    for element in ("code", "appointmentType"):
        found.append(as_dict(resource.get(element)))
    for element in ("category", "serviceCategory", "serviceType", "specialty", "reasonCode"):
        found += [as_dict(c) for c in as_list(resource.get(element))]
    return [c for c in found if c]


def _texts(resource: Resource) -> list[str]:
    texts = [t for concept in _concepts(resource) for t in concept_texts(concept)]
    description = text(resource.get("description"))
    return [*texts, description] if description else texts


def _name(resource: Resource) -> str:
    for concept in (as_dict(resource.get("code")), as_dict(resource.get("appointmentType"))):
        texts = concept_texts(concept)
        if texts:
            return texts[0]
    return text(resource.get("description")) or "planned procedure"


def _is_surgery(resource: Resource, terminology: Terminology) -> bool:
    for concept in _concepts(resource):
        for system, code in codings(concept):
            if system == CPT and _in_cpt_surgical_ranges(code):
                return True
        if terminology.in_valueset("surgical-procedures", concept):
            return True
    texts = _texts(resource)
    return terminology.lexicon.matches("surgical_procedure", texts) and not terminology.lexicon.matches(
        "not_an_operation", texts
    )


def _in_cpt_surgical_ranges(code: str) -> bool:
    if len(code) != 5 or not (code.isascii() and code.isdigit()):
        return False
    number = int(code)
    return any(low <= number <= high for low, high in _CPT_SURGICAL_RANGES) and not any(
        low <= number <= high for low, high in _CPT_NOT_OPERATIONS
    )


PROCEDURES = Domain("planned-procedures", _derive, valuesets=("surgical-procedures",))


@PROCEDURES.fact(
    "procedure_planned_soon",
    "surgery planned within this order's hold before surgery (`procedure_window_days_oral`, "
    "`procedure_window_days_injection`, `procedure_window_days_low_dose`)",
)
def _soon(facts: PlannedProcedures, order: OrderFacts) -> bool:
    return bool(facts.within_hold(order))


@PROCEDURES.fact("procedure_planned_undated", "surgery planned with no date recorded")
def _undated(facts: PlannedProcedures, order: OrderFacts) -> bool:
    return bool(facts.undated)


@PROCEDURES.placeholder("procedure_names", "the planned surgery inside the hold (else the undated)")
def _names(facts: PlannedProcedures, order: OrderFacts, policy: Policy) -> str:
    return names(p.name for p in (facts.within_hold(order) or facts.undated))


@PROCEDURES.placeholder("procedure_date", "the date of the soonest planned surgery")
def _date(facts: PlannedProcedures, order: OrderFacts, policy: Policy) -> str:
    soonest = facts.within_hold(order)
    return day(soonest[0].day) if soonest and soonest[0].day else "date not recorded"


@PROCEDURES.placeholder("procedure_hold", "days before surgery this order's naltrexone should stop")
def _hold(facts: PlannedProcedures, order: OrderFacts, policy: Policy) -> str:
    return str(hold_days(order, policy))


@PROCEDURES.evidence("planned_procedures", "each planned surgery with its date")
def _lines(facts: PlannedProcedures, order: OrderFacts, policy: Policy) -> list[str]:
    return [p.evidence() for p in (facts.within_hold(order) or facts.undated)]
