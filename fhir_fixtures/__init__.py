"""The clinical scenarios (one folder each: ``request.json``, ``expected.json``) and the builders that
write them and the tests' own requests (``clinical``: FHIR resources; ``requests``: CDS Hooks requests).

Tests, benchmarks and ``build.py`` read the scenarios through this module, so where they live is said once.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cds_service.fhir import shifted

__all__ = [
    "FIXTURES",
    "UNREACHABLE_FHIR_SERVER",
    "as_of_today",
    "load",
    "scenario_names",
    "shifted",
    "with_fhir_server",
]

FIXTURES = Path(__file__).resolve().parent
UNREACHABLE_FHIR_SERVER = "http://unreachable-fhir-server.invalid"
"""The ``fhirServer`` of scenarios whose EHR FHIR server cannot be reached (``.invalid`` never resolves,
RFC 6761). Tests replace it with a port they hold closed themselves (``with_fhir_server``), so nothing
depends on what else listens on the machine."""


def scenario_names() -> list[str]:
    return sorted(p.parent.name for p in FIXTURES.glob("*/expected.json"))


def load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request, expected) of one scenario."""
    folder = FIXTURES / name
    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return request, expected


def as_of_today(name: str, *, patient_id: str | None = None, user_id: str | None = None) -> dict[str, Any]:
    """A scenario's request dated forward to today (and a new hookInstance), optionally for another
    patient and user."""
    request, expected = load(name)
    reference = date.fromisoformat(expected["reference_date"])
    body: dict[str, Any] = shifted(request, (datetime.now(UTC).date() - reference).days)
    text = json.dumps(body)
    if patient_id:
        text = text.replace(body["context"]["patientId"], patient_id)
    if user_id:
        text = text.replace(body["context"]["userId"], user_id)
    renamed: dict[str, Any] = json.loads(text)
    renamed["hookInstance"] = str(uuid.uuid4())
    return renamed


def with_fhir_server(body: dict[str, Any], url: str) -> dict[str, Any]:
    """``body`` with the placeholder unreachable ``fhirServer`` replaced by ``url``."""
    if body.get("fhirServer") == UNREACHABLE_FHIR_SERVER:
        return {**body, "fhirServer": url}
    return body
