"""Naltrexone already taken: a recent course (no test dose needed), a patient already on it (no start-up
work-up), a blockade that an opioid order meets, and a second naltrexone product on top of one in use.

Naltrexone still occupies opioid receptors after oral use within ``blockade_days_oral`` and after an
injection within ``blockade_days_injection`` (counted from the injection, not from the end of its depot
action); current use blocks too.

A patient *continues* naltrexone (the urine screen, naloxone challenge and test dose of a start are not
asked again) when an oral supply (a dispense, or a prescription whose supply is current, not one merely
still marked active) covers today or ended within ``continuation_grace_days_oral``, or when an injection
was given (administered, or stated as given) within ``continuation_days_injection`` (the next monthly
dose, a little late). Naltrexone/bupropion does not count: its 8 mg extended-release naltrexone is no
opioid blockade. The 25 mg test dose among the session's orders means the start is planned: no test-dose or
naloxone-challenge card, but the urine screen is still asked for (a positive screen contraindicates it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import NALTREXONE_CLASSES, Exposure, ProductClass
from cds_service.facts.orders import NALTREXONE_STARTS, OrderFacts, regimen
from cds_service.facts.wording import drug_names
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class NaltrexoneUse:
    today: date
    history: tuple[Exposure, ...]
    """Naltrexone of any form on record (Contrave included)."""
    blocking: tuple[Exposure, ...]
    """Naltrexone still blocking opioids today."""
    recent: bool
    """Taken within ``prior_naltrexone_days``: not a new start."""
    continuing: tuple[Exposure, ...]
    """The naltrexone the patient is on now (see the module docstring)."""
    test_dose_drafted: bool
    """The session's draft orders hold the 25 mg oral test dose."""
    injection_blocking: tuple[Exposure, ...]
    """Extended-release injections given (administered, or stated as given) and still blocking."""
    bupropion_current: tuple[Exposure, ...]
    """Naltrexone/bupropion in current use."""


def _derive(derivation: Derivation) -> NaltrexoneUse:
    policy, today = derivation.inputs.policy, derivation.inputs.today
    history = tuple(e for e in derivation.of(HISTORY) if e.product.product_class in NALTREXONE_CLASSES)
    since = today - timedelta(days=policy.prior_naltrexone_days)
    blocking = tuple(e for e in history if _blocks_opioids(e, policy, today))
    return NaltrexoneUse(
        today=today,
        history=history,
        blocking=blocking,
        recent=any(e.current or (e.end is not None and e.end >= since) for e in history),
        continuing=tuple(e for e in history if _continues(e, policy, today)),
        test_dose_drafted=any(
            o.kind == "naltrexone-oral" and regimen(o.kind, o.dosing, policy) == "test-dose"
            for o in derivation.inputs.drafts
        ),
        injection_blocking=tuple(
            e
            for e in history
            if (given := _injection_given_on(e)) is not None
            and 0 <= (today - given).days <= policy.blockade_days_injection
        ),
        bupropion_current=tuple(
            e for e in history if e.current and e.product.product_class is ProductClass.NALTREXONE_BUPROPION
        ),
    )


def _injected_on(exposure: Exposure) -> date | None:
    return exposure.start or exposure.end


def _injection_given_on(exposure: Exposure) -> date | None:
    """When an extended-release injection was given: an administration, or a statement that it was
    (an order or a dispense to the clinic does not show that it was)."""
    if exposure.product.product_class is not ProductClass.NALTREXONE_INJECTION:
        return None
    if exposure.kind == "administration" and exposure.status in ("completed", "in-progress"):
        return _injected_on(exposure)
    if exposure.kind == "statement" and exposure.status in ("completed", "active"):
        return _injected_on(exposure)
    return None


def _continues(exposure: Exposure, policy: Policy, today: date) -> bool:
    """Evidence that naltrexone covers today: the work-up of a start is not asked again. Only supply that
    really reaches today (or the grace) counts: not a prescription still marked active after its supply
    ran out, not one on hold, not an open-ended statement, not an injection ordered but not given."""
    product = exposure.product.product_class
    if product is ProductClass.NALTREXONE_INJECTION:
        given = _injection_given_on(exposure)
        return given is not None and 0 <= (today - given).days <= policy.continuation_days_injection
    if product is not ProductClass.NALTREXONE_ORAL or exposure.stale or exposure.end is None:
        return False
    if exposure.kind == "statement" or exposure.status in (
        "on-hold",
        "unknown",
        "stopped",
        "entered-in-error",
    ):
        return False
    return (today - exposure.end).days <= policy.continuation_grace_days_oral


def _blocks_opioids(exposure: Exposure, policy: Policy, today: date) -> bool:
    if exposure.current:
        return True
    if exposure.product.product_class is ProductClass.NALTREXONE_INJECTION:
        given = _injected_on(exposure)
        return given is not None and (today - given).days <= policy.blockade_days_injection
    days = exposure.days_since_end(today)
    return days is not None and days <= policy.blockade_days_oral


NALTREXONE_USE = Domain("naltrexone-use", _derive)


@NALTREXONE_USE.fact("naltrexone_recent", "naltrexone taken within `prior_naltrexone_days`")
def _recent(facts: NaltrexoneUse, order: OrderFacts) -> bool:
    return facts.recent


@NALTREXONE_USE.fact("naltrexone_blockade", "(opioid orders) naltrexone still blocks opioids")
def _blockade(facts: NaltrexoneUse, order: OrderFacts) -> bool:
    return order.kind == "opioid" and bool(facts.blocking)


@NALTREXONE_USE.placeholder("naltrexone_names", "the naltrexone products still blocking")
def _naltrexone_names(facts: NaltrexoneUse, order: OrderFacts, policy: Policy) -> str:
    return drug_names(e.product.name for e in facts.blocking)


@NALTREXONE_USE.evidence("naltrexone_blockade", "the naltrexone still blocking opioids")
def _blocking(facts: NaltrexoneUse, order: OrderFacts, policy: Policy) -> list[str]:
    return [e.evidence() for e in facts.blocking] if order.kind == "opioid" else []


@NALTREXONE_USE.fact(
    "naltrexone_continuing",
    "already on naltrexone: oral supply to today or within `continuation_grace_days_oral`, or an "
    "injection given within `continuation_days_injection`",
)
def _continuing(facts: NaltrexoneUse, order: OrderFacts) -> bool:
    return bool(facts.continuing)


@NALTREXONE_USE.fact(
    "test_dose_in_session",
    "the 25 mg test dose (25 mg once) is among this session's orders: the start is already planned",
)
def _test_dose_in_session(facts: NaltrexoneUse, order: OrderFacts) -> bool:
    return facts.test_dose_drafted


@NALTREXONE_USE.fact(
    "naltrexone_duplicate",
    "another naltrexone product is in use: an injection still blocking (for an oral, low-dose or "
    "naltrexone/bupropion order), or naltrexone/bupropion (for a naltrexone order)",
)
def _duplicate(facts: NaltrexoneUse, order: OrderFacts) -> bool:
    return bool(_duplicates(facts, order))


def _duplicates(facts: NaltrexoneUse, order: OrderFacts) -> tuple[Exposure, ...]:
    if order.kind in ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-bupropion"):
        injections = facts.injection_blocking
    else:
        injections = ()
    bupropion = facts.bupropion_current if order.kind in NALTREXONE_STARTS else ()
    return injections + bupropion


@NALTREXONE_USE.placeholder("duplicate_names", "the naltrexone product already in use")
def _duplicate_names(facts: NaltrexoneUse, order: OrderFacts, policy: Policy) -> str:
    return drug_names(e.product.name for e in _duplicates(facts, order))


@NALTREXONE_USE.evidence("naltrexone_in_use", "the naltrexone product already in use")
def _in_use(facts: NaltrexoneUse, order: OrderFacts, policy: Policy) -> list[str]:
    return [e.evidence() for e in _duplicates(facts, order)]
