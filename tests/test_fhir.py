"""The FHIR readers: dates on their own calendar day, references in every form."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_service.fhir import parse_day, parse_reference, referenced_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22", date(2026, 11, 22)),
        ("2026-11", date(2026, 11, 1)),
        ("2026", date(2026, 1, 1)),
        # a timestamp counts on its own calendar day, whatever its offset (issue 11, time zones)
        ("2026-11-22T23:30:00-05:00", date(2026, 11, 22)),
        ("2026-11-22T00:30:00+14:00", date(2026, 11, 22)),
        ("2026-11-22T23:59:59-12:00", date(2026, 11, 22)),
        ("0001-01-01T00:00:00+14:00", None),
        ("9999-12-31T23:59:59-14:00", None),
        ("2026-11-22T10:00:00Z", date(2026, 11, 22)),
        ("not a date", None),
        (20261122, None),
    ],
)
def test_dates(value: Any, expected: date | None) -> None:
    assert parse_day(value) == expected


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("Patient/123", ("Patient", "123")),
        ("https://ehr.example.org/fhir/Patient/123", ("Patient", "123")),
        ("Medication/m1/_history/2", ("Medication", "m1")),
        ({"reference": "Medication/m1", "display": "x"}, ("Medication", "m1")),
        ("#m1", None),
        ("urn:uuid:1d3e6c2a-1a1a-4b2b-8c8c-000000000001", None),
        ("123", None),
        (None, None),
        (42, None),
    ],
)
def test_references_in_every_form(reference: Any, parsed: tuple[str, str] | None) -> None:
    assert parse_reference(reference) == parsed
    if parsed is not None:
        assert referenced_id(reference, parsed[0]) == parsed[1]
        assert referenced_id(reference, "Other") is None
