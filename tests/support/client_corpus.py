"""The client corpus: CDS Hooks requests other people wrote for other services (tests/data/README.md), and
what each deviates from CDS Hooks 2.0.1 in. Read through ``published`` so that no test names the hosts the
authors' requests point at (``localhost:2020``, public servers): each test gives its own FHIR server URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
PDDI = sorted((DATA / "pddi-cds" / "requests").glob("*.json"))
CQF_RULER = sorted((DATA / "cqf-ruler" / "requests").glob("*.json"))
REQUESTS = PDDI + CQF_RULER

# What each published request deviates from CDS Hooks 2.0.1 (and FHIR R4) in: its log line names them.
# The guide's draftOrders Bundles have no `type`.
ORDER_HOOK_DEVIATIONS = {"user-at-top-level", "patient-at-top-level", "stu3-resources", "bundle-without-type"}
MEDICATION_PRESCRIBE_DEVIATIONS = {
    "medication-prescribe",
    "bundle-without-type",  # context.medications is a Bundle without `type`
    "unknown-fields",  # applyCql, and scenario items beside the context's fields
    "user-at-top-level",
    "typed-context-ids",  # "Patient/…", "Encounter/…"
    "bare-bundle-entries",
    "prefetch-in-context",
    "prefetch-batch-entries",
    "stu3-resources",
}
# The guide's warfarin/NSAID scenarios put Patient/patient-warfarin-nsaid-over65-prefetch in the context
# but Patient/warfarin-nsaid-over65-prefetch in the draft order's subject.
SUBJECT_DIFFERS_FROM_CONTEXT = {f"request-warfarin-nsaid-scenario-0{n}.json" for n in range(1, 6)}
CQF_RULER_DEVIATIONS = {
    # its draft R4 MedicationRequest puts `doseQuantity` on the Dosage, where STU3 has it
    "opioidcds-01-request.json": {"typed-context-ids", "stu3-resources"},
    "opioidcds-01-request-prefetch.json": {"typed-context-ids", "prefetch-batch-entries", "stu3-resources"},
    "opioidcds-04-request.json": {"typed-context-ids"},
    # its prefetched R4 MedicationRequest has STU3's `context`
    "opioidcds-04-request-prefetch.json": {"typed-context-ids", "prefetch-batch-entries", "stu3-resources"},
    "opioidcds-08-request.json": {"long-resource-ids"},
    "opioidcds-08-request-prefetch.json": {"prefetch-batch-entries", "long-resource-ids"},
}
# Their prefetch shows an opioid in current use: buprenorphine/naloxone (01), oxycodone (04).
OPIOID_IN_USE = {"opioidcds-01-request-prefetch.json", "opioidcds-04-request-prefetch.json"}


def is_cqf_ruler(path: Path) -> bool:
    return path.parent.parent.name == "cqf-ruler"


def expected_deviations(path: Path, body: dict[str, Any]) -> set[str]:
    if is_cqf_ruler(path):
        return CQF_RULER_DEVIATIONS[path.name]
    return (
        MEDICATION_PRESCRIBE_DEVIATIONS if body["hook"] == "medication-prescribe" else ORDER_HOOK_DEVIATIONS
    )


def published(path: Path, fhir_server: str) -> dict[str, Any]:
    """The request as its authors wrote it, except that a ``fhirServer`` it names is ``fhir_server``."""
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if "fhirServer" in body:
        body["fhirServer"] = fhir_server
    return body
