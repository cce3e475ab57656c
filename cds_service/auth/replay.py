"""``jti`` replay: a token is accepted once. Remembered in the audit database, shared by every process and
instance; when the database is down, each process remembers on its own (logged and counted)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from cds_service.logs import log_fields
from cds_service.store import StoreUnavailable

log = logging.getLogger("naltrexone_cds.auth")


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- replay --------------------------------------------------------------------------------------


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record (issuer, jti) until ``expires_at``; False when it is already recorded and unexpired.
        Must be atomic across every process that serves the same clients."""
        ...


class InMemoryReplayGuard:
    """One process's memory, lost on restart and not shared between workers: the fallback while the
    database is down, and for tests."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        now = self._clock()
        with self._lock:
            self._seen = {key: until for key, until in self._seen.items() if until > now}
            if (issuer, jti) in self._seen:
                return False
            self._seen[issuer, jti] = expires_at
            return True


class DatabaseReplayGuard:
    """``jti`` seen-before checks in the shared database, degrading to process memory when it is down."""

    def __init__(self, database: ReplayGuard) -> None:
        self._database = database
        self._fallback = InMemoryReplayGuard()
        self.degraded_checks = 0

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        try:
            return self._database.first_use(issuer, jti, expires_at)
        except StoreUnavailable:
            self.degraded_checks += 1
            log.error(
                "jti replay check fell back to process memory: the database is unavailable",
                extra=log_fields(degraded_checks=self.degraded_checks),
            )
            return self._fallback.first_use(issuer, jti, expires_at)
