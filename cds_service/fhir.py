"""Small, defensive readers for FHIR R4 JSON, used by every stage (gather, facts, suggestions, validate).

Prefetched resources come from many systems and are not schema-checked one by one (that would cost
more than the rest of the request): every reader here returns ``None`` (or an empty list) for an
element that is absent or not of the expected shape, and the caller decides what missing means
clinically. Nothing here raises on bad data.

A timestamp counts on its own calendar day, the one its writer saw: a dispense at 23:30+09:00 happened
on that day in Tokyo, whatever the deployment's zone (and one written without an offset, on the day
written). The deployment's time zone decides only "today" (``cds_service.clock``).
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

Resource = Mapping[str, Any]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_EARLIEST_YEAR, _LATEST_YEAR = 1900, 2200  # outside: a sentinel like 9999-12-31, not a real date
_MAX_DAYS = 36_500
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


def json_copy(value: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists and immutable scalars): what ``copy.deepcopy`` does for
    such data, without its memo bookkeeping, at a third of its cost."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a FHIR array (a single object is tolerated as a one-element array)."""
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return [value] if isinstance(value, Mapping) else []


def strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def number(value: Any) -> float | None:
    """A finite number; a numeric string ("30") is read too, as some systems send them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:  # an integer beyond any float (10**400): no reading, not infinity
        return None
    return result if math.isfinite(result) else None


def whole_number(value: Any) -> int | None:
    """A FHIR ``integer``: 32-bit signed; anything past it is not a reading (10**400 refills is no count)."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    return None


def parse_day(value: Any, *, end: bool = False) -> date | None:
    """The calendar day of a FHIR date/dateTime/instant.

    A year or month alone means its first day, or its last day when ``end`` is true (an end date
    "2026-11" covers all of November). Anything else, or a date outside 1900-2200, is ``None``.
    """
    if not isinstance(value, str):
        return None
    if "T" in value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        day = moment.date()  # its own calendar day, offset or not (see the module docstring)
        return day if _EARLIEST_YEAR <= day.year <= _LATEST_YEAR else None
    match = _DATE.match(value)
    if not match:
        return None
    year = int(match.group(1))
    if not _EARLIEST_YEAR <= year <= _LATEST_YEAR:
        return None
    month = int(match.group(2)) if match.group(2) else (12 if end else 1)
    try:
        last = calendar.monthrange(year, month)[1]
        day_of_month = int(match.group(3)) if match.group(3) else (last if end else 1)
        return date(year, month, day_of_month)
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


MEDICATION_HISTORY_TYPES = (
    "MedicationRequest",
    "MedicationDispense",
    "MedicationStatement",
    "MedicationAdministration",
)


def parse_reference(reference: Any) -> tuple[str, str] | None:
    """(type, id) of ``Type/id``, ``https://server/fhir/Type/id``, ``Type/id/_history/n``, or of a
    Reference object holding one; ``None`` for anything else (a contained ``#id``, a ``urn:uuid:``)."""
    ref = text(as_dict(reference).get("reference")) if isinstance(reference, Mapping) else text(reference)
    if ref is None or ref.startswith("#"):
        return None
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], parts[-1]
    return None


def referenced_id(reference: Any, resource_type: str) -> str | None:
    """The id of a reference to a ``resource_type`` (any of the forms ``parse_reference`` reads)."""
    parsed = parse_reference(reference)
    return parsed[1] if parsed is not None and parsed[0] == resource_type else None


_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


def shifted(value: Any, days: int) -> Any:
    """A copy of ``value`` with every FHIR date/dateTime moved by ``days``, times and offsets kept: a
    scenario written as of its reference date, replayed as of another (the demo page, the tests)."""
    if isinstance(value, dict):
        return {k: shifted(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, days) for v in value]
    if isinstance(value, str):
        match = _DATE_PREFIX.match(value)
        if match:
            try:
                moved = date.fromisoformat(match.group(1)) + timedelta(days=days)
            except (ValueError, OverflowError):
                return value
            return moved.isoformat() + (match.group(2) or "")
    return value


def parse_instant(value: Any) -> datetime | None:
    """The moment a FHIR dateTime/instant with a time and an offset names (``None`` without either):
    two events recorded in different time zones are ordered by their moments, not their local days."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None or not _EARLIEST_YEAR <= moment.year <= _LATEST_YEAR:
        return None
    return moment


def first_day(*values: Any, end: bool = False) -> date | None:
    for value in values:
        day = parse_day(value, end=end)
        if day is not None:
            return day
    return None


def add_days(day: date, days: float) -> date:
    """``day`` plus a (clamped) number of days; never past the calendar's end."""
    count = max(0, min(_MAX_DAYS, round(days))) if math.isfinite(days) else _MAX_DAYS
    try:
        return day + timedelta(days=count)
    except OverflowError:
        return date.max
