"""The orders under review: what each is, its dose and regimen, and for low-dose naltrexone its titration.

Two moments of a request use this module. Before any patient data is gathered, ``identify_orders``
classifies the draft orders with what the request itself carries (codes, names, contained or bundled
Medications): an order that is neither naltrexone nor an opioid needs no patient record at all. After
gathering, ``resolve`` classifies again only the orders whose Medication was not at hand before (a
``medicationReference`` the record or ``fhirServer`` supplied).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import (
    Dosing,
    Exposure,
    Product,
    ProductClass,
    classify,
    dosing_of,
    format_mg,
    medication_of,
)
from cds_service.facts.wording import day, fact_line
from cds_service.fhir import Resource, reference_of
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import Terminology
from cds_service.validate import HookRequest

OrderKind = Literal[
    "naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr", "naltrexone-bupropion", "opioid", "other"
]
NALTREXONE_STARTS: tuple[OrderKind, ...] = ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr")


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
class Triage:
    """The orders of a request as the request alone shows them."""

    reviewed: tuple[ClassifiedOrder, ...]
    """Reviewed orders that name a medication."""
    drafts: tuple[ClassifiedOrder, ...]
    """Every MedicationRequest among the draft orders."""

    @property
    def needs_review(self) -> bool:
        """Some reviewed order is naltrexone or an opioid, or could not be identified yet."""
        return any(o.relevant or o.product.product_class is ProductClass.UNIDENTIFIED for o in self.reviewed)


def medication_index(
    medications: Iterable[Resource], full_urls: Mapping[str, Resource] | None = None
) -> dict[str, Resource]:
    """Medications by id, and by fullUrl for those carried in the draft orders' Bundle."""
    index: dict[str, Resource] = {m["id"]: m for m in medications if isinstance(m.get("id"), str)}
    for full_url, resource in (full_urls or {}).items():
        if resource.get("resourceType") == "Medication":
            index[full_url] = resource
    return index


def identify_orders(request: HookRequest, terminology: Terminology, policy: Policy) -> Triage:
    carried = medication_index(
        (r for r in request.draft_resources if r.get("resourceType") == "Medication"), request.draft_full_urls
    )
    drafts = classify_orders(
        [r for r in request.draft_resources if r.get("resourceType") == "MedicationRequest"],
        carried,
        terminology,
        policy,
    )
    by_identity = {id(order.resource): order for order in drafts}
    reviewed = tuple(
        by_identity.get(id(o)) or classify_orders([o], carried, terminology, policy)[0]
        for o in request.reviewed_orders
        if o.get("medicationCodeableConcept") or o.get("medicationReference")
    )
    return Triage(reviewed=reviewed, drafts=tuple(drafts))


def resolve(
    triage: Triage, medications: Mapping[str, Resource], terminology: Terminology, policy: Policy
) -> Triage:
    """The triage again, with each order whose medication was unidentified classified with the record's
    Medications (fetched or prefetched since)."""

    def again(order: ClassifiedOrder) -> ClassifiedOrder:
        if order.product.product_class is not ProductClass.UNIDENTIFIED:
            return order
        return classify_orders([order.resource], medications, terminology, policy)[0]

    return Triage(reviewed=tuple(map(again, triage.reviewed)), drafts=tuple(map(again, triage.drafts)))


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


# ---------------------------------------------------------------------------------------- order facts


@dataclass(frozen=True)
class LdnPlan:
    previous: Exposure | None
    planned_dose_mg: float
    next_step_day: date | None
    """When the next increase is due (None: no earlier low-dose order)."""
    step_due_now: bool = False
    """The increase is already due (its day has passed): the card says "due now", not a past date."""

    def next_increase(self) -> str:
        return "due now" if self.step_due_now else f"due {day(self.next_step_day)}"


@dataclass(frozen=True)
class OrderFacts:
    """One reviewed order, as the rules and cards see it."""

    resource: Resource
    reference: str
    key: str
    """The order's fact id in the rule engine."""
    product: Product
    kind: OrderKind
    dosing: Dosing
    regimen: str
    ldn_plan: LdnPlan | None = None

    @property
    def label(self) -> str:
        return f"{self.product.name}, {self.dosing.description}"

    @property
    def is_naltrexone_start(self) -> bool:
        return self.kind in NALTREXONE_STARTS


@dataclass(frozen=True)
class Orders:
    reviewed: tuple[OrderFacts, ...]
    drafts: tuple[ClassifiedOrder, ...]


def _derive(derivation: Derivation) -> Orders:
    inputs = derivation.inputs
    history = derivation.of(HISTORY)
    reviewed = tuple(
        _order_facts(index, order, history, inputs.policy, inputs.today)
        for index, order in enumerate(o for o in inputs.reviewed if o.relevant)
    )
    return Orders(reviewed=reviewed, drafts=tuple(inputs.drafts))


def _order_facts(
    index: int, order: ClassifiedOrder, history: Sequence[Exposure], policy: Policy, today: date
) -> OrderFacts:
    resource = order.resource
    plan = _ldn_plan(history, policy, today) if order.kind == "naltrexone-low-dose" else None
    return OrderFacts(
        resource=resource,
        reference=reference_of(resource) if resource.get("id") else f"draft order #{index + 1}",
        key=f"order-{index}",
        product=order.product,
        kind=order.kind,
        dosing=order.dosing,
        regimen=regimen(order.kind, order.dosing, policy),
        ldn_plan=plan,
    )


def regimen(kind: OrderKind, dosing: Dosing, policy: Policy) -> str:
    """Which labelled or accepted regimen the order follows: ``missing`` / ``unrecognized`` if none."""
    dose, interval = dosing.dose_mg, dosing.interval_days
    if kind not in NALTREXONE_STARTS:
        return "not-applicable"
    if dosing.unreadable is not None:
        return "unrecognized"
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
    if abs(dose - 25) < 0.01 and dosing.count == 1:
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
    return LdnPlan(
        previous=last,
        planned_dose_mg=min(stepped, policy.ldn_max_dose_mg),
        next_step_day=due,
        step_due_now=due <= today,
    )


ORDERS = Domain("orders", _derive, valuesets=(
    "naltrexone-products",
    "naltrexone-extended-release-injection",
    "naltrexone-bupropion",
    "morphine-naltrexone",
    "commercial-naltrexone-tablets",
    "opioid-medications",
    "long-acting-opioids",
    "depot-buprenorphine",
    "antidiarrheal-opioids",
    "naloxone-rescue",
))  # fmt: skip


# ------------------------------------------------------------------------------------ rule facts


@ORDERS.fact(
    "kind", "`naltrexone-oral`, `naltrexone-low-dose`, `naltrexone-xr`, `naltrexone-bupropion`, `opioid`"
)
def _kind_fact(orders: Orders, order: OrderFacts) -> str:
    return order.kind


@ORDERS.fact(
    "naltrexone_start", "the order is oral, low-dose or injectable naltrexone (not Contrave, not an opioid)"
)
def _naltrexone_start(orders: Orders, order: OrderFacts) -> bool:
    return order.is_naltrexone_start


@ORDERS.fact("standard_or_injectable", "`naltrexone-oral` or `naltrexone-xr`")
def _standard_or_injectable(orders: Orders, order: OrderFacts) -> bool:
    return order.kind in ("naltrexone-oral", "naltrexone-xr")


@ORDERS.fact(
    "regimen",
    "`low-dose`, `test-dose`, `50-mg-daily`, `100-mg-every-2-days`, `150-mg-every-3-days`, "
    "`extended-release-monthly`, `missing`, `unrecognized`, `not-applicable`",
)
def _regimen_fact(orders: Orders, order: OrderFacts) -> str:
    return order.regimen


@ORDERS.fact("dose_mg", "dose per administration in mg (absent when unknown)")
def _dose_mg(orders: Orders, order: OrderFacts) -> float | None:
    dose = order.dosing.dose_mg
    return round(dose, 3) if dose is not None else None


@ORDERS.fact("dose_known", "a dose in mg could be worked out")
def _dose_known(orders: Orders, order: OrderFacts) -> bool:
    return order.dosing.dose_mg is not None


@ORDERS.fact("bedtime", "timed at bedtime (`when` HS/NIGHT/PHS, a time from 18:00, code BED, or the text)")
def _bedtime(orders: Orders, order: OrderFacts) -> bool:
    return order.dosing.bedtime


@ORDERS.fact("extended_release", "the product is extended/slow/sustained-release")
def _extended_release(orders: Orders, order: OrderFacts) -> bool:
    return order.product.extended_release


@ORDERS.fact("split_commercial_tablet", "a low-dose order written on a marketed 50 mg tablet")
def _split_commercial_tablet(orders: Orders, order: OrderFacts) -> bool:
    return order.kind == "naltrexone-low-dose" and order.product.commercial_tablet


@ORDERS.fact("ldn_on_plan", "a low-dose order at or below the planned titration step")
def _ldn_on_plan(orders: Orders, order: OrderFacts) -> bool:
    plan, dose = order.ldn_plan, order.dosing.dose_mg
    return plan is None or (dose is not None and dose <= plan.planned_dose_mg)


# ------------------------------------------------------------------------------------ placeholders


@ORDERS.placeholder("order_dosing", "the order's dose and frequency in words")
def _order_dosing(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    return order.dosing.description


@ORDERS.placeholder("order_dose", "the order's dose")
def _order_dose(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    dose = order.dosing.dose_mg
    return format_mg(dose) if dose is not None else "with no dose"


@ORDERS.placeholder("dose_problem", "what is wrong with the order's dose")
def _dose_problem(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    if order.dosing.unreadable is not None:
        return f"a dose that could not be read ({order.dosing.unreadable})"
    if order.dosing.dose_mg is None:
        return "no dose stated"
    return f"{order.dosing.description} is not a labelled regimen"


@ORDERS.placeholder("formulation_problem", "why a low-dose product is the wrong formulation")
def _formulation_problem(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    if order.product.extended_release:
        return "this order is for a slow-release product"
    return "this order splits a 50 mg tablet"


def _ldn_texts(order: OrderFacts, policy: Policy) -> tuple[str, str, str]:
    """(summary, detail, advice) of the low-dose titration card."""
    plan, dose = order.ldn_plan, order.dosing.dose_mg
    if plan is None:
        return "", "", ""
    target = format_mg(plan.planned_dose_mg)
    on_plan = dose is not None and dose <= plan.planned_dose_mg
    step, maximum = f"{policy.ldn_step_mg:g} mg", f"{policy.ldn_max_dose_mg:g} mg"
    ordered = format_mg(dose) if dose is not None else "an order with no dose"
    if plan.previous is None:
        summary = (
            f"Start low-dose naltrexone at {target} at bedtime; increase by {step} no faster than weekly, "
            f"to {maximum}."
            if on_plan
            else f"Start low-dose naltrexone at {target} at bedtime, not {ordered}; then increase weekly."
        )
        detail = "No earlier low-dose naltrexone order is on record, so this is a new start."
    else:
        previous = (
            format_mg(plan.previous.dose_mg) if plan.previous.dose_mg is not None else "an unknown dose"
        )
        summary = (
            f"Low-dose naltrexone on plan: next step {target} (from {previous})."
            if on_plan
            else f"Step low-dose naltrexone to {target}, not {ordered} (from {previous}; increase "
            f"{plan.next_increase()})."
        )
        detail = (
            f"The current dose on record is {previous} (started {day(plan.previous.start)}); "
            f"the next increase is {plan.next_increase()}."
        )
    advice = (
        f"Continue titration: +{step} no faster than every {policy.ldn_step_min_days} days, to {maximum}."
        if on_plan
        else f"Change this order to {target} at bedtime."
    )
    return summary, detail, advice


@ORDERS.placeholder("ldn_plan_summary", "the low-dose titration step, in a sentence")
def _ldn_plan_summary(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    return _ldn_texts(order, policy)[0]


@ORDERS.placeholder("ldn_plan_detail", "the low-dose history behind the step")
def _ldn_plan_detail(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    return _ldn_texts(order, policy)[1]


@ORDERS.placeholder("ldn_advice", "what to do about the low-dose step")
def _ldn_advice(orders: Orders, order: OrderFacts, policy: Policy) -> str:
    return _ldn_texts(order, policy)[2]


# ------------------------------------------------------------------------------------ evidence


@ORDERS.evidence("order", "the order reviewed, with its regimen")
def _order_line(orders: Orders, order: OrderFacts, policy: Policy) -> list[str]:
    return [fact_line(f"ordered: {order.product.name}", order.dosing.description, order.reference)]


@ORDERS.evidence("ldn_previous", "the earlier low-dose order")
def _ldn_previous(orders: Orders, order: OrderFacts, policy: Policy) -> list[str]:
    return [order.ldn_plan.previous.evidence()] if order.ldn_plan and order.ldn_plan.previous else []
