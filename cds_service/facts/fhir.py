"""Small, defensive readers for FHIR R4 JSON.

Prefetched resources come from many systems and are not schema-checked one by one (that would cost
more than the rest of the request): every reader here returns ``None`` for an element that is absent
or not of the expected shape, and the caller decides what missing means clinically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

Resource = Mapping[str, Any]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_DURATION_DAYS = {
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "wk": 7.0,
    "week": 7.0,
    "weeks": 7.0,
    "mo": 30.0,
    "month": 30.0,
    "months": 30.0,
    "a": 365.0,
    "year": 365.0,
    "years": 365.0,
    "h": 1 / 24,
    "hour": 1 / 24,
    "hours": 1 / 24,
    "min": 1 / 1440,
}
_MASS_TO_MG = {
    "mg": 1.0,
    "milligram": 1.0,
    "milligrams": 1.0,
    "g": 1000.0,
    "gram": 1000.0,
    "grams": 1000.0,
    "mcg": 0.001,
    "ug": 0.001,
    "µg": 0.001,
    "microgram": 0.001,
    "micrograms": 0.001,
}


def as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, Mapping) else []


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def parse_day(value: Any) -> date | None:
    """The calendar day (UTC) of a FHIR date/dateTime/instant; a year or month alone means its first day."""
    if not isinstance(value, str):
        return None
    if "T" in value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
            return moment.date()
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def period_days(quantity: Any) -> float | None:
    """A Duration (or Quantity of time) in days."""
    return _converted(quantity, _DURATION_DAYS)


def mass_mg(quantity: Any) -> float | None:
    """A Quantity in mg if its unit is a mass unit; ``None`` otherwise (tablets, mL...)."""
    return _converted(quantity, _MASS_TO_MG)


def _converted(quantity: Any, factors: Mapping[str, float]) -> float | None:
    q = as_dict(quantity)
    value = number(q.get("value"))
    unit = text(q.get("code")) or text(q.get("unit"))
    if value is None or unit is None:
        return None
    factor = factors.get(unit.strip().lower())
    return value * factor if factor is not None else None


def reference_of(resource: Resource) -> str:
    """``Type/id`` of a resource (``Type/(no id)`` when it has none)."""
    return f"{resource.get('resourceType', 'Resource')}/{resource.get('id', '(no id)')}"


def referenced_id(reference: Any, resource_type: str) -> str | None:
    """The id in ``Type/id``, ``https://server/fhir/Type/id`` or ``Type/id/_history/n``."""
    ref = text(as_dict(reference).get("reference")) if isinstance(reference, Mapping) else text(reference)
    if ref is None:
        return None
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def code_values(concept: Any) -> list[str]:
    """The bare codes of a CodeableConcept (any system)."""
    return [
        c["code"]
        for c in as_list(as_dict(concept).get("coding"))
        if isinstance(c, Mapping) and isinstance(c.get("code"), str)
    ]


def first_day(*values: Any) -> date | None:
    for value in values:
        day = parse_day(value)
        if day is not None:
            return day
    return None


def add_days(day: date, days: float) -> date:
    return day + timedelta(days=max(0, round(days)))


def iter_concepts(values: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for value in values:
        if isinstance(value, Mapping):
            yield value
