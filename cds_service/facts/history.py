"""The patient's medication history as exposures: what was taken, supplied or given, and until when.

Every other domain that asks about past medicines (opioids, naltrexone, antidiarrheals, naloxone) reads
this one list, built once per request. Draft orders are not history, even when the EHR's search also
returns them.
"""

from __future__ import annotations

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.medications import Exposure, exposures
from cds_service.fhir import MEDICATION_HISTORY_TYPES


def _derive(derivation: Derivation) -> tuple[Exposure, ...]:
    inputs = derivation.inputs
    drafts = {
        (r.get("resourceType"), r["id"])
        for r in inputs.request.draft_resources
        if isinstance(r.get("id"), str)
    }
    resources = [
        resource
        for resource_type in MEDICATION_HISTORY_TYPES
        for resource in inputs.record.of_type(resource_type)
        if not (isinstance(resource.get("id"), str) and (resource_type, resource["id"]) in drafts)
    ]
    return tuple(exposures(resources, inputs.medications, inputs.terminology, inputs.policy, inputs.today))


HISTORY = Domain("medication-history", _derive)
