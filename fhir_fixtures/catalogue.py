"""The fixture catalogue: the scenarios registry and the builders every scenario module shares.

``build.py`` writes the files; ``scenarios_*.py`` modules hold the scenarios, each written from its clinical
story and the contract, never from the service's output.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from fhir_fixtures import clinical as c

ROOT = Path(__file__).resolve().parent
REFERENCE_DATE = c.TODAY.isoformat()
EXAMPLES = ROOT / "_sources" / "hl7.fhir.r4.examples"
SCENARIOS: list[dict[str, Any]] = []


def named(resource: dict[str, Any], resource_id: str) -> dict[str, Any]:
    resource["id"] = resource_id
    return resource


def add(
    name: str,
    title: str,
    story: str,
    body: dict[str, Any],
    *,
    cards: dict[str, str] | None = None,
    absent: tuple[str, ...] = (),
    only: bool = False,
    suggestions: tuple[dict[str, Any], ...] = (),
    quirk: str | None = None,
    status: int = 200,
) -> None:
    expected: dict[str, Any] = {
        "title": title,
        "story": story,
        "reference_date": REFERENCE_DATE,
        "hook": body["hook"],
        "status": status,
        "cards": cards or {},
        "absent": list(absent),
        "only": only,
        "suggestions": list(suggestions),
    }
    if quirk:
        expected["quirk"] = quirk
    body["hookInstance"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"naltrexone-cds/fixtures/{name}"))
    SCENARIOS.append({"name": name, "request": body, "expected": expected})


def delete_draft(rule: str, draft: str = "draft-1") -> dict[str, Any]:
    return {"rule": rule, "type": "delete", "resourceId": f"MedicationRequest/{draft}"}


def example(filename: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads((EXAMPLES / filename).read_text(encoding="utf-8"))
    return resource


# A fully worked-up standard-dose start for opioid use disorder: nothing is missing but what a
# scenario takes away or adds.
def workup(
    *, oud: bool = True, uds: bool = True, challenge: bool = True, lft: bool = True, rescue: bool = True
) -> list[dict[str, Any]]:
    items = []
    if oud:
        items.append(named(c.oud(onset=-400), "oud-1"))
    if uds:
        items.append(named(c.urine_opiates("Negative", when=-1), "uds-neg-1"))
    if challenge:
        items.append(named(c.naloxone_challenge("passed", when=-1), "challenge-passed-1"))
    if lft:
        items.append(named(c.alt(30, when=-20), "alt-normal-1"))
    if rescue:
        items.append(
            named(c.medication_request(c.NALOXONE_SPRAY, authored=-100, supply_days=None), "naloxone-rx-1")
        )
    return items


FIFTY_DAILY_TEST_DOSE = {
    "rule": "test-dose",
    "type": "update",
    "resourceType": "MedicationRequest",
    "expect": {
        "id": "draft-1",
        "dosageInstruction.0.doseAndRate.0.doseQuantity.value": 25,
        "dosageInstruction.0.timing.repeat.count": 1,
    },
}
FOLLOW_ON = {
    "rule": "test-dose",
    "type": "create",
    "resourceType": "MedicationRequest",
    "expect": {
        "dosageInstruction.0.doseAndRate.0.doseQuantity.value": 50,
        "dosageInstruction.0.timing.repeat.boundsPeriod.start": "@+1",
    },
}
GUIDANCE = ("test-dose", "uds-needed", "naloxone-challenge-needed", "lft-needed", "naloxone-rescue")
