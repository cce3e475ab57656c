"""What could not be verified: data domains the EHR could not supply, and medications nobody can identify.

Which domains matter, and how, is data (``rules/services.yaml``, ``domains``): a ``medications`` gap means
opioid-free status is unknown, a ``clinical`` gap that contraindications may be missed; a domain with
``gap: none`` is optional evidence and says nothing when missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.history import HISTORY
from cds_service.facts.medications import Exposure, ProductClass
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import and_list, fact_line
from cds_service.gather import DomainData
from cds_service.knowledge.policy import Policy

_RESULTS_DOMAIN = "observations"  # the domain whose gap the lab-result guidance cards mention


@dataclass(frozen=True)
class DataGaps:
    medications: tuple[DomainData, ...]
    clinical: tuple[DomainData, ...]
    unidentified: tuple[Exposure, ...]
    """Medications in the look-back whose product nobody could identify (could be an opioid)."""


def _derive(derivation: Derivation) -> DataGaps:
    inputs = derivation.inputs
    unavailable = inputs.record.unavailable()
    lookback = inputs.today - timedelta(days=inputs.policy.opioid_exposure_lookback_days)
    return DataGaps(
        medications=tuple(d for d in unavailable if d.domain.gap == "medications"),
        clinical=tuple(d for d in unavailable if d.domain.gap == "clinical"),
        unidentified=tuple(
            e
            for e in derivation.of(HISTORY)
            if e.product.product_class is ProductClass.UNIDENTIFIED
            and (e.current or (e.end and e.end >= lookback))
        ),
    )


DATA_GAPS = Domain("data-gaps", _derive)


@DATA_GAPS.fact(
    "opioid_history_unavailable",
    "medication data could not be obtained, or a recent medication could not be identified",
)
def _history_unavailable(facts: DataGaps, order: OrderFacts) -> bool:
    return bool(facts.medications or facts.unidentified)


@DATA_GAPS.fact(
    "clinical_data_unavailable", "conditions, allergies or laboratory results could not be obtained"
)
def _clinical_unavailable(facts: DataGaps, order: OrderFacts) -> bool:
    return bool(facts.clinical)


@DATA_GAPS.placeholder("missing_domains", "the parts of the record that could not be obtained")
def _missing(facts: DataGaps, order: OrderFacts, policy: Policy) -> str:
    titles = sorted((*facts.medications, *facts.clinical), key=lambda d: d.domain.name)
    return and_list(d.domain.title for d in titles) or "none"


@DATA_GAPS.placeholder("labs_gap", "a sentence when laboratory results could not be obtained")
def _labs_gap(facts: DataGaps, order: OrderFacts, policy: Policy) -> str:
    if any(d.domain.name == _RESULTS_DOMAIN for d in facts.clinical):
        return "Laboratory results could not be obtained, so an existing result may have been missed."
    return ""


@DATA_GAPS.evidence("medications_gap", "why the medication history is incomplete")
def _medications_gap(facts: DataGaps, order: OrderFacts, policy: Policy) -> list[str]:
    return _gap_lines(facts.medications) + [
        fact_line("medication not identified", e.detail, e.reference) for e in facts.unidentified
    ]


@DATA_GAPS.evidence("clinical_gap", "which clinical data could not be obtained, and why")
def _clinical_gap(facts: DataGaps, order: OrderFacts, policy: Policy) -> list[str]:
    return _gap_lines(facts.clinical)


def _gap_lines(gaps: tuple[DomainData, ...]) -> list[str]:
    """One line per part of the record, each reason once (four medication searches failing alike are one)."""
    return [f"{d.domain.title}: {'; '.join(dict.fromkeys(d.problems))}" for d in gaps]
