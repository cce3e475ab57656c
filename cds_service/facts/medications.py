"""What a medication is, how much of it is given and when, and when the patient was last exposed.

A medication is read from ``medicationCodeableConcept`` or a ``medicationReference`` resolved to a
contained Medication, a Medication in the request, or (failing both) the reference's display. Codes in
the project's value sets decide its class; the text lexicon decides when no code is known.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Literal

import orjson

from cds_service.facts.wording import day, drug_label, fact_line
from cds_service.fhir import (
    Resource,
    add_days,
    as_dict,
    as_list,
    first_day,
    mass_mg,
    number,
    period_days,
    reference_of,
    referenced_id,
    strings,
    text,
    whole_number,
)
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import Code, Terminology, codings, concept_texts


class ProductClass(StrEnum):
    NALTREXONE_ORAL = "naltrexone-oral"
    NALTREXONE_INJECTION = "naltrexone-xr"
    NALTREXONE_BUPROPION = "naltrexone-bupropion"
    OPIOID = "opioid"
    ANTIDIARRHEAL_OPIOID = "antidiarrheal-opioid"
    NALOXONE_RESCUE = "naloxone-rescue"
    OTHER = "other"
    UNIDENTIFIED = "unidentified"


NALTREXONE_CLASSES = frozenset(
    {ProductClass.NALTREXONE_ORAL, ProductClass.NALTREXONE_INJECTION, ProductClass.NALTREXONE_BUPROPION}
)

_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|µg|ug|g)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Product:
    product_class: ProductClass
    name: str
    long_acting: bool = False
    """Methadone or buprenorphine: the longer opioid-free interval applies."""
    depot: bool = False
    """A month-long depot injection (extended-release buprenorphine or naltrexone)."""
    extended_release: bool = False
    compounded: bool = False
    commercial_tablet: bool = False
    """A marketed naltrexone 50 mg tablet (ReVia, Depade, generics)."""
    strength_mg: float | None = None
    """Mass of drug per tablet/capsule/unit, when known."""
    mg_per_ml: float | None = None
    """Concentration of a liquid (a compounded solution, the injection's suspension), when known."""


@dataclass(frozen=True, slots=True)
class MedicationSource:
    concept: Mapping[str, Any] | None
    medication: Mapping[str, Any] | None
    reference_display: str | None


def medication_of(resource: Resource, medications: Mapping[str, Resource]) -> MedicationSource:
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return MedicationSource(concept, None, None)
    reference = as_dict(resource.get("medicationReference"))
    medication = _resolve_medication(resource, reference, medications)
    concept = as_dict(medication.get("code")) if medication else None
    return MedicationSource(concept, medication, text(reference.get("display")))


def _resolve_medication(
    resource: Resource, reference: Mapping[str, Any], medications: Mapping[str, Resource]
) -> Mapping[str, Any] | None:
    ref = text(reference.get("reference"))
    if ref is None:
        return None
    if ref.startswith("#"):
        for contained in as_list(resource.get("contained")):
            if contained.get("resourceType") == "Medication" and contained.get("id") == ref[1:]:
                found: Mapping[str, Any] = contained
                return found
        return None
    # ``medications`` is keyed by id and by fullUrl (a draft bundle may reference ``urn:uuid:...``)
    medication_id = referenced_id(reference, "Medication") or ref
    return medications.get(medication_id) or medications.get(ref)


def classify(source: MedicationSource, terminology: Terminology) -> Product:
    """What product ``source`` names. The same few products recur across a record and across requests
    (every refill of the same tablet), so each is worked out once per process, keyed by the JSON text of
    what names it (concept, Medication, display). What cannot be a key cheaply (not plain JSON, or a
    Medication with a long narrative) is worked out afresh: the cache is bounded in bytes, not only in
    entries (4,096 keys of at most 4 KiB)."""
    try:
        key = orjson.dumps((source.concept, source.medication, source.reference_display))
    except TypeError:  # an integer beyond 64 bits, say
        return _classify(source, terminology)
    if len(key) > _CACHED_KEY_BYTES:
        return _classify(source, terminology)
    return _classify_named(key, terminology)


_CACHED_KEY_BYTES = 4096


@functools.lru_cache(maxsize=4096)
def _classify_named(key: bytes, terminology: Terminology) -> Product:
    concept, medication, display = orjson.loads(key)
    return _classify(MedicationSource(concept, medication, display), terminology)


def _classify(source: MedicationSource, terminology: Terminology) -> Product:
    codes: list[Code] = list(codings(source.concept))
    texts: list[str] = concept_texts(source.concept)
    medication = as_dict(source.medication)
    for ingredient in as_list(medication.get("ingredient")):
        item = as_dict(ingredient.get("itemCodeableConcept"))
        codes.extend(codings(item))
        texts.extend(concept_texts(item))
    if source.reference_display:
        texts.append(source.reference_display)
    form_texts = concept_texts(medication.get("form"))
    if not codes and not texts:
        return Product(ProductClass.UNIDENTIFIED, "unidentified medication")

    lex = terminology.lexicon

    def coded(valueset: str) -> bool:
        return terminology.any_code_in(valueset, codes)

    def named(pattern: str) -> bool:
        return lex.matches(pattern, texts)

    name = _best_name(source, texts)
    extended = lex.matches("extended_release", texts + form_texts)
    strength = _strength_mg(medication, texts)
    concentration = _concentration_mg_per_ml(medication, texts)
    naltrexone = coded("naltrexone-products") or named("naltrexone")
    opioid = coded("opioid-medications") or named("opioid")
    # A combination (coded as a product, or as a Medication listing its ingredients) is classed by its
    # other ingredient: morphine/naltrexone is an opioid; bupropion/naltrexone gets the opioid rules only.
    if coded("morphine-naltrexone") or named("morphine_naltrexone") or (naltrexone and opioid):
        return Product(ProductClass.OPIOID, name, extended_release=True, strength_mg=strength)
    if coded("naltrexone-bupropion") or (naltrexone and (coded("bupropion") or named("bupropion"))):
        return Product(ProductClass.NALTREXONE_BUPROPION, name, extended_release=True)
    if naltrexone:
        injection = coded("naltrexone-extended-release-injection") or lex.matches(
            "naltrexone_injection", texts + form_texts
        )
        if injection:
            # One Vivitrol kit (vial, syringe) holds 380 mg, given as about 4 mL of suspension (label).
            return Product(
                ProductClass.NALTREXONE_INJECTION,
                name,
                depot=True,
                strength_mg=XR_KIT_MG,  # a count (kit, vial, injection) is kits, whatever the name says
                mg_per_ml=concentration or XR_KIT_MG / XR_KIT_ML,
            )
        return Product(
            ProductClass.NALTREXONE_ORAL,
            name,
            extended_release=extended,
            compounded=lex.matches("compounded", texts),
            commercial_tablet=coded("commercial-naltrexone-tablets") or named("commercial_naltrexone_tablet"),
            strength_mg=None if concentration else strength,
            mg_per_ml=concentration,
        )
    if opioid:
        return Product(
            ProductClass.OPIOID,
            name,
            long_acting=coded("long-acting-opioids") or named("long_acting_opioid"),
            depot=coded("depot-buprenorphine") or named("depot_buprenorphine"),
            extended_release=extended,
            strength_mg=strength,
        )
    if coded("antidiarrheal-opioids") or named("antidiarrheal_opioid"):
        return Product(ProductClass.ANTIDIARRHEAL_OPIOID, name)
    if coded("naloxone-rescue") or named("naloxone_rescue"):
        return Product(ProductClass.NALOXONE_RESCUE, name)
    if not texts:
        # A code the value sets do not know, with no name: it could be anything, an opioid included. The
        # value sets do not list every RxNorm opioid product (RxNorm grows monthly; the CDC sets leave out
        # most injectables), so an unknown RxNorm code is not proof of "not an opioid" either.
        return Product(ProductClass.UNIDENTIFIED, "medication with an unrecognised code and no name")
    return Product(ProductClass.OTHER, name)


def _best_name(source: MedicationSource, texts: Sequence[str]) -> str:
    concept = as_dict(source.concept)
    return text(concept.get("text")) or (texts[0] if texts else None) or "unnamed medication"


XR_KIT_MG = 380.0
XR_KIT_ML = 4.0
_CONCENTRATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(mg|mcg|µg|ug)\s*(?:/|per|in)\s*(\d+(?:\.\d+)?)?\s*ml\b", re.IGNORECASE
)
_VOLUME_UNITS = frozenset({"ml", "milliliter", "milliliters", "millilitre", "millilitres", "cc"})


def _ingredient_strength(medication: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """(mg, per amount, per unit) of a single-ingredient Medication's strength ("1 mg / 1 mL")."""
    ingredients = as_list(medication.get("ingredient"))
    if len(ingredients) != 1:
        return None
    strength = as_dict(ingredients[0].get("strength"))
    numerator = mass_mg(strength.get("numerator"))
    denominator = as_dict(strength.get("denominator"))
    per = number(denominator.get("value")) or 1.0
    unit = (text(denominator.get("code")) or text(denominator.get("unit")) or "").lower()
    return (numerator, per, unit) if numerator is not None and per > 0 else None


def _concentration_mg_per_ml(medication: Mapping[str, Any], texts: Sequence[str]) -> float | None:
    """Mass per mL of a liquid: a single ingredient's strength per mL, else "<n> mg/mL" in its name."""
    strength = _ingredient_strength(medication)
    if strength is not None and strength[2] in _VOLUME_UNITS:
        return strength[0] / strength[1]
    for candidate in texts:
        match = _CONCENTRATION.search(candidate)
        if match:
            mg = mass_mg({"value": float(match.group(1)), "unit": match.group(2)})
            volume = float(match.group(3) or 1)
            if mg and volume > 0:
                return mg / volume
    return None


def _strength_mg(medication: Mapping[str, Any], texts: Sequence[str]) -> float | None:
    """Mass per unit: a single-ingredient Medication's strength, else the first "<n> mg" in its name."""
    strength = _ingredient_strength(medication)
    if strength is not None and strength[2] not in _VOLUME_UNITS:
        return strength[0] / strength[1]
    for candidate in texts:
        match = _STRENGTH.search(candidate)
        if match:
            return mass_mg({"value": float(match.group(1)), "unit": match.group(2)})
    return None


# ------------------------------------------------------------------------------------------ dosing


@dataclass(frozen=True, slots=True)
class Dosing:
    dose_mg: float | None
    units_per_dose: float | None
    """Tablets/capsules/patches per dose when the dose is given as a count."""
    interval_days: float | None
    """Days between doses (1 = daily); ``None`` when the order gives no frequency."""
    count: int | None
    """Total number of doses when the order is limited (1 = once)."""
    route: Literal["oral", "intramuscular", "other"] | None
    bedtime: bool
    start: date | None
    description: str
    unreadable: str | None = None
    """What the order sent when a dose or frequency was given but cannot be used (zero, negative, an
    impossible amount, a unit that cannot be converted, a zero period): quoted on the card."""


_TIMING_CODES = {
    "QD": 1.0,
    "BID": 0.5,
    "TID": 1 / 3,
    "QID": 0.25,
    "QOD": 2.0,
    "WK": 7.0,
    "MO": 30.0,
    "AM": 1.0,
    "PM": 1.0,
    "BED": 1.0,
    "Q24H": 1.0,
    "Q12H": 0.5,
    "Q8H": 1 / 3,
    "Q6H": 0.25,
    "Q4H": 1 / 6,
}
_BEDTIME_WHEN = frozenset({"HS", "NIGHT", "PHS"})
_COUNT_UNITS = frozenset(
    {
        "{pill}",
        "{tbl}",
        "{tablet}",
        "{capsule}",
        "{cap}",
        "tab",
        "tabs",
        "tablet",
        "tablets",
        "cap",
        "caps",
        "capsule",
        "capsules",
        "patch",
        "{patch}",
        "1",
        "{dose}",
        "{each}",
        "each",
        "ea",
        # the extended-release injection is ordered by the kit (one 380 mg dose)
        "kit",
        "kits",
        "{kit}",
        "vial",
        "vials",
        "{vial}",
        "injection",
        "injections",
        "{injection}",
        "syringe",
        "{syringe}",
    }
)
_ABSURD_DOSE_MG = 10_000.0  # no single dose of any product reviewed here comes near 10 g
_LONGEST_INTERVAL_DAYS = 36_500  # a dose once a century is no regimen
_SHORTEST_INTERVAL_DAYS = 1 / 1440
_TEXT_DOSE = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|g)\b", re.IGNORECASE)


def dosing_of(resource: Resource, product: Product, terminology: Terminology) -> Dosing:
    instructions = _in_sequence(as_list(resource.get("dosageInstruction") or resource.get("dosage")))
    dosage = instructions[0] if instructions else {}
    dose = _dose_mg(_dose_quantity(dosage), product)
    dose_mg, units, unreadable = dose.mg, dose.units, dose.unreadable
    dosage_text = text(dosage.get("text")) or ""
    if dose_mg is None and unreadable is None and dosage_text:
        match = _TEXT_DOSE.search(dosage_text)
        if match:
            dose_mg = mass_mg({"value": float(match.group(1)), "unit": match.group(2)})
    timing = as_dict(dosage.get("timing"))
    repeat = as_dict(timing.get("repeat"))
    interval = _interval_days(timing, repeat)
    unreadable = unreadable or _unreadable_timing(repeat)
    count = whole_number(repeat.get("count"))
    bedtime = _bedtime(timing, repeat, dosage_text, terminology)
    start = first_day(as_dict(repeat.get("boundsPeriod")).get("start"))
    description = describe_dosing(dose_mg, interval, count, bedtime)
    if unreadable:
        description = f"{description}; could not be read: {unreadable}"
    return Dosing(
        dose_mg=dose_mg,
        units_per_dose=units,
        interval_days=interval,
        count=count,
        route=_route(dosage, terminology),
        bedtime=bedtime,
        start=start,
        description=description,
        unreadable=unreadable,
    )


@dataclass(frozen=True, slots=True)
class _Dose:
    mg: float | None = None
    units: float | None = None
    unreadable: str | None = None


def _dose_mg(quantity: Mapping[str, Any] | None, product: Product) -> _Dose:
    """The dose in mg of a doseQuantity: a mass; a count of units of known strength; a volume of a liquid of
    known concentration. A dose that is given but cannot be used says what was sent."""
    if not quantity:
        return _Dose()
    value = number(quantity.get("value"))
    unit = (text(quantity.get("code")) or text(quantity.get("unit")) or "").strip()
    sent = " ".join(p for p in (str(quantity.get("value", "")).strip(), unit) if p) or "an empty dose"
    if value is None or not math.isfinite(value) or value <= 0:
        return _Dose(unreadable=sent)
    mg = mass_mg(quantity)
    units: float | None = None
    if mg is None and unit.lower() in _COUNT_UNITS:
        units = value
        mg = value * product.strength_mg if product.strength_mg is not None else None
    elif mg is None and unit.lower() in _VOLUME_UNITS:
        if product.mg_per_ml is None:
            return _Dose(unreadable=f"{sent} with no concentration stated")
        mg = value * product.mg_per_ml
    elif mg is None:
        return _Dose(unreadable=sent)
    if mg is not None and not 0 < mg <= _ABSURD_DOSE_MG:
        return _Dose(units=units, unreadable=sent)
    return _Dose(mg, units)


def _unreadable_timing(repeat: Mapping[str, Any]) -> str | None:
    """A frequency or period of zero (or less): the order repeats at no readable interval."""
    period, frequency = number(repeat.get("period")), number(repeat.get("frequency"))
    if period is not None and not math.isfinite(period):
        return f"every {repeat.get('period')} {text(repeat.get('periodUnit')) or ''}".strip()
    days = period_days({"value": period, "code": text(repeat.get("periodUnit")) or ""}) if period else None
    if days is not None and (not math.isfinite(days) or days > _LONGEST_INTERVAL_DAYS):
        return f"every {period:g} {text(repeat.get('periodUnit')) or ''}".strip()
    if period is not None and period <= 0:
        return f"every {period:g} {text(repeat.get('periodUnit')) or ''}".strip()
    if frequency is not None and frequency <= 0:
        return f"{frequency:g} times per period"
    return None


def _in_sequence(instructions: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Dosage instructions in their ``sequence`` order (the first one starts the course)."""
    return sorted(instructions, key=lambda d: whole_number(d.get("sequence")) or 0)


def _dose_quantity(dosage: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for dose_and_rate in as_list(dosage.get("doseAndRate")):
        quantity = dose_and_rate.get("doseQuantity")
        if isinstance(quantity, Mapping):
            return quantity
        high = as_dict(dose_and_rate.get("doseRange")).get("high")
        if isinstance(high, Mapping):
            return high
    quantity = dosage.get("doseQuantity")  # STU3 placement, still sent by some clients
    return quantity if isinstance(quantity, Mapping) else None


def _interval_days(timing: Mapping[str, Any], repeat: Mapping[str, Any]) -> float | None:
    period = number(repeat.get("period"))
    unit = text(repeat.get("periodUnit"))
    if period is not None and unit is not None:
        days = period_days({"value": period, "code": unit})
        frequency = number(repeat.get("frequency")) or 1.0
        if days is not None and 0 < days <= _LONGEST_INTERVAL_DAYS and frequency > 0:
            interval = days / frequency
            # doses more often than once a minute are no dosing schedule (a 5e-324 period): unreadable
            return interval if interval >= _SHORTEST_INTERVAL_DAYS else None
    for code in (c.upper() for c in _codes(timing.get("code"))):
        if code in _TIMING_CODES:
            return _TIMING_CODES[code]
    return None


def _codes(concept: Any) -> list[str]:
    """Bare codes, whatever their system (timing and route codes are often sent without one)."""
    return [c["code"] for c in as_list(as_dict(concept).get("coding")) if isinstance(c.get("code"), str)]


def _bedtime(
    timing: Mapping[str, Any], repeat: Mapping[str, Any], dosage_text: str, terminology: Terminology
) -> bool:
    when = {w.upper() for w in strings(repeat.get("when"))}
    if when & _BEDTIME_WHEN:
        return True
    if any(time >= "18:00" or time < "03:00" for time in strings(repeat.get("timeOfDay"))):
        return True
    if "BED" in {c.upper() for c in _codes(timing.get("code"))}:
        return True
    texts = [dosage_text, *concept_texts(timing.get("code"))]
    return terminology.lexicon.matches("bedtime", [t for t in texts if t])


def _route(
    dosage: Mapping[str, Any], terminology: Terminology
) -> Literal["oral", "intramuscular", "other"] | None:
    route = dosage.get("route")
    if not isinstance(route, Mapping):
        return None
    codes = set(_codes(route))
    texts = concept_texts(route)
    if "26643006" in codes or terminology.lexicon.matches("oral_route", texts):
        return "oral"
    if "78421000" in codes or terminology.lexicon.matches("intramuscular_route", texts):
        return "intramuscular"
    return "other" if codes or texts else None


def describe_dosing(dose_mg: float | None, interval: float | None, count: int | None, bedtime: bool) -> str:
    """ "50 mg daily", "1.5 mg daily at bedtime", "no dose stated, every 4 weeks"."""
    timing = []
    if count == 1:
        timing.append("once")
    elif interval is not None:
        timing.append(_describe_interval(interval))
    if bedtime:
        timing.append("at bedtime")
    if dose_mg is None:
        return ", ".join(["no dose stated", " ".join(timing)]) if timing else "no dose stated"
    return " ".join([format_mg(dose_mg), *timing])


def _describe_interval(days: float) -> str:
    if days <= 0:
        return "at an unreadable interval"
    if abs(days - 1) < 0.01:
        return "daily"
    if days < 1:
        return f"{round(1 / days)} times a day"
    if abs(days % 7) < 0.01:
        weeks = round(days / 7)
        return "weekly" if weeks == 1 else f"every {weeks} weeks"
    if 28 <= days <= 31:
        return "monthly"
    return f"every {round(days)} days"


def format_mg(value: float) -> str:
    return f"{value:g} mg"


# ------------------------------------------------------------------------------------------ exposure

ExposureKind = Literal["request", "dispense", "statement", "administration"]


@dataclass(frozen=True, slots=True)
class Exposure:
    """A medication the record says the patient took, takes, or was supplied."""

    product: Product
    reference: str
    kind: ExposureKind
    status: str
    start: date | None
    end: date | None
    """Last day covered (supply, effective period, depot action); ``None`` when open-ended."""
    current: bool
    """The record says it is taken now (supply covers today, open-ended, or status active)."""
    stale: bool = False
    """Status active although the calculated supply ran out before today."""
    dose_mg: float | None = None
    detail: str = ""

    def days_since_end(self, today: date) -> int | None:
        return None if self.end is None else (today - self.end).days

    def evidence(self) -> str:
        return fact_line(drug_label(self.product.name), self.detail, self.reference)


_SKIP = {
    "MedicationRequest": {"entered-in-error", "cancelled", "draft"},
    "MedicationDispense": {"entered-in-error", "cancelled", "declined", "preparation"},
    "MedicationStatement": {"entered-in-error", "not-taken", "intended"},
    "MedicationAdministration": {"entered-in-error", "not-done"},
}
_PLANNING_INTENTS = frozenset({"proposal", "plan", "option"})
_KIND: dict[str, ExposureKind] = {
    "MedicationRequest": "request",
    "MedicationDispense": "dispense",
    "MedicationStatement": "statement",
    "MedicationAdministration": "administration",
}


def exposures(
    resources: Iterable[Resource],
    medications: Mapping[str, Resource],
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> list[Exposure]:
    found = []
    for resource in resources:
        resource_type = resource.get("resourceType", "")
        status = text(resource.get("status")) or "unknown"
        if status in _SKIP.get(resource_type, set()) or resource.get("doNotPerform") is True:
            continue
        if resource_type == "MedicationRequest" and text(resource.get("intent")) in _PLANNING_INTENTS:
            continue
        product = classify(medication_of(resource, medications), terminology)
        if product.product_class is ProductClass.OTHER:
            continue  # no rule reads other drugs: their dosing is not worked out
        exposure = _exposure(resource, resource_type, status, product, terminology, policy, today)
        if exposure is not None:
            found.append(exposure)
    return found


def _exposure(
    resource: Resource,
    resource_type: str,
    status: str,
    product: Product,
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> Exposure | None:
    dosing = dosing_of(resource, product, terminology)
    reference = reference_of(resource)
    kind = _KIND.get(resource_type)
    if kind is None:
        return None
    if kind == "request":
        return _from_request(resource, reference, status, product, dosing, policy, today)
    if kind == "dispense":
        handed = first_day(resource.get("whenHandedOver"), resource.get("whenPrepared"))
        if handed is None:
            return None  # not handed over yet: no exposure to date
        days = period_days(resource.get("daysSupply")) or _supply_days(resource.get("quantity"), dosing)
        assumed = days is None
        if product.depot:
            days = max(days or 0, _depot_days(product, policy))
        covered = days if days is not None else float(policy.unknown_supply_days)
        supply_end = add_days(handed, covered - 1)
        detail = f"dispensed {day(handed)}, supply to {day(supply_end)}"
        if assumed:
            detail += f" (days' supply not recorded: {policy.unknown_supply_days} assumed)"
        return Exposure(
            product,
            reference,
            kind,
            status,
            handed,
            supply_end,
            supply_end >= today,
            dose_mg=dosing.dose_mg,
            detail=detail,
        )
    effective = as_dict(resource.get("effectivePeriod"))
    start = first_day(effective.get("start"), resource.get("effectiveDateTime"))
    end = first_day(effective.get("end"), resource.get("effectiveDateTime"), effective.get("start"), end=True)
    if kind == "administration" and product.depot and end is not None:
        end = add_days(end, _depot_days(product, policy) - 1)
    ongoing = {"statement": {"active", "on-hold", "unknown"}, "administration": {"in-progress", "on-hold"}}[
        kind
    ]
    if status in ongoing:
        detail = f"{status}" + (f" since {day(start)}" if start else "")
        return Exposure(
            product, reference, kind, status, start, None, True, dose_mg=dosing.dose_mg, detail=detail
        )
    if end is None:
        end = first_day(resource.get("dateAsserted"), end=True)
    if end is None:
        return None
    verb = "taken until" if kind == "statement" else "given"
    detail = f"{status}, {verb} {day(end)}"
    if kind == "administration" and product.depot:
        detail = f"{status}, depot given {day(start or end)}, acting to {day(end)}"
    return Exposure(
        product, reference, kind, status, start, end, end >= today, dose_mg=dosing.dose_mg, detail=detail
    )


def _from_request(
    resource: Resource,
    reference: str,
    status: str,
    product: Product,
    dosing: Dosing,
    policy: Policy,
    today: date,
) -> Exposure:
    dispense = as_dict(resource.get("dispenseRequest"))
    start = dosing.start or first_day(
        as_dict(dispense.get("validityPeriod")).get("start"), resource.get("authoredOn")
    )
    supply = period_days(dispense.get("expectedSupplyDuration")) or _supply_days(
        dispense.get("quantity"), dosing
    )
    if product.depot and supply is None:
        supply = float(_depot_days(product, policy))
    still_active = status in ("active", "on-hold", "unknown")
    # Refills count while the prescription is active and once it is completed (all fills happened);
    # a stopped one may have been stopped before its refills.
    repeats = whole_number(dispense.get("numberOfRepeatsAllowed")) or 0
    fills = 1 if status == "stopped" else 1 + max(0, repeats)
    bounds_end = _bounds_end(resource)
    end: date | None = None
    assumed = False
    if start is not None and supply is not None:
        end = add_days(start, supply * fills - 1)
    if bounds_end is not None:
        end = max(end, bounds_end) if end else bounds_end
    if end is None and not still_active and start is not None:
        end = add_days(start, policy.unknown_supply_days - 1)  # no supply recorded: assume the usual
        assumed = True
    if end is None:
        detail = f"{status}" + (f", ordered {day(start)}" if start else "") + ", no end date"
        return Exposure(
            product, reference, "request", status, start, None, True, dose_mg=dosing.dose_mg, detail=detail
        )
    ordered = f", ordered {day(start)}" if start else ""
    if assumed:
        ordered += f" (no supply recorded: {policy.unknown_supply_days} days assumed)"
    if end >= today:
        detail = f"{status}{ordered}, supply to {day(end)}"
        return Exposure(
            product, reference, "request", status, start, end, True, dose_mg=dosing.dose_mg, detail=detail
        )
    if still_active:
        # Inside the opioid-free interval the supply end dates the last exposure (opioid-recent); past
        # it, a prescription nobody marked stopped is not evidence of being opioid-free.
        washout = policy.washout_days(long_acting=product.long_acting)
        current = policy.stale_active_prescription_is_current and (today - end).days >= washout
        detail = f"still marked {status}, but its supply ended {day(end)}"
        return Exposure(
            product,
            reference,
            "request",
            status,
            start,
            end,
            current,
            stale=True,
            dose_mg=dosing.dose_mg,
            detail=detail,
        )
    detail = f"{status}{ordered}, supply ended {day(end)}"
    return Exposure(
        product, reference, "request", status, start, end, False, dose_mg=dosing.dose_mg, detail=detail
    )


def _bounds_end(resource: Resource) -> date | None:
    """The latest end of any dosage instruction (a taper is several instructions, one after another)."""
    ends = [
        first_day(
            as_dict(as_dict(as_dict(d.get("timing")).get("repeat")).get("boundsPeriod")).get("end"), end=True
        )
        for d in as_list(resource.get("dosageInstruction"))
    ]
    known = [end for end in ends if end is not None]
    return max(known) if known else None


def _depot_days(product: Product, policy: Policy) -> int:
    """How long one depot dose counts as exposure: buprenorphine depots act far longer than a month."""
    if product.product_class is ProductClass.OPIOID:
        return policy.depot_buprenorphine_exposure_days
    return policy.depot_exposure_days


def _supply_days(quantity: Any, dosing: Dosing) -> float | None:
    """Days a dispensed count lasts: count / (units per dose x doses per day)."""
    amount = number(as_dict(quantity).get("value"))
    if (
        amount is None
        or dosing.units_per_dose is None
        or dosing.interval_days is None
        or dosing.units_per_dose <= 0
    ):
        return None
    return amount / dosing.units_per_dose * dosing.interval_days
