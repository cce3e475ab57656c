"""Other medicines that matter at a naltrexone start: opioid antidiarrheals, and an overdose rescue kit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import Exposure, ProductClass
from cds_service.facts.orders import ORDERS, OrderFacts
from cds_service.facts.wording import drug_names, since
from cds_service.fhir import reference_of
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class Comedication:
    today: date
    antidiarrheals: tuple[Exposure, ...]
    """Loperamide, diphenoxylate, difenoxin or eluxadoline in current use."""
    rescue: tuple[str, ...]
    """References of naloxone/nalmefene prescriptions in the look-back (or in this session's drafts)."""


def _derive(derivation: Derivation) -> Comedication:
    policy, today = derivation.inputs.policy, derivation.inputs.today
    history = derivation.of(HISTORY)
    start = today - timedelta(days=policy.naloxone_rescue_lookback_days)
    # prescriptions and dispenses, not a dose given in clinic (e.g. the challenge vial)
    prescribed = tuple(
        e.reference
        for e in history
        if e.product.product_class is ProductClass.NALOXONE_RESCUE
        and e.kind != "administration"
        and (e.current or (e.start or e.end or date.min) >= start)
    )
    drafted = tuple(
        reference_of(d.resource)
        for d in derivation.of(ORDERS).drafts
        if d.product.product_class is ProductClass.NALOXONE_RESCUE
    )
    return Comedication(
        today=today,
        antidiarrheals=tuple(
            e for e in history if e.product.product_class is ProductClass.ANTIDIARRHEAL_OPIOID and e.current
        ),
        rescue=prescribed + drafted,
    )


COMEDICATION = Domain("comedication", _derive, valuesets=("antidiarrheal-opioids", "naloxone-rescue"))


@COMEDICATION.fact("antidiarrheal_opioid_active", "loperamide, diphenoxylate or difenoxin in current use")
def _antidiarrheal(facts: Comedication, order: OrderFacts) -> bool:
    return bool(facts.antidiarrheals)


@COMEDICATION.fact(
    "naloxone_rescue_recent",
    "a naloxone/nalmefene prescription within `naloxone_rescue_lookback_days`, or in this session",
)
def _rescue(facts: Comedication, order: OrderFacts) -> bool:
    return bool(facts.rescue)


@COMEDICATION.placeholder("antidiarrheal_names", "the antidiarrheals in use")
def _antidiarrheal_names(facts: Comedication, order: OrderFacts, policy: Policy) -> str:
    return drug_names(e.product.name for e in facts.antidiarrheals)


@COMEDICATION.evidence("antidiarrheals", "the antidiarrheals in use")
def _antidiarrheal_lines(facts: Comedication, order: OrderFacts, policy: Policy) -> list[str]:
    return [e.evidence() for e in facts.antidiarrheals]


@COMEDICATION.evidence("naloxone_absence", "the look-back with no rescue prescription")
def _no_rescue(facts: Comedication, order: OrderFacts, policy: Policy) -> list[str]:
    start = since(facts.today, policy.naloxone_rescue_lookback_days)
    return [f"no naloxone or nalmefene prescription since {start}"]
