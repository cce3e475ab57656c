"""The clinical scenarios (one folder each: ``request.json``, ``expected.json``) and the builders that
write them and the tests' own requests (``clinical``: FHIR resources; ``requests``: CDS Hooks requests).

Tests, benchmarks and ``build.py`` read the scenarios through this module, so where they live is said once.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent
UNREACHABLE_FHIR_SERVER = "http://unreachable-fhir-server.invalid"
"""The ``fhirServer`` of scenarios whose EHR FHIR server cannot be reached (``.invalid`` never resolves,
RFC 6761). Tests replace it with a port they hold closed themselves (``with_fhir_server``), so nothing
depends on what else listens on the machine."""
_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


def scenario_names() -> list[str]:
    return sorted(p.parent.name for p in FIXTURES.glob("*/expected.json"))


def load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request, expected) of one scenario."""
    folder = FIXTURES / name
    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return request, expected


def shifted(value: Any, days: int) -> Any:
    """A copy of ``value`` with every FHIR date/dateTime moved by ``days``, times and offsets kept: a
    scenario written as of its reference date, replayed as of another."""
    if isinstance(value, dict):
        return {k: shifted(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, days) for v in value]
    if isinstance(value, str):
        match = _DAY.match(value)
        if match:
            try:
                moved = date.fromisoformat(match.group(1)) + timedelta(days=days)
            except ValueError:
                return value
            return moved.isoformat() + (match.group(2) or "")
    return value


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
