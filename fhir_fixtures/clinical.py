"""FHIR resources for clinical scenarios, dated relative to the tests' fixed "now" (tests.conftest.NOW)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from fhir_fixtures.requests import PATIENT_ID, RXNORM, hook_request, naltrexone_order, searchset

TODAY = date(2026, 11, 22)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PROJECT_OBSERVATION = "http://naltrexone-cds.org/fhir/CodeSystem/observation"
_ids = itertools.count(1)

OXYCODONE = ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet")
METHADONE = ("864706", "methadone hydrochloride 10 MG Oral Tablet")
BUPRENORPHINE_NALOXONE = ("1010603", "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film [Suboxone]")
EMBEDA = ("863850", "morphine sulfate / naltrexone ER capsule [Embeda]")
CONTRAVE = (
    "1551468",
    "12 HR bupropion hydrochloride 90 MG / naltrexone hydrochloride 8 MG Extended Release Oral Tablet",
)
VIVITROL = ("637213", "naltrexone 380 MG Injection")
NALOXONE_SPRAY = ("1725059", "naloxone hydrochloride 40 MG/ML Nasal Spray")
LOPERAMIDE_TEXT = "loperamide 2 mg capsule"


def reset_ids() -> None:
    """Restart resource numbering (fixture files must come out the same on every build)."""
    global _ids
    _ids = itertools.count(1)


def day(offset: int) -> str:
    """ISO date ``offset`` days from today (negative = in the past)."""
    return (TODAY + timedelta(days=offset)).isoformat()


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def rx(code: str | None, display: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code, "display": display}]
    return concept


def medication_request(
    product: tuple[str, str] | dict[str, Any],
    *,
    status: str = "active",
    authored: int = -3,
    supply_days: float | None = 30,
    repeats: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    concept = product if isinstance(product, dict) else rx(*product)
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": day(authored),
        "medicationCodeableConcept": concept,
    }
    if supply_days is not None:
        resource["dispenseRequest"] = {
            "expectedSupplyDuration": {"value": supply_days, "unit": "days", "system": UCUM, "code": "d"}
        }
        if repeats is not None:
            resource["dispenseRequest"]["numberOfRepeatsAllowed"] = repeats
    resource.update(extra)
    return resource


def dispense(
    product: tuple[str, str], *, handed: int, days_supply: float, status: str = "completed"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationDispense",
        "id": _id("md"),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": rx(*product),
        "whenHandedOver": day(handed) + "T10:00:00Z",
        "daysSupply": {"value": days_supply, "unit": "days", "system": UCUM, "code": "d"},
    }


def statement(
    product: tuple[str, str], *, status: str = "active", start: int = -60, end: int | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": _id("ms"),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": rx(*product),
        "effectivePeriod": {"start": day(start)},
    }
    if end is not None:
        resource["effectivePeriod"]["end"] = day(end)
    return resource


def administration(product: tuple[str, str], *, given: int, status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": _id("ma"),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": rx(*product),
        "effectiveDateTime": day(given) + "T09:00:00Z",
    }


def condition(
    system: str,
    code: str,
    display: str,
    *,
    clinical: str | None = "active",
    verification: str | None = None,
    onset: int = -30,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": _id("cond"),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "onsetDateTime": day(onset),
    }
    if clinical:
        resource["clinicalStatus"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}
            ]
        }
    if verification:
        resource["verificationStatus"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}
            ]
        }
    return resource


def oud(**kwargs: Any) -> dict[str, Any]:
    return condition(ICD10, "F11.20", "Opioid dependence, uncomplicated", **kwargs)


def allergy(
    code: dict[str, Any], *, clinical: str = "active", verification: str | None = "confirmed"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": _id("al"),
        "patient": {"reference": f"Patient/{PATIENT_ID}"},
        "code": code,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": clinical,
                }
            ]
        },
    }
    if verification:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": verification,
                }
            ]
        }
    return resource


def observation(
    code: str, display: str, *, when: int, system: str = LOINC, status: str = "final", **value: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": day(when) + "T08:00:00Z",
    }
    resource.update(value)
    return resource


def urine_opiates(result: str, *, when: int, **kwargs: Any) -> dict[str, Any]:
    return observation(
        "19295-5", "Opiates [Presence] in Urine by Screen method", when=when, valueString=result, **kwargs
    )


def naloxone_challenge(result: str, *, when: int) -> dict[str, Any]:
    answers = {"passed": ("260385009", "Negative"), "failed": ("10828004", "Positive")}
    code, display = answers[result]
    return observation(
        "naloxone-challenge",
        "Naloxone challenge",
        when=when,
        system="http://naltrexone-cds.org/fhir/CodeSystem/observation",
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": code, "display": display}]},
    )


def lab_value(
    code: str, display: str, value: float, unit: str, *, when: int, high: float | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
    if high is not None:
        extra["referenceRange"] = [{"high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}]
    return observation(code, display, when=when, **extra)


def alt(value: float, *, when: int = -10, high: float | None = 40) -> dict[str, Any]:
    return lab_value(
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        value,
        "U/L",
        when=when,
        high=high,
    )


def ast(value: float, *, when: int = -10, high: float | None = 40) -> dict[str, Any]:
    return lab_value(
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        value,
        "U/L",
        when=when,
        high=high,
    )


def bilirubin(value: float, *, when: int = -10, high: float | None = 1.2) -> dict[str, Any]:
    return lab_value(
        "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", value, "mg/dL", when=when, high=high
    )


PREFETCH_FOR_TYPE = {
    "MedicationRequest": "medicationRequests",
    "MedicationDispense": "medicationDispenses",
    "MedicationStatement": "medicationStatements",
    "MedicationAdministration": "medicationAdministrations",
    "Condition": "conditions",
    "AllergyIntolerance": "allergies",
    "Observation": "labResults",
    "ServiceRequest": "serviceRequests",
    "Appointment": "appointments",
    "Procedure": "procedures",
}

CPT = "http://www.ama-assn.org/go/cpt"
SURGICAL_CATEGORY = {"coding": [{"system": SNOMED, "code": "387713003", "display": "Surgical procedure"}]}


def surgery_order(
    name: str = "Laparoscopic cholecystectomy",
    *,
    in_days: int | None,
    cpt: str | None = "47562",
    **extra: Any,
) -> dict[str, Any]:
    """An active surgical ServiceRequest planned ``in_days`` from today (``None``: no date recorded)."""
    code: dict[str, Any] = {"text": name}
    if cpt:
        code["coding"] = [{"system": CPT, "code": cpt, "display": name}]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": _id("sr"),
        "status": "active",
        "intent": "order",
        "category": [SURGICAL_CATEGORY],
        "code": code,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": day(-14),
    }
    if in_days is not None:
        resource["occurrenceDateTime"] = day(in_days) + "T07:30:00-05:00"
    resource.update(extra)
    return resource


def appointment(description: str, *, in_days: int, status: str = "booked", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": _id("appt"),
        "status": status,
        "description": description,
        "start": day(in_days) + "T08:00:00-06:00",
        "end": day(in_days) + "T11:00:00-06:00",
        "participant": [{"actor": {"reference": f"Patient/{PATIENT_ID}"}, "status": "accepted"}],
    }
    resource.update(extra)
    return resource


def procedure(
    system: str, code: str, display: str, *, status: str = "completed", performed: int | None = -5
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": _id("proc"),
        "status": status,
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    if performed is not None:
        resource["performedDateTime"] = day(performed)
    return resource


def scenario(
    *resources: dict[str, Any],
    order: dict[str, Any] | None = None,
    hook: str = "order-select",
    drafts: list[dict[str, Any]] | None = None,
    **request: Any,
) -> dict[str, Any]:
    """A hook request for ``order`` (default: naltrexone 50 mg daily) with ``resources`` in prefetch."""
    order = order or naltrexone_order()
    override = request.pop("prefetch_override", None)
    body = hook_request(hook, drafts=[order, *(drafts or [])], **request)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        key = PREFETCH_FOR_TYPE[resource["resourceType"]]
        if resource["resourceType"] == "Observation" and "naloxone-challenge" in str(resource["code"]):
            key = "naloxoneChallenges"
        grouped.setdefault(key, []).append(resource)
    for key, items in grouped.items():
        body["prefetch"][key] = searchset(*items)
    body["prefetch"].update(override or {})
    return body


def ldn_order(
    dose_mg: float = 1.5, *, when: Sequence[str] | None = ("HS",), text: str | None = None, **extra: Any
) -> dict[str, Any]:
    repeat: dict[str, Any] = {"frequency": 1, "period": 1, "periodUnit": "d"}
    if when:
        repeat["when"] = list(when)
    return naltrexone_order(
        "ldn-1",
        medicationCodeableConcept={
            "text": text or f"naltrexone {dose_mg:g} mg capsule (compounded, immediate-release)"
        },
        dosageInstruction=[
            {
                "timing": {"repeat": repeat},
                "doseAndRate": [
                    {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ],
        **extra,
    )


def xr_order(dose_mg: float = 380, *, weeks: int = 4, route: str | None = "78421000") -> dict[str, Any]:
    dosage: dict[str, Any] = {
        "timing": {"repeat": {"frequency": 1, "period": weeks, "periodUnit": "wk"}},
        "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}],
    }
    if route:
        dosage["route"] = {"coding": [{"system": SNOMED, "code": route}]}
    return naltrexone_order("xr-1", medicationCodeableConcept=rx(*VIVITROL), dosageInstruction=[dosage])


def opioid_order(product: tuple[str, str] = OXYCODONE) -> dict[str, Any]:
    return naltrexone_order(
        "opioid-1",
        medicationCodeableConcept=rx(*product),
        dosageInstruction=[
            {
                "timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            }
        ],
    )


def methadone_taper() -> dict[str, Any]:
    """A completed methadone order written as a taper: two dosage lines, the last ending 5 days ago."""
    steps = [(1, -60, -30), (2, -29, -5)]
    return medication_request(
        METHADONE,
        status="completed",
        authored=-60,
        supply_days=None,
        dosageInstruction=[
            {"sequence": n, "timing": {"repeat": {"boundsPeriod": {"start": day(start), "end": day(end)}}}}
            for n, start, end in steps
        ],
    )
