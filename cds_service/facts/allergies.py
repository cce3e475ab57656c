"""Allergies and intolerances to naltrexone, and to naloxone or nalmefene (cross-sensitivity unknown)."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.conditions import Allergy, allergies_to
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.orders import OrderFacts
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class Allergies:
    naltrexone: tuple[Allergy, ...]
    naloxone: tuple[Allergy, ...]
    """Naloxone or nalmefene (not buprenorphine/naloxone, whose reaction may be to buprenorphine)."""


def _derive(derivation: Derivation) -> Allergies:
    inputs = derivation.inputs
    entries = inputs.record.of_type("AllergyIntolerance")
    return Allergies(
        naltrexone=tuple(allergies_to(entries, "naltrexone-allergens", "naltrexone", inputs.terminology)),
        naloxone=tuple(allergies_to(entries, "naloxone-allergens", "naloxone_allergen", inputs.terminology)),
    )


ALLERGIES = Domain("allergies", _derive, valuesets=("naltrexone-allergens", "naloxone-allergens"))


@ALLERGIES.fact("naltrexone_allergy", "a current allergy or intolerance to naltrexone")
def _naltrexone(facts: Allergies, order: OrderFacts) -> bool:
    return bool(facts.naltrexone)


@ALLERGIES.fact(
    "naltrexone_intolerance_only",
    "every such entry is a non-immune intolerance (no severe or allergic reaction, not high criticality)",
)
def _intolerance_only(facts: Allergies, order: OrderFacts) -> bool:
    return bool(facts.naltrexone) and all(a.intolerance_only for a in facts.naltrexone)


@ALLERGIES.fact("naloxone_allergy", "a current allergy or intolerance to naloxone or nalmefene")
def _naloxone(facts: Allergies, order: OrderFacts) -> bool:
    return bool(facts.naloxone)


@ALLERGIES.fact(
    "naloxone_allergy_severe", "one of those is severe (high criticality, severe or allergic reaction)"
)
def _naloxone_severe(facts: Allergies, order: OrderFacts) -> bool:
    return any(a.severe or a.criticality == "high" for a in facts.naloxone)


@ALLERGIES.evidence("allergies", "the naltrexone allergy entries")
def _naltrexone_lines(facts: Allergies, order: OrderFacts, policy: Policy) -> list[str]:
    return [a.evidence() for a in facts.naltrexone]


@ALLERGIES.evidence("naloxone_allergies", "the naloxone or nalmefene allergy entries")
def _naloxone_lines(facts: Allergies, order: OrderFacts, policy: Policy) -> list[str]:
    return [a.evidence() for a in facts.naloxone]
