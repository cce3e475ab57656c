"""Whose order it is: a reviewed order naming a different patient from the chart the EHR sent.

Such a request is answered, not refused: a refusal shows the prescriber nothing, while a card says that
the order and the chart disagree, and that the other cards are about the chart's record (which is what
the prefetch and the FHIR queries are keyed to).
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.orders import OrderFacts
from cds_service.fhir import parse_reference
from cds_service.knowledge.policy import Policy


@dataclass(frozen=True)
class Identity:
    chart_patient: str
    """The patient of the request (context.patientId), as a bare id."""


def _derive(derivation: Derivation) -> Identity:
    return Identity(chart_patient=derivation.inputs.request.patient_id)


IDENTITY = Domain("identity", _derive)


def _order_patient(order: OrderFacts) -> str | None:
    """The patient id the order names, when it names one (a missing subject is the chart's patient)."""
    parsed = parse_reference(order.resource.get("subject"))
    return parsed[1] if parsed is not None and parsed[0] == "Patient" else None


@IDENTITY.fact("order_for_other_patient", "the order names a different patient from context.patientId")
def _for_other_patient(facts: Identity, order: OrderFacts) -> bool:
    named = _order_patient(order)
    return named is not None and named != facts.chart_patient


@IDENTITY.evidence("patient_mismatch", "the patient the order names and the patient of the open chart")
def _mismatch(facts: Identity, order: OrderFacts, policy: Policy) -> list[str]:
    return [
        f"this order is for Patient/{_order_patient(order)}",
        f"the open chart is Patient/{facts.chart_patient}",
    ]
