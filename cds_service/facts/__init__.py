"""Stage 3: FHIR data -> clinical facts. Pure functions; "today" is an argument, never read here.

``derive`` returns one ``PatientFacts`` (what the record says about the patient, with the FHIR
references behind each statement) and one ``OrderFacts`` per reviewed order; ``engine_fact`` flattens
the two into the booleans and numbers the rules are written against (see ``rules/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cds_service.facts.conditions import Diagnosis, current_diagnoses, naltrexone_allergies
from cds_service.facts.fhir import Resource, reference_of
from cds_service.facts.medications import (
    NALTREXONE_CLASSES,
    Dosing,
    Exposure,
    Product,
    ProductClass,
    classify,
    dosing_of,
    exposures,
    format_mg,
    medication_of,
)
from cds_service.facts.observations import (
    Finding,
    coded_in,
    findings_in,
    naloxone_challenges,
    observation_day,
    quantitative,
    within,
)
from cds_service.gather import Availability, PatientRecord
from cds_service.policy import Policy
from cds_service.terminology import Terminology

HISTORY_TYPES = ("MedicationRequest", "MedicationDispense", "MedicationStatement", "MedicationAdministration")

OrderKind = (
    str  # naltrexone-oral | naltrexone-low-dose | naltrexone-xr | naltrexone-bupropion | opioid | other
)


@dataclass(frozen=True)
class PatientFacts:
    today: date
    current_opioids: tuple[Exposure, ...]
    recent_opioids: tuple[Exposure, ...]
    """Opioid exposure that ended inside the opioid-free interval (and is not current)."""
    earliest_start: date | None
    """First day a naltrexone start is outside every opioid-free interval (None: no recent opioid)."""
    opioids_within_lookback: tuple[Exposure, ...]
    draft_opioids: tuple[tuple[str, str], ...]
    """(reference, name) of opioid orders among the draft orders of the same session."""
    naltrexone_history: tuple[Exposure, ...]
    antidiarrheals_current: tuple[Exposure, ...]
    naloxone_rescue: tuple[str, ...]
    """References of naloxone/nalmefene prescriptions in the look-back (or in this session's drafts)."""
    unidentified_medications: tuple[Exposure, ...]
    uds_positive: Finding | None
    challenge_after_uds: Finding | None
    uds_recent: Finding | None
    challenge_latest: Finding | None
    alt: Finding | None
    ast: Finding | None
    bilirubin: Finding | None
    oud: tuple[Diagnosis, ...]
    aud: tuple[Diagnosis, ...]
    withdrawal: tuple[Diagnosis, ...]
    hepatic: tuple[Diagnosis, ...]
    decompensated_cirrhosis: tuple[Diagnosis, ...]
    pregnancy: tuple[str, ...]
    allergies: tuple[Diagnosis, ...]
    unavailable: Mapping[str, tuple[str, ...]]
    """Data domain -> why it could not be obtained (only domains that could not)."""

    @property
    def lft_max_multiple(self) -> float | None:
        multiples = [f.uln_multiple for f in (self.alt, self.ast) if f and f.uln_multiple is not None]
        return max(multiples) if multiples else None


@dataclass(frozen=True)
class LdnPlan:
    previous: Exposure | None
    planned_dose_mg: float
    next_step_day: date | None
    """When the next increase is due (None: no earlier low-dose order)."""


@dataclass(frozen=True)
class OrderFacts:
    resource: Resource
    reference: str
    key: str
    product: Product
    kind: OrderKind
    dosing: Dosing
    regimen: str
    naltrexone_blockade: tuple[Exposure, ...] = ()
    ldn_plan: LdnPlan | None = None

    @property
    def label(self) -> str:
        return f"{self.product.name}, {self.dosing.description}"

    @property
    def is_naltrexone_start(self) -> bool:
        return self.kind in ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr")


@dataclass(frozen=True)
class ClinicalFacts:
    patient: PatientFacts
    orders: tuple[OrderFacts, ...] = field(default=())


def classify_orders(
    orders: Sequence[Resource], medications: Mapping[str, Resource], terminology: Terminology, policy: Policy
) -> list[tuple[Resource, Product, Dosing, OrderKind]]:
    classified = []
    for order in orders:
        product = classify(medication_of(order, medications), terminology)
        dosing = dosing_of(order, product, terminology)
        classified.append((order, product, dosing, _kind(product, dosing, policy)))
    return classified


def relevant(kind: OrderKind) -> bool:
    """Orders the rules have something to say about: naltrexone products and opioids."""
    return kind != "other"


def _kind(product: Product, dosing: Dosing, policy: Policy) -> OrderKind:
    match product.product_class:
        case ProductClass.NALTREXONE_ORAL:
            dose = dosing.dose_mg if dosing.dose_mg is not None else None
            if dose is not None:
                return "naltrexone-low-dose" if dose <= policy.low_dose_ceiling_mg else "naltrexone-oral"
            low_strength = (
                product.strength_mg is not None and product.strength_mg <= policy.low_dose_ceiling_mg
            )
            return "naltrexone-low-dose" if product.compounded or low_strength else "naltrexone-oral"
        case ProductClass.NALTREXONE_INJECTION:
            return "naltrexone-xr"
        case ProductClass.NALTREXONE_BUPROPION:
            return "naltrexone-bupropion"
        case ProductClass.OPIOID:
            return "opioid"
        case _:
            return "other"


def derive(
    reviewed: Sequence[tuple[Resource, Product, Dosing, OrderKind]],
    draft_resources: Sequence[Resource],
    record: PatientRecord,
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> ClinicalFacts:
    medications = _medications_by_id(record, draft_resources)
    draft_ids = {reference_of(r) for r in draft_resources}
    history = [r for t in HISTORY_TYPES for r in record.of_type(t) if reference_of(r) not in draft_ids]
    every = exposures(history, medications, terminology, policy, today)
    patient = _patient_facts(every, draft_resources, medications, record, terminology, policy, today)
    orders = tuple(
        _order_facts(index, order, product, dosing, kind, every, policy, today)
        for index, (order, product, dosing, kind) in enumerate(reviewed)
    )
    return ClinicalFacts(patient=patient, orders=orders)


def _medications_by_id(record: PatientRecord, drafts: Sequence[Resource]) -> dict[str, Resource]:
    found: dict[str, Resource] = {}
    for medication in record.of_type("Medication"):
        if isinstance(medication.get("id"), str):
            found[medication["id"]] = medication
    return found


def _patient_facts(
    every: list[Exposure],
    draft_resources: Sequence[Resource],
    medications: Mapping[str, Resource],
    record: PatientRecord,
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> PatientFacts:
    opioids = [e for e in every if e.product.product_class is ProductClass.OPIOID]
    current = tuple(e for e in opioids if e.current)
    recent, earliest = _within_washout(opioids, policy, today)
    lookback = today - timedelta(days=policy.opioid_exposure_lookback_days)
    within_lookback = tuple(e for e in opioids if e.current or (e.end is not None and e.end >= lookback))

    drafts = classify_orders(
        [d for d in draft_resources if d.get("resourceType") == "MedicationRequest"],
        medications,
        terminology,
        policy,
    )
    draft_opioids = tuple(
        (reference_of(r), product.name) for r, product, _, kind in drafts if kind == "opioid"
    )
    naltrexone = tuple(e for e in every if e.product.product_class in NALTREXONE_CLASSES)
    antidiarrheals = tuple(
        e for e in every if e.product.product_class is ProductClass.ANTIDIARRHEAL_OPIOID and e.current
    )
    rescue_since = today - timedelta(days=policy.naloxone_rescue_lookback_days)
    # a prescription or dispense, not a dose given in clinic (e.g. the naloxone challenge vial)
    rescue = tuple(
        e.reference
        for e in every
        if e.product.product_class is ProductClass.NALOXONE_RESCUE
        and e.kind != "administration"
        and (e.current or (e.start or e.end or date.min) >= rescue_since)
    ) + tuple(
        reference_of(r)
        for r, product, _, _ in drafts
        if product.product_class is ProductClass.NALOXONE_RESCUE
    )
    unidentified = tuple(
        e
        for e in every
        if e.product.product_class is ProductClass.UNIDENTIFIED
        and (e.current or (e.end and e.end >= lookback))
    )

    observations = record.of_type("Observation")
    uds = findings_in(observations, "opioid-urine-screens", terminology)
    challenges = naloxone_challenges(observations, terminology)
    positive = next(
        (f for f in uds if f.result == "positive" and within(f, today, policy.uds_positive_lookback_days)),
        None,
    )
    passed_after = None
    if positive is not None:
        passed_after = next(
            (
                c
                for c in challenges
                if c.result == "negative"
                and c.day is not None
                and positive.day is not None
                and c.day >= positive.day
            ),
            None,
        )
    uds_recent = next(
        (f for f in uds if f.result is not None and within(f, today, policy.uds_recent_days)), None
    )
    challenge_latest = next(
        (
            c
            for c in challenges
            if c.result is not None and within(c, today, policy.naloxone_challenge_lookback_days)
        ),
        None,
    )

    uln = policy.default_uln
    enzyme_uln = {"u/l": uln.alt_u_per_l, "iu/l": uln.alt_u_per_l, "[iu]/l": uln.alt_u_per_l}
    ast_uln = {"u/l": uln.ast_u_per_l, "iu/l": uln.ast_u_per_l, "[iu]/l": uln.ast_u_per_l}
    bili_uln = {
        "mg/dl": uln.bilirubin_mg_per_dl,
        "umol/l": uln.bilirubin_umol_per_l,
        "µmol/l": uln.bilirubin_umol_per_l,
    }

    def latest(valueset: str, defaults: Mapping[str, float]) -> Finding | None:
        results = quantitative(observations, valueset, terminology, defaults)
        return next((f for f in results if within(f, today, policy.lft_lookback_days)), None)

    conditions = record.of_type("Condition")
    decompensated = current_diagnoses(conditions, "decompensated-cirrhosis", terminology)
    cirrhosis = current_diagnoses(conditions, "cirrhosis", terminology)
    events = current_diagnoses(conditions, "liver-decompensation-events", terminology)
    if cirrhosis and events:
        decompensated = decompensated + cirrhosis + events

    return PatientFacts(
        today=today,
        current_opioids=current,
        recent_opioids=recent,
        earliest_start=earliest,
        opioids_within_lookback=within_lookback,
        draft_opioids=draft_opioids,
        naltrexone_history=naltrexone,
        antidiarrheals_current=antidiarrheals,
        naloxone_rescue=rescue,
        unidentified_medications=unidentified,
        uds_positive=positive,
        challenge_after_uds=passed_after,
        uds_recent=uds_recent,
        challenge_latest=challenge_latest,
        alt=latest("alt-tests", enzyme_uln),
        ast=latest("ast-tests", ast_uln),
        bilirubin=latest("bilirubin-total-tests", bili_uln),
        oud=tuple(current_diagnoses(conditions, "opioid-use-disorder", terminology)),
        aud=tuple(current_diagnoses(conditions, "alcohol-use-disorder", terminology)),
        withdrawal=tuple(current_diagnoses(conditions, "opioid-withdrawal", terminology)),
        hepatic=tuple(current_diagnoses(conditions, "acute-hepatitis-or-liver-failure", terminology)),
        decompensated_cirrhosis=tuple(decompensated),
        pregnancy=()
        if _recorded_male(record.of_type("Patient"))
        else _pregnancy(conditions, observations, terminology, policy, today),
        allergies=tuple(naltrexone_allergies(record.of_type("AllergyIntolerance"), terminology)),
        unavailable={
            domain: data.problems
            for domain, data in record.domains.items()
            if data.availability is Availability.UNAVAILABLE
        },
    )


def _within_washout(
    opioids: list[Exposure], policy: Policy, today: date
) -> tuple[tuple[Exposure, ...], date | None]:
    recent = []
    earliest: date | None = None
    for exposure in opioids:
        if exposure.current or exposure.end is None:
            continue
        washout = (
            policy.washout_days_long_acting
            if exposure.product.long_acting
            else policy.washout_days_short_acting
        )
        safe = exposure.end + timedelta(days=washout)
        if safe > today:
            recent.append(exposure)
            earliest = max(earliest, safe) if earliest else safe
    return tuple(recent), earliest


def _recorded_male(patients: Sequence[Resource]) -> bool:
    """A quantitative hCG is also a tumour marker: in a patient recorded as male it is not a pregnancy."""
    return bool(patients) and all(p.get("gender") == "male" for p in patients)


def _pregnancy(
    conditions: Sequence[Resource],
    observations: Sequence[Resource],
    terminology: Terminology,
    policy: Policy,
    today: date,
) -> tuple[str, ...]:
    evidence = [d.evidence() for d in current_diagnoses(conditions, "pregnancy-conditions", terminology)]
    tests = [f for f in findings_in(observations, "hcg-tests", terminology) if f.result is not None]
    latest_test = next((f for f in tests if within(f, today, policy.hcg_lookback_days)), None)
    if latest_test is not None and latest_test.result == "positive":
        evidence.append(latest_test.evidence("positive"))
    status = _pregnancy_status(observations, terminology, policy, today)
    if status:
        evidence.append(status)
    return tuple(evidence)


def _pregnancy_status(
    observations: Sequence[Resource], terminology: Terminology, policy: Policy, today: date
) -> str | None:
    latest: tuple[date, Resource] | None = None
    for observation in coded_in(observations, "pregnancy-status-observation", terminology):
        day = observation_day(observation)
        if day is None or (today - day).days > policy.hcg_lookback_days:
            continue
        if latest is None or day > latest[0]:
            latest = (day, observation)
    if latest is None or not terminology.in_valueset(
        "pregnancy-answers", latest[1].get("valueCodeableConcept")
    ):
        return None
    return f"pregnancy status — {reference_of(latest[1])}, {latest[0].isoformat()}: pregnant"


def _order_facts(
    index: int,
    order: Resource,
    product: Product,
    dosing: Dosing,
    kind: OrderKind,
    every: list[Exposure],
    policy: Policy,
    today: date,
) -> OrderFacts:
    reference = reference_of(order) if order.get("id") else f"draft order #{index + 1}"
    blockade: tuple[Exposure, ...] = ()
    if kind == "opioid":
        blockade = tuple(e for e in every if _blocks_opioids(e, policy, today))
    plan = _ldn_plan(dosing, every, policy, today) if kind == "naltrexone-low-dose" else None
    return OrderFacts(
        resource=order,
        reference=reference,
        key=f"order-{index}",
        product=product,
        kind=kind,
        dosing=dosing,
        regimen=_regimen(kind, dosing, policy),
        naltrexone_blockade=blockade,
        ldn_plan=plan,
    )


def _blocks_opioids(exposure: Exposure, policy: Policy, today: date) -> bool:
    product_class = exposure.product.product_class
    if product_class not in NALTREXONE_CLASSES:
        return False
    if product_class is ProductClass.NALTREXONE_INJECTION:
        # "injection in the last 30 days": counted from the dose, not from the end of its depot action
        given = exposure.start or exposure.end
        return given is not None and (today - given).days <= policy.blockade_days_injection
    if exposure.current:
        return True
    days = exposure.days_since_end(today)
    return days is not None and days <= policy.blockade_days_oral


def _regimen(kind: OrderKind, dosing: Dosing, policy: Policy) -> str:
    """Which labelled or accepted regimen the order follows: ``missing`` / ``unrecognized`` if none."""
    dose, interval = dosing.dose_mg, dosing.interval_days
    if kind not in ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr"):
        return "not-applicable"
    if dose is None:
        return "missing"

    def every(days: float) -> bool:
        return interval is None or abs(interval - days) < 0.01

    if kind == "naltrexone-low-dose":
        return "low-dose" if dose <= policy.ldn_max_dose_mg else "unrecognized"
    if kind == "naltrexone-xr":
        monthly = interval is None or dosing.count == 1 or 28 <= interval <= 31
        route_ok = dosing.route in (None, "intramuscular")
        return (
            "extended-release-monthly" if abs(dose - 380) < 0.01 and monthly and route_ok else "unrecognized"
        )
    if abs(dose - 25) < 0.01 and (dosing.count == 1 or every(1)):
        return "test-dose"
    if abs(dose - 50) < 0.01 and every(1):
        return "50-mg-daily"
    if abs(dose - 100) < 0.01 and interval is not None and abs(interval - 2) < 0.01:
        return "100-mg-every-2-days"
    if abs(dose - 150) < 0.01 and interval is not None and abs(interval - 3) < 0.01:
        return "150-mg-every-3-days"
    return "unrecognized"


def _ldn_plan(dosing: Dosing, every: list[Exposure], policy: Policy, today: date) -> LdnPlan:
    since = today - timedelta(days=policy.ldn_history_days)
    previous = [
        e
        for e in every
        if e.product.product_class is ProductClass.NALTREXONE_ORAL
        and e.dose_mg is not None
        and e.dose_mg <= policy.low_dose_ceiling_mg
        and (e.current or (e.end is not None and e.end >= since))
    ]
    if not previous:
        return LdnPlan(previous=None, planned_dose_mg=policy.ldn_start_dose_mg, next_step_day=None)
    last = max(previous, key=lambda e: e.start or date.min)
    assert last.dose_mg is not None
    due = (last.start + timedelta(days=policy.ldn_step_min_days)) if last.start else today
    if due <= today:
        planned = min(last.dose_mg + policy.ldn_step_mg, policy.ldn_max_dose_mg)
    else:
        planned = min(last.dose_mg, policy.ldn_max_dose_mg)
    return LdnPlan(previous=last, planned_dose_mg=planned, next_step_day=due)


FACT_NAMES = frozenset(
    {
        "id",
        "kind",
        "naltrexone_start",
        "standard_or_injectable",
        "regimen",
        "opioid_active",
        "opioid_in_draft_orders",
        "opioid_within_washout",
        "opioid_exposure_recent",
        "opioid_history_unavailable",
        "clinical_data_unavailable",
        "opioid_use_disorder",
        "alcohol_use_disorder",
        "opioid_withdrawal",
        "uds_positive_recent",
        "challenge_passed_after_uds",
        "uds_recent",
        "challenge_failed_recent",
        "challenge_recent",
        "hepatic_contraindication",
        "decompensated_cirrhosis",
        "lft_recent",
        "naltrexone_allergy",
        "pregnant",
        "naltrexone_recent",
        "antidiarrheal_opioid_active",
        "naloxone_rescue_recent",
        "naltrexone_blockade",
        "dose_known",
        "bedtime",
        "extended_release",
        "split_commercial_tablet",
        "ldn_on_plan",
        "dose_mg",
        "lft_max_uln_multiple",
        "bilirubin_uln_multiple",
    }
)
"""Every name ``engine_fact`` can emit; rules may use no other (rulebook.py checks)."""


def engine_fact(order: OrderFacts, patient: PatientFacts, policy: Policy) -> dict[str, Any]:
    """The flat fact the rules match: names and meanings are listed in rules/README.md."""
    lookback = bool(patient.opioids_within_lookback)
    fact: dict[str, Any] = {
        "id": order.key,
        "kind": order.kind,
        "naltrexone_start": order.is_naltrexone_start,
        "standard_or_injectable": order.kind in ("naltrexone-oral", "naltrexone-xr"),
        "regimen": order.regimen,
        "opioid_active": bool(patient.current_opioids),
        "opioid_in_draft_orders": bool(patient.draft_opioids) and order.kind != "opioid",
        "opioid_within_washout": bool(patient.recent_opioids),
        "opioid_exposure_recent": lookback,
        "opioid_history_unavailable": "medications" in patient.unavailable
        or bool(patient.unidentified_medications),
        "clinical_data_unavailable": bool(
            set(patient.unavailable) & {"conditions", "allergies", "observations"}
        ),
        "opioid_use_disorder": bool(patient.oud),
        "alcohol_use_disorder": bool(patient.aud),
        "opioid_withdrawal": bool(patient.withdrawal),
        "uds_positive_recent": patient.uds_positive is not None,
        "challenge_passed_after_uds": patient.challenge_after_uds is not None,
        "uds_recent": patient.uds_recent is not None,
        "challenge_failed_recent": patient.challenge_latest is not None
        and patient.challenge_latest.result == "positive",
        "challenge_recent": patient.challenge_latest is not None,
        "hepatic_contraindication": bool(patient.hepatic),
        "decompensated_cirrhosis": bool(patient.decompensated_cirrhosis),
        "lft_recent": patient.alt is not None or patient.ast is not None,
        "naltrexone_allergy": bool(patient.allergies),
        "pregnant": bool(patient.pregnancy),
        "naltrexone_recent": _recent_naltrexone(patient, policy),
        "antidiarrheal_opioid_active": bool(patient.antidiarrheals_current),
        "naloxone_rescue_recent": bool(patient.naloxone_rescue),
        "naltrexone_blockade": bool(order.naltrexone_blockade),
        "dose_known": order.dosing.dose_mg is not None,
        "bedtime": order.dosing.bedtime,
        "extended_release": order.product.extended_release,
        "split_commercial_tablet": order.kind == "naltrexone-low-dose" and order.product.commercial_tablet,
        "ldn_on_plan": order.ldn_plan is None
        or (order.dosing.dose_mg is not None and order.dosing.dose_mg <= order.ldn_plan.planned_dose_mg),
    }
    optional = {
        "dose_mg": order.dosing.dose_mg,
        "lft_max_uln_multiple": patient.lft_max_multiple,
        "bilirubin_uln_multiple": patient.bilirubin.uln_multiple if patient.bilirubin else None,
    }
    # durable-rules treats a missing property as "no match" but a null as present: drop the Nones.
    fact.update({k: round(v, 3) for k, v in optional.items() if v is not None})
    return fact


def _recent_naltrexone(patient: PatientFacts, policy: Policy) -> bool:
    since = patient.today - timedelta(days=policy.prior_naltrexone_days)
    return any(e.current or (e.end is not None and e.end >= since) for e in patient.naltrexone_history)


def dose_text(dose: float | None) -> str:
    return format_mg(dose) if dose is not None else "no dose"
