"""Opioid and alcohol use disorder, and acute opioid withdrawal, from the problem list."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.conditions import PROBLEMS, Diagnosis, current_diagnoses
from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.orders import OrderFacts
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class Diagnoses:
    oud: tuple[Diagnosis, ...]
    aud: tuple[Diagnosis, ...]
    withdrawal: tuple[Diagnosis, ...]


def _derive(derivation: Derivation) -> Diagnoses:
    inputs = derivation.inputs
    problems, terminology, today = derivation.of(PROBLEMS), inputs.terminology, inputs.today
    return Diagnoses(
        oud=tuple(current_diagnoses(problems, "opioid-use-disorder", terminology, today)),
        aud=tuple(current_diagnoses(problems, "alcohol-use-disorder", terminology, today)),
        withdrawal=tuple(
            current_diagnoses(
                problems,
                "opioid-withdrawal",
                terminology,
                today,
                within_days=inputs.policy.withdrawal_lookback_days,
            )
        ),
    )


DIAGNOSES = Domain(
    "diagnoses", _derive, valuesets=("opioid-use-disorder", "alcohol-use-disorder", "opioid-withdrawal")
)


@DIAGNOSES.fact("opioid_use_disorder", "a current opioid use disorder diagnosis")
def _oud(facts: Diagnoses, order: OrderFacts) -> bool:
    return bool(facts.oud)


@DIAGNOSES.fact("alcohol_use_disorder", "a current alcohol use disorder diagnosis")
def _aud(facts: Diagnoses, order: OrderFacts) -> bool:
    return bool(facts.aud)


@DIAGNOSES.fact(
    "opioid_withdrawal", "a current opioid withdrawal diagnosis, within `withdrawal_lookback_days`"
)
def _withdrawal(facts: Diagnoses, order: OrderFacts) -> bool:
    return bool(facts.withdrawal)


@DIAGNOSES.evidence("oud", "the opioid use disorder diagnoses")
def _oud_lines(facts: Diagnoses, order: OrderFacts, policy: Policy) -> list[str]:
    return [d.evidence() for d in facts.oud]


@DIAGNOSES.evidence("withdrawal", "the withdrawal diagnoses")
def _withdrawal_lines(facts: Diagnoses, order: OrderFacts, policy: Policy) -> list[str]:
    return [d.evidence() for d in facts.withdrawal]
