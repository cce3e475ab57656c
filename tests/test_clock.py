"""Today is counted in the deployment's time zone; the clock is passed in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from cds_service.clock import Calendar


def test_today_is_the_date_in_the_configured_zone() -> None:
    instant = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)  # 20:00 on the 21st in New York
    assert Calendar(ZoneInfo("America/New_York"), lambda: instant).today() == date(2026, 11, 21)
    assert Calendar(ZoneInfo("UTC"), lambda: instant).today() == date(2026, 11, 22)
    assert Calendar(ZoneInfo("Pacific/Kiritimati"), lambda: instant).today() == date(2026, 11, 22)
