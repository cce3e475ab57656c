"""Facts about each order under review: what it is, its dose and regimen, and order-specific context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.fhir import Resource, reference_of
from cds_service.facts.medications import (
    NALTREXONE_CLASSES,
    Dosing,
    Exposure,
    Product,
    ProductClass,
    classify,
    dosing_of,
    medication_of,
)
from cds_service.policy import Policy
from cds_service.terminology import Terminology

OrderKind = (
    str  # naltrexone-oral | naltrexone-low-dose | naltrexone-xr | naltrexone-bupropion | opioid | other
)
NALTREXONE_STARTS = ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr")


@dataclass(frozen=True)
class ClassifiedOrder:
    resource: Resource
    product: Product
    dosing: Dosing
    kind: OrderKind

    @property
    def relevant(self) -> bool:
        """Orders the rules have something to say about: naltrexone products and opioids."""
        return self.kind != "other"


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
        return self.kind in NALTREXONE_STARTS


def classify_orders(
    orders: Sequence[Resource], medications: Mapping[str, Resource], terminology: Terminology, policy: Policy
) -> list[ClassifiedOrder]:
    classified = []
    for order in orders:
        product = classify(medication_of(order, medications), terminology)
        dosing = dosing_of(order, product, terminology)
        classified.append(ClassifiedOrder(order, product, dosing, _kind(product, dosing, policy)))
    return classified


def _kind(product: Product, dosing: Dosing, policy: Policy) -> OrderKind:
    match product.product_class:
        case ProductClass.NALTREXONE_ORAL:
            if dosing.dose_mg is not None:
                return (
                    "naltrexone-low-dose"
                    if dosing.dose_mg <= policy.low_dose_ceiling_mg
                    else "naltrexone-oral"
                )
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


def order_facts(
    index: int, order: ClassifiedOrder, history: Sequence[Exposure], policy: Policy, today: date
) -> OrderFacts:
    resource = order.resource
    reference = reference_of(resource) if resource.get("id") else f"draft order #{index + 1}"
    blockade: tuple[Exposure, ...] = ()
    if order.kind == "opioid":
        blockade = tuple(e for e in history if _blocks_opioids(e, policy, today))
    plan = _ldn_plan(history, policy, today) if order.kind == "naltrexone-low-dose" else None
    return OrderFacts(
        resource=resource,
        reference=reference,
        key=f"order-{index}",
        product=order.product,
        kind=order.kind,
        dosing=order.dosing,
        regimen=_regimen(order.kind, order.dosing, policy),
        naltrexone_blockade=blockade,
        ldn_plan=plan,
    )


def _blocks_opioids(exposure: Exposure, policy: Policy, today: date) -> bool:
    """Naltrexone still occupying opioid receptors: current use, or a recent enough last dose."""
    product_class = exposure.product.product_class
    if product_class not in NALTREXONE_CLASSES:
        return False
    if exposure.current:
        return True
    if product_class is ProductClass.NALTREXONE_INJECTION:
        # "injection in the last 30 days": counted from the dose, not from the end of its depot action
        given = exposure.start or exposure.end
        return given is not None and (today - given).days <= policy.blockade_days_injection
    days = exposure.days_since_end(today)
    return days is not None and days <= policy.blockade_days_oral


def _regimen(kind: OrderKind, dosing: Dosing, policy: Policy) -> str:
    """Which labelled or accepted regimen the order follows: ``missing`` / ``unrecognized`` if none."""
    dose, interval = dosing.dose_mg, dosing.interval_days
    if kind not in NALTREXONE_STARTS:
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
        standard = abs(dose - 380) < 0.01 and monthly and route_ok
        return "extended-release-monthly" if standard else "unrecognized"
    if abs(dose - 25) < 0.01 and (dosing.count == 1 or every(1)):
        return "test-dose"
    if abs(dose - 50) < 0.01 and every(1):
        return "50-mg-daily"
    if abs(dose - 100) < 0.01 and interval is not None and abs(interval - 2) < 0.01:
        return "100-mg-every-2-days"
    if abs(dose - 150) < 0.01 and interval is not None and abs(interval - 3) < 0.01:
        return "150-mg-every-3-days"
    return "unrecognized"


def _ldn_plan(history: Sequence[Exposure], policy: Policy, today: date) -> LdnPlan:
    since = today - timedelta(days=policy.ldn_history_days)
    previous = [
        e
        for e in history
        if e.product.product_class is ProductClass.NALTREXONE_ORAL
        and e.dose_mg is not None
        and e.dose_mg <= policy.low_dose_ceiling_mg
        and (e.current or (e.end is not None and e.end >= since))
    ]
    if not previous:
        return LdnPlan(previous=None, planned_dose_mg=policy.ldn_start_dose_mg, next_step_day=None)
    last = max(previous, key=lambda e: e.start or date.min)
    dose = last.dose_mg or policy.ldn_start_dose_mg
    due = (last.start + timedelta(days=policy.ldn_step_min_days)) if last.start else today
    stepped = dose + policy.ldn_step_mg if due <= today else dose
    return LdnPlan(previous=last, planned_dose_mg=min(stepped, policy.ldn_max_dose_mg), next_step_day=due)
