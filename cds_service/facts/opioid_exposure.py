"""Opioid exposure: in use now, inside the opioid-free interval, within the look-back, or in this session.

What counts as current use and as the last day of exposure is worked out in ``medications.exposures``
(supply, refills, depots, stale prescriptions); here the exposures become the conflict facts, and the
earliest safe start is counted from the last exposure of each opioid (10 days; 14 after methadone or
buprenorphine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.facts.diagnoses import DIAGNOSES
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import Exposure, ProductClass
from cds_service.facts.orders import ORDERS, OrderFacts
from cds_service.facts.wording import day, drug_label, drug_names, fact_line
from cds_service.fhir import reference_of
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class OpioidExposure:
    today: date
    current: tuple[Exposure, ...]
    recent: tuple[Exposure, ...]
    """Exposure that ended inside the opioid-free interval (and is not current)."""
    earliest_start: date | None
    """First day a naltrexone start is outside every opioid-free interval (None: no recent opioid)."""
    within_lookback: tuple[Exposure, ...]
    in_session: tuple[tuple[str, str], ...]
    """(reference, name) of opioid orders among the draft orders of the same session."""
    single_dose_in_care: bool


def _derive(derivation: Derivation) -> OpioidExposure:
    inputs = derivation.inputs
    policy, today = inputs.policy, inputs.today
    opioids = [e for e in derivation.of(HISTORY) if e.product.product_class is ProductClass.OPIOID]
    recent, earliest = _within_washout(opioids, policy, today)
    lookback = today - timedelta(days=policy.opioid_exposure_lookback_days)
    current = tuple(e for e in opioids if e.current)
    within = tuple(e for e in opioids if e.current or (e.end and e.end >= lookback))
    return OpioidExposure(
        today=today,
        current=current,
        recent=recent,
        earliest_start=earliest,
        within_lookback=within,
        in_session=tuple(
            (reference_of(d.resource), d.product.name)
            for d in derivation.of(ORDERS).drafts
            if d.kind == "opioid"
        ),
        # one dose given in care (not a depot, not methadone/buprenorphine), nothing else in the look-back
        single_dose_in_care=len(recent) == 1
        and not derivation.of(DIAGNOSES).oud
        and not current
        and len(within) == 1
        and recent[0].kind == "administration"
        and not recent[0].product.depot
        and not recent[0].product.long_acting,
    )


def _within_washout(
    opioids: Sequence[Exposure], policy: Policy, today: date
) -> tuple[tuple[Exposure, ...], date | None]:
    recent = []
    earliest: date | None = None
    for exposure in opioids:
        if exposure.current or exposure.end is None:
            continue
        safe = exposure.end + timedelta(days=policy.washout_days(long_acting=exposure.product.long_acting))
        if safe > today:
            recent.append(exposure)
            earliest = max(earliest, safe) if earliest else safe
    return tuple(recent), earliest


OPIOIDS = Domain("opioid-exposure", _derive, valuesets=("opioid-medications", "long-acting-opioids"))


@OPIOIDS.fact("opioid_active", "an opioid is in current use (see above)")
def _active(facts: OpioidExposure, order: OrderFacts) -> bool:
    return bool(facts.current)


@OPIOIDS.fact("opioid_in_draft_orders", "another order of this session is an opioid")
def _in_session(facts: OpioidExposure, order: OrderFacts) -> bool:
    return bool(facts.in_session) and order.kind != "opioid"


@OPIOIDS.fact("opioid_within_washout", "an opioid exposure ended inside the opioid-free interval")
def _within(facts: OpioidExposure, order: OrderFacts) -> bool:
    return bool(facts.recent)


@OPIOIDS.fact("opioid_recent_long_acting", "one of those exposures is methadone or buprenorphine")
def _long_acting(facts: OpioidExposure, order: OrderFacts) -> bool:
    return any(e.product.long_acting for e in facts.recent)


@OPIOIDS.fact(
    "opioid_recent_single_dose",
    "the only opioid exposure in the look-back is one dose given in care (not a depot, not "
    "methadone/buprenorphine) and there is no opioid use disorder",
)
def _single_dose(facts: OpioidExposure, order: OrderFacts) -> bool:
    return facts.single_dose_in_care


@OPIOIDS.fact("opioid_exposure_recent", "opioid exposure within `opioid_exposure_lookback_days`")
def _exposure_recent(facts: OpioidExposure, order: OrderFacts) -> bool:
    return bool(facts.within_lookback)


@OPIOIDS.placeholder("opioid_names", "the opioids in use, ordered in this session, or recent")
def _opioid_names(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> str:
    listed = (
        [e.product.name for e in facts.current]
        or [name for _, name in facts.in_session]
        or [e.product.name for e in facts.recent]
    )
    return drug_names(listed)


@OPIOIDS.placeholder("last_opioid_date", "the last day of recent opioid exposure")
def _last_opioid_date(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> str:
    return day(max((e.end for e in facts.recent if e.end), default=None))


@OPIOIDS.placeholder("earliest_start", "the first day outside every opioid-free interval")
def _earliest_start(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> str:
    return day(facts.earliest_start)


@OPIOIDS.evidence("current_opioids", "the opioids in current use")
def _current(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> list[str]:
    return [e.evidence() for e in facts.current]


@OPIOIDS.evidence("draft_opioids", "the opioids ordered in this session")
def _drafted(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> list[str]:
    return [fact_line(name, "ordered in this session", ref) for ref, name in facts.in_session]


@OPIOIDS.evidence("recent_opioids", "the recent opioids, each with its interval and safe start")
def _recent(facts: OpioidExposure, order: OrderFacts, policy: Policy) -> list[str]:
    lines = []
    for exposure in facts.recent:
        washout = policy.washout_days(long_acting=exposure.product.long_acting)
        safe = exposure.end + timedelta(days=washout) if exposure.end else None
        clear = f"{exposure.detail}; {washout} days clear on {day(safe)}"
        lines.append(fact_line(drug_label(exposure.product.name), clear, exposure.reference))
    return lines
