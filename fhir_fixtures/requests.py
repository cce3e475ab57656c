"""Builders for CDS Hooks requests and FHIR resources used across the tests."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).parent / "_sources"
PATIENT_ID = "pat-tests-1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

PREFETCH_KEYS = (
    "patient",
    "medicationRequests",
    "medicationDispenses",
    "medicationStatements",
    "medicationAdministrations",
    "conditions",
    "allergies",
    "labResults",
    "pregnancyStatus",
    "naloxoneChallenges",
    "serviceRequests",
    "appointments",
    "procedures",
)


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return bundle


def empty_prefetch(patient_id: str = PATIENT_ID) -> dict[str, Any]:
    prefetch: dict[str, Any] = {key: searchset() for key in PREFETCH_KEYS}
    prefetch["patient"] = {"resourceType": "Patient", "id": patient_id}
    return prefetch


def naltrexone_order(order_id: str = "draft-1", patient_id: str = PATIENT_ID, **extra: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-22",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "1483744", "display": "naltrexone hydrochloride 50 MG Oral Tablet"}
            ],
            "text": "naltrexone hydrochloride 50 MG Oral Tablet",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 50,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    order.update(extra)
    return order


def hook_request(
    hook: str = "order-select",
    drafts: list[dict[str, Any]] | None = None,
    selections: list[str] | None = None,
    prefetch: dict[str, Any] | None = None,
    patient_id: str = PATIENT_ID,
    **extra: Any,
) -> dict[str, Any]:
    drafts = [naltrexone_order(patient_id=patient_id)] if drafts is None else drafts
    context: dict[str, Any] = {
        "userId": "Practitioner/prac-1",
        "patientId": patient_id,
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        },
    }
    if hook == "order-select":
        context["selections"] = (
            selections if selections is not None else [f"MedicationRequest/{d['id']}" for d in drafts[:1]]
        )
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": empty_prefetch(patient_id) if prefetch is None else prefetch,
    }
    body.update(extra)
    return body


def service_path(hook: str) -> str:
    return f"/cds-services/naltrexone-{hook}"


def sandbox_requests() -> list[dict[str, Any]]:
    """What the real CDS Hooks sandbox sent (captured; see fhir_fixtures/_sources/README.md)."""
    lines = (SOURCES / "sandbox-requests.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def sandbox_hook_bodies(hook: str) -> list[dict[str, Any]]:
    return [
        copy.deepcopy(r["body"])
        for r in sandbox_requests()
        if r["method"] == "POST" and not r["path"].endswith("/feedback") and r["body"]["hook"] == hook
    ]
