"""Naltrexone already taken: a recent course (no test dose needed) and a blockade that an opioid order meets.

Naltrexone still occupies opioid receptors after oral use within ``blockade_days_oral`` and after an
injection within ``blockade_days_injection`` (counted from the injection, not from the end of its depot
action); current use blocks too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import NALTREXONE_CLASSES, Exposure, ProductClass
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import names
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


def _derive(derivation: Derivation) -> NaltrexoneUse:
    policy, today = derivation.inputs.policy, derivation.inputs.today
    history = tuple(e for e in derivation.of(HISTORY) if e.product.product_class in NALTREXONE_CLASSES)
    since = today - timedelta(days=policy.prior_naltrexone_days)
    return NaltrexoneUse(
        today=today,
        history=history,
        blocking=tuple(e for e in history if _blocks_opioids(e, policy, today)),
        recent=any(e.current or (e.end is not None and e.end >= since) for e in history),
    )


def _blocks_opioids(exposure: Exposure, policy: Policy, today: date) -> bool:
    if exposure.current:
        return True
    if exposure.product.product_class is ProductClass.NALTREXONE_INJECTION:
        given = exposure.start or exposure.end
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
    return names(e.product.name for e in facts.blocking)


@NALTREXONE_USE.evidence("naltrexone_blockade", "the naltrexone still blocking opioids")
def _blocking(facts: NaltrexoneUse, order: OrderFacts, policy: Policy) -> list[str]:
    return [e.evidence() for e in facts.blocking] if order.kind == "opioid" else []
