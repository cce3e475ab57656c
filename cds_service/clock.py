"""The service's notion of now and of today: a clock and a time zone, passed in, never global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Calendar:
    """Today's date in the deployment's time zone (settings ``timezone``): the day the rules count from."""

    zone: tzinfo
    clock: Clock = utc_now

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()
