"""Stage 3: FHIR data -> clinical facts. Pure functions; "today" is an argument, never read here.

``derive`` returns one ``PatientFacts`` (what the record says about the patient, with the FHIR
references behind each statement) and one ``OrderFacts`` per reviewed order; ``engine_fact`` flattens
the two into the booleans and numbers the rules are written against (see ``rules/README.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cds_service.facts.fhir import Resource
from cds_service.facts.medications import exposures
from cds_service.facts.orders import ClassifiedOrder, LdnPlan, OrderFacts, classify_orders, order_facts
from cds_service.facts.patient import PatientFacts, patient_facts
from cds_service.gather import PatientRecord
from cds_service.policy import Policy
from cds_service.terminology import Terminology

__all__ = [
    "FACT_NAMES",
    "ClassifiedOrder",
    "ClinicalFacts",
    "LdnPlan",
    "OrderFacts",
    "PatientFacts",
    "classify_orders",
    "derive",
    "engine_fact",
    "medication_index",
]

HISTORY_TYPES = ("MedicationRequest", "MedicationDispense", "MedicationStatement", "MedicationAdministration")


@dataclass(frozen=True)
class ClinicalFacts:
    patient: PatientFacts
    orders: tuple[OrderFacts, ...] = field(default=())


def medication_index(
    medications: Iterable[Resource], full_urls: Mapping[str, Resource] | None = None
) -> dict[str, Resource]:
    """Medications by id, and by fullUrl for those carried in the draft orders' Bundle."""
    index: dict[str, Resource] = {m["id"]: m for m in medications if isinstance(m.get("id"), str)}
    for full_url, resource in (full_urls or {}).items():
        if resource.get("resourceType") == "Medication":
            index[full_url] = resource
    return index


def derive(
    reviewed: Sequence[ClassifiedOrder],
    drafts: Sequence[ClassifiedOrder],
    draft_resources: Sequence[Resource],
    record: PatientRecord,
    medications: Mapping[str, Resource],
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> ClinicalFacts:
    # Draft orders are not history, even when the EHR also returns them in a prefetch search.
    draft_ids = {(r.get("resourceType"), r["id"]) for r in draft_resources if isinstance(r.get("id"), str)}
    history_resources = [
        r
        for t in HISTORY_TYPES
        for r in record.of_type(t)
        if not (isinstance(r.get("id"), str) and (t, r["id"]) in draft_ids)
    ]
    history = exposures(history_resources, medications, terminology, policy, today)
    patient = patient_facts(history, drafts, record, terminology, policy, today)
    orders = tuple(order_facts(index, order, history, policy, today) for index, order in enumerate(reviewed))
    return ClinicalFacts(patient=patient, orders=orders)


FACT_NAMES = frozenset(
    {
        "id", "kind", "naltrexone_start", "standard_or_injectable", "regimen", "opioid_active",
        "opioid_in_draft_orders", "opioid_within_washout", "opioid_exposure_recent",
        "opioid_history_unavailable",
        "clinical_data_unavailable", "opioid_use_disorder", "alcohol_use_disorder", "opioid_withdrawal",
        "uds_positive_recent", "challenge_passed_after_uds", "uds_recent", "challenge_failed_recent",
        "challenge_recent", "hepatic_contraindication", "decompensated_cirrhosis", "lft_recent",
        "naltrexone_allergy", "pregnant", "naltrexone_recent", "antidiarrheal_opioid_active",
        "naloxone_rescue_recent", "naltrexone_blockade", "dose_known", "bedtime", "extended_release",
        "split_commercial_tablet", "ldn_on_plan", "dose_mg", "lft_max_uln_multiple", "bilirubin_uln_multiple",
        "uds_positive_cleared", "result_unreadable", "naltrexone_intolerance_only", "naloxone_allergy",
        "naloxone_allergy_severe", "cirrhosis", "opioid_recent_long_acting", "opioid_recent_single_dose",
    }
)  # fmt: skip
"""Every name ``engine_fact`` can emit; rules may use no other (rulebook.py checks)."""


def engine_fact(order: OrderFacts, patient: PatientFacts, policy: Policy) -> dict[str, Any]:
    """The flat fact the rules match: names and meanings are listed in rules/README.md."""
    plan = order.ldn_plan
    dose = order.dosing.dose_mg
    fact: dict[str, Any] = {
        "id": order.key,
        "kind": order.kind,
        "naltrexone_start": order.is_naltrexone_start,
        "standard_or_injectable": order.kind in ("naltrexone-oral", "naltrexone-xr"),
        "regimen": order.regimen,
        "opioid_active": bool(patient.current_opioids),
        "opioid_in_draft_orders": bool(patient.draft_opioids) and order.kind != "opioid",
        "opioid_within_washout": bool(patient.recent_opioids),
        "opioid_recent_long_acting": any(e.product.long_acting for e in patient.recent_opioids),
        "opioid_recent_single_dose": _single_dose_in_care(patient),
        "opioid_exposure_recent": bool(patient.opioids_within_lookback),
        "opioid_history_unavailable": "medications" in patient.unavailable
        or bool(patient.unidentified_medications),
        "clinical_data_unavailable": bool(
            set(patient.unavailable) & {"conditions", "allergies", "observations"}
        ),
        "opioid_use_disorder": bool(patient.oud),
        "alcohol_use_disorder": bool(patient.aud),
        "opioid_withdrawal": bool(patient.withdrawal),
        "uds_positive_recent": patient.uds_positive is not None,
        "uds_positive_cleared": bool(patient.uds_cleared_by),
        "challenge_passed_after_uds": patient.challenge_after_uds is not None,
        "uds_recent": patient.uds_recent is not None,
        "challenge_failed_recent": patient.challenge_latest is not None
        and patient.challenge_latest.result == "positive",
        # an unreadable challenge is a challenge done: the result-unreadable card asks for its result
        "challenge_recent": patient.challenge_latest is not None or _unreadable(patient, "challenge"),
        "result_unreadable": bool(patient.unreadable_results),
        "hepatic_contraindication": bool(patient.hepatic),
        "decompensated_cirrhosis": bool(patient.decompensated_cirrhosis),
        "cirrhosis": bool(patient.cirrhosis or patient.decompensated_cirrhosis),
        "lft_recent": patient.alt is not None or patient.ast is not None or _unreadable(patient, "liver"),
        "naltrexone_allergy": bool(patient.allergies),
        "naltrexone_intolerance_only": bool(patient.allergies)
        and all(a.intolerance_only for a in patient.allergies),
        "naloxone_allergy": bool(patient.naloxone_allergies),
        "naloxone_allergy_severe": any(
            a.severe or a.criticality == "high" for a in patient.naloxone_allergies
        ),
        "pregnant": bool(patient.pregnancy),
        "naltrexone_recent": _recent_naltrexone(patient, policy),
        "antidiarrheal_opioid_active": bool(patient.antidiarrheals_current),
        "naloxone_rescue_recent": bool(patient.naloxone_rescue),
        "naltrexone_blockade": bool(order.naltrexone_blockade),
        "dose_known": dose is not None,
        "bedtime": order.dosing.bedtime,
        "extended_release": order.product.extended_release,
        "split_commercial_tablet": order.kind == "naltrexone-low-dose" and order.product.commercial_tablet,
        "ldn_on_plan": plan is None or (dose is not None and dose <= plan.planned_dose_mg),
    }
    optional = {
        "dose_mg": dose,
        "lft_max_uln_multiple": patient.lft_max_multiple,
        "bilirubin_uln_multiple": patient.bilirubin.uln_multiple if patient.bilirubin else None,
    }
    # durable-rules treats a missing property as "no match" but a null as present: drop the Nones.
    fact.update({k: round(v, 3) for k, v in optional.items() if v is not None})
    return fact


def _single_dose_in_care(patient: PatientFacts) -> bool:
    """The only opioid exposure in the look-back is one dose given in care (not a depot, not methadone or
    buprenorphine), and the patient has no opioid use disorder: dependence is not possible."""
    recent = patient.recent_opioids
    return (
        len(recent) == 1
        and not patient.oud
        and not patient.current_opioids
        and len(patient.opioids_within_lookback) == 1
        and recent[0].kind == "administration"
        and not recent[0].product.depot
        and not recent[0].product.long_acting
    )


def _unreadable(patient: PatientFacts, test: str) -> bool:
    return any(f.test == test for f in patient.unreadable_results)


def _recent_naltrexone(patient: PatientFacts, policy: Policy) -> bool:
    since = patient.today - timedelta(days=policy.prior_naltrexone_days)
    return any(e.current or (e.end is not None and e.end >= since) for e in patient.naltrexone_history)
