"""CDS Hooks suggestions: the FHIR actions a card offers, by the name a rule gives them.

Each builder is registered with ``@suggestion("name")``; the rule book may name only registered ones.
Updates carry the whole draft resource (as CDS Hooks requires), after repairing the harmless non-R4
shapes clients send (``category`` as one object, ``doseAndRate`` as one object, STU3's ``doseQuantity``
on the dosage) so that what comes back is valid R4. A builder returns ``None`` when it has nothing to
offer for this order (no date to move to, a patient allergic to naloxone...).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from cds_service.cdshooks import Action, Suggestion
from cds_service.facts import ClinicalFacts
from cds_service.facts.allergies import ALLERGIES
from cds_service.facts.medications import format_mg
from cds_service.facts.opioid_exposure import OPIOIDS
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import day
from cds_service.fhir import as_dict, json_copy
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import LOINC, PROJECT, RXNORM, SNOMED

UCUM = "http://unitsofmeasure.org"
Resource = dict[str, Any]


@dataclass(frozen=True)
class SuggestionContext:
    order: OrderFacts
    facts: ClinicalFacts
    patient_id: str
    user_id: str | None
    encounter_id: str | None

    @property
    def today(self) -> date:
        return self.facts.inputs.today

    @property
    def policy(self) -> Policy:
        return self.facts.policy


Builder = Callable[[SuggestionContext], Suggestion | None]
BUILDERS: dict[str, Builder] = {}
"""Filled by ``@suggestion``: the rule book is checked against these names."""
DESCRIPTIONS: dict[str, str] = {}
"""What each suggestion offers, in words (the rule pages list them)."""


def suggestion(name: str, description: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        if name in BUILDERS:
            raise ValueError(f"suggestion {name!r} is registered twice")
        BUILDERS[name] = builder
        DESCRIPTIONS[name] = description
        return builder

    return register


def _suggestion(label: str, *actions: Action) -> Suggestion:
    return Suggestion(label=label, uuid=str(uuid.uuid4()), actions=actions)


def _update(description: str, resource: Resource) -> Action:
    return Action(type="update", description=description, resource=resource)


def _create(description: str, resource: Resource) -> Action:
    return Action(type="create", description=description, resource=resource)


def normalised_draft(order: Mapping[str, Any]) -> Resource:
    draft: Resource = json_copy(dict(order))
    if isinstance(draft.get("category"), dict):
        draft["category"] = [draft["category"]]
    for dosage in draft.get("dosageInstruction", []):
        if isinstance(dosage.get("doseAndRate"), dict):
            dosage["doseAndRate"] = [dosage["doseAndRate"]]
        if isinstance(dosage.get("doseQuantity"), dict):
            dosage.setdefault("doseAndRate", []).insert(0, {"doseQuantity": dosage.pop("doseQuantity")})
    return draft


def _mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _with_dosage(
    draft: Resource,
    *,
    dose_mg: float | None = None,
    every_days: float | None = None,
    count: int | None = None,
    when: list[str] | None = None,
    start: date | None = None,
    route: Mapping[str, Any] | None = None,
    text: str | None = None,
) -> Resource:
    instructions = draft.setdefault("dosageInstruction", [])
    if not instructions:
        instructions.append({})
    dosage = instructions[0]
    repeat = dosage.setdefault("timing", {}).setdefault("repeat", {})
    if dose_mg is not None:
        dosage["doseAndRate"] = [{"doseQuantity": _mg(dose_mg)}]
    if every_days is not None:
        repeat.update(_frequency(every_days))
        repeat.pop("count", None)
    if count is not None:
        repeat["count"] = count
    if when is not None:
        repeat["when"] = when
        repeat.pop("timeOfDay", None)
    if start is not None:
        bounds = repeat.setdefault("boundsPeriod", {})
        bounds["start"] = start.isoformat()
        if "end" in bounds and bounds["end"] < bounds["start"]:
            del bounds["end"]
    if route is not None:
        dosage["route"] = dict(route)
    if text is not None:
        dosage["text"] = text
    return draft


def _frequency(every_days: float) -> dict[str, Any]:
    if every_days % 7 == 0:
        return {"frequency": 1, "period": int(every_days // 7), "periodUnit": "wk"}
    return {"frequency": 1, "period": every_days if every_days % 1 else int(every_days), "periodUnit": "d"}


def _order_start(ctx: SuggestionContext) -> date:
    return ctx.order.dosing.start or ctx.today


def _subject(ctx: SuggestionContext) -> dict[str, str]:
    return {"reference": f"Patient/{ctx.patient_id}"}


def _service_request(ctx: SuggestionContext, system: str, code: str, display: str, note: str) -> Resource:
    request: Resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": _subject(ctx),
        "authoredOn": ctx.today.isoformat(),
        "note": [{"text": note}],
    }
    if ctx.user_id and ctx.user_id.startswith(("Practitioner/", "PractitionerRole/")):
        request["requester"] = {"reference": ctx.user_id}
    if ctx.encounter_id:
        request["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    return request


@suggestion(
    "cancel-order",
    "Cancel the draft order (naltrexone, or the opioid ordered while naltrexone blocks)",
)
def cancel_order(ctx: SuggestionContext) -> Suggestion | None:
    order_id = ctx.order.resource.get("id")
    if not isinstance(order_id, str):
        return None
    what = "opioid" if ctx.order.kind == "opioid" else "naltrexone"
    return _suggestion(
        f"Cancel this {what} order",
        Action(
            type="delete",
            description=f"Remove the draft {what} order",
            resource_id=f"MedicationRequest/{order_id}",
        ),
    )


@suggestion(
    "move-start",
    "Move the order's start (and validity) to the earliest safe date",
)
def move_start(ctx: SuggestionContext) -> Suggestion | None:
    start = ctx.facts.of(OPIOIDS).earliest_start
    if start is None:
        return None
    draft = _with_dosage(normalised_draft(ctx.order.resource), start=start)
    validity = draft.setdefault("dispenseRequest", {}).setdefault("validityPeriod", {})
    validity["start"] = start.isoformat()
    if "end" in validity and validity["end"] < validity["start"]:
        del validity["end"]
    return _suggestion(
        f"Start on {day(start)}, after the opioid-free interval",
        _update(f"Set the order's start date to {day(start)}", draft),
    )


@suggestion(
    "test-dose",
    "Change the order to one 25 mg test dose (one tablet, no refills) and add 50 mg daily from the next "
    "day, keeping the supply written",
)
def test_dose(ctx: SuggestionContext) -> Suggestion | None:
    start = _order_start(ctx)
    first = _with_dosage(
        normalised_draft(ctx.order.resource),
        dose_mg=25,
        every_days=1,
        count=1,
        start=start,
        text="25 mg (half a 50 mg tablet) once as a test dose; watch for opioid withdrawal",
    )
    # one dose, no refills; the 50 mg follow-on keeps the supply the prescriber wrote
    supply = first.setdefault("dispenseRequest", {})
    supply.pop("expectedSupplyDuration", None)
    supply["quantity"] = {"value": 1, "unit": "tablet"}
    supply["numberOfRepeatsAllowed"] = 0
    follow_on = _with_dosage(
        normalised_draft(ctx.order.resource),
        dose_mg=50,
        every_days=1,
        start=start + timedelta(days=1),
        text="50 mg once daily, from the day after an uneventful 25 mg test dose",
    )
    follow_on.pop("id", None)
    follow_on["status"] = "draft"
    follow_on.get("dosageInstruction", [{}])[0].get("timing", {}).get("repeat", {}).pop("count", None)
    return _suggestion(
        "25 mg test dose, then 50 mg daily from the next day",
        _update("Change this order to a single 25 mg test dose", first),
        _create("Add 50 mg once daily starting the day after the test dose", follow_on),
    )


_URINE_SCREENS = (
    ("19295-5", "Opiates [Presence] in Urine by Screen method"),
    ("59673-4", "fentaNYL [Presence] in Urine by Screen method"),
    ("93494-3", "Buprenorphine [Presence] in Urine by Screen method"),
    ("19550-3", "Methadone [Presence] in Urine by Screen method"),
)


@suggestion(
    "order-urine-screen",
    "Order urine screens for opiates, fentanyl, buprenorphine and methadone",
)
def order_urine_screen(ctx: SuggestionContext) -> Suggestion | None:
    note = "Before starting naltrexone: a positive opioid screen is a contraindication."
    actions = [
        _create(f"Order {display}", _service_request(ctx, LOINC, code, display, note))
        for code, display in _URINE_SCREENS
    ]
    return _suggestion("Order a urine opioid screen (opiates, fentanyl, buprenorphine, methadone)", *actions)


def _allergic_to_naloxone(ctx: SuggestionContext) -> bool:
    return bool(ctx.facts.of(ALLERGIES).naloxone)


@suggestion(
    "order-naloxone-challenge",
    "Order a naloxone challenge (never for a patient allergic to naloxone)",
)
def order_naloxone_challenge(ctx: SuggestionContext) -> Suggestion | None:
    if _allergic_to_naloxone(ctx):
        return None  # never suggest naloxone to a patient with a naloxone allergy on record
    request = _service_request(
        ctx,
        f"{PROJECT}/CodeSystem/observation",
        "naloxone-challenge",
        "Naloxone challenge test",
        "Naloxone 0.2 mg IV then 0.6 mg after 30 s (or 0.8 mg SC); observe 20 min for withdrawal. "
        "Record the result as described in the naltrexone-cds rules README.",
    )
    return _suggestion("Order a naloxone challenge", _create("Order a naloxone challenge test", request))


@suggestion(
    "order-liver-panel",
    "Order a hepatic function panel",
)
def order_liver_panel(ctx: SuggestionContext) -> Suggestion | None:
    display = "Hepatic function 2000 panel - Serum or Plasma"
    request = _service_request(ctx, LOINC, "24325-3", display, "Liver tests for naltrexone treatment.")
    return _suggestion("Order a hepatic function panel", _create("Order a hepatic function panel", request))


@suggestion(
    "prescribe-naloxone",
    "Prescribe naloxone 4 mg nasal spray, 2 devices (never for a patient allergic to naloxone)",
)
def prescribe_naloxone(ctx: SuggestionContext) -> Suggestion | None:
    if _allergic_to_naloxone(ctx):
        return None  # never suggest naloxone to a patient with a naloxone allergy on record
    prescription: Resource = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": RXNORM,
                    "code": "1725059",
                    "display": "naloxone hydrochloride 40 MG/ML Nasal Spray",
                }
            ],
            "text": "naloxone 4 mg nasal spray",
        },
        "subject": _subject(ctx),
        "authoredOn": ctx.today.isoformat(),
        "dosageInstruction": [
            {
                "text": "For suspected opioid overdose: one spray in one nostril; call emergency services; "
                "if no response in 2-3 minutes give a second device in the other nostril.",
                "asNeededBoolean": True,
            }
        ],
        "dispenseRequest": {"quantity": {"value": 2, "unit": "device"}},
    }
    if ctx.user_id and ctx.user_id.startswith(("Practitioner/", "PractitionerRole/")):
        prescription["requester"] = {"reference": ctx.user_id}
    return _suggestion(
        "Prescribe naloxone 4 mg nasal spray (2 devices)",
        _create("Prescribe naloxone nasal spray", prescription),
    )


@suggestion(
    "ldn-step",
    "Change the low dose to the planned titration step, at bedtime",
)
def ldn_step(ctx: SuggestionContext) -> Suggestion | None:
    plan = ctx.order.ldn_plan
    dose = ctx.order.dosing.dose_mg
    if plan is None or (dose is not None and dose <= plan.planned_dose_mg):
        return None
    target = plan.planned_dose_mg
    draft = _with_dosage(normalised_draft(ctx.order.resource), dose_mg=target, every_days=1, when=["HS"])
    return _suggestion(
        f"Change to {format_mg(target)} at bedtime (the next titration step)",
        _update(f"Set the dose to {format_mg(target)} at bedtime", draft),
    )


@suggestion(
    "ldn-max-dose",
    "Reduce the low dose to the maximum",
)
def ldn_max_dose(ctx: SuggestionContext) -> Suggestion | None:
    target = ctx.policy.ldn_max_dose_mg
    draft = _with_dosage(normalised_draft(ctx.order.resource), dose_mg=target)
    return _suggestion(
        f"Reduce to {format_mg(target)}", _update(f"Set the dose to {format_mg(target)}", draft)
    )


@suggestion(
    "ldn-bedtime",
    "Time the low dose at bedtime",
)
def ldn_bedtime(ctx: SuggestionContext) -> Suggestion | None:
    draft = _with_dosage(normalised_draft(ctx.order.resource), when=["HS"])
    return _suggestion("Take at bedtime", _update("Time the dose at bedtime", draft))


@suggestion(
    "ldn-compounded",
    "Change the product to a compounded immediate-release capsule of the same dose",
)
def ldn_compounded(ctx: SuggestionContext) -> Suggestion | None:
    dose = ctx.order.dosing.dose_mg or ctx.policy.ldn_start_dose_mg
    draft = normalised_draft(ctx.order.resource)
    draft.pop("medicationReference", None)
    draft["medicationCodeableConcept"] = {
        "coding": [{"system": RXNORM, "code": "7243", "display": "naltrexone"}],
        "text": f"naltrexone {format_mg(dose)} capsule, compounded immediate-release (no calcium carbonate)",
    }
    draft = _with_dosage(draft, dose_mg=dose)
    return _suggestion(
        f"Order compounded immediate-release naltrexone {format_mg(dose)} capsules",
        _update("Change the product to a compounded immediate-release capsule", draft),
    )


_INTRAMUSCULAR = {"coding": [{"system": SNOMED, "code": "78421000", "display": "Intramuscular route"}]}


@suggestion(
    "xr-standard-dose",
    "Set 380 mg IM every 4 weeks",
)
def xr_standard_dose(ctx: SuggestionContext) -> Suggestion | None:
    draft = _with_dosage(
        normalised_draft(ctx.order.resource),
        dose_mg=380,
        every_days=28,
        route=_INTRAMUSCULAR,
        text="380 mg deep intramuscular gluteal injection every 4 weeks, alternating buttocks",
    )
    return _suggestion("Change to 380 mg IM every 4 weeks", _update("Set 380 mg IM every 4 weeks", draft))


@suggestion(
    "standard-dose",
    "Set the form's standard dose: 50 mg daily, 380 mg IM every 4 weeks, or the low-dose start at bedtime",
)
def standard_dose(ctx: SuggestionContext) -> Suggestion | None:
    if ctx.order.kind == "naltrexone-xr":
        return xr_standard_dose(ctx)
    if ctx.order.kind == "naltrexone-low-dose":
        start = ctx.policy.ldn_start_dose_mg
        draft = _with_dosage(normalised_draft(ctx.order.resource), dose_mg=start, every_days=1, when=["HS"])
        return _suggestion(
            f"Change to {format_mg(start)} at bedtime", _update("Set the starting low dose", draft)
        )
    draft = _with_dosage(normalised_draft(ctx.order.resource), dose_mg=50, every_days=1)
    as_dict(draft["dosageInstruction"][0]).get("timing", {}).get("repeat", {}).pop("count", None)
    return _suggestion("Change to 50 mg once daily", _update("Set 50 mg once daily", draft))
