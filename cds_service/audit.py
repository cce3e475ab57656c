"""The audit trail of every card issued, and the store it lives in.

Recording never stands between the clinician and the advice: if the database cannot be written, the
cards are still returned, and the gap is logged (without identifiers) and counted (``/health``).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from cds_service import metrics
from cds_service.cdshooks import Card, Hook
from cds_service.logs import log_fields
from cds_service.store import Issuance, IssuedCard, Store, StoreError

log = logging.getLogger("naltrexone_cds.audit")


class CardAudit:
    """Writes each answer's cards to the store; counts the answers it could not write.

    The count lives in shared memory made before gunicorn forks (the app is preloaded), so /health
    reports the gaps of every worker, whichever worker answers it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._gaps = multiprocessing.Value("q", 0)

    @property
    def gaps(self) -> int:
        return int(self._gaps.value)

    def record(
        self,
        *,
        hook: Hook,
        service_id: str,
        hook_instance: str,
        patient_id: str,
        user_id: str | None,
        rules_version: str,
        cards: Sequence[Card],
    ) -> None:
        if not cards:
            return
        issued = tuple(
            IssuedCard(
                uuid=card.uuid,
                rule_id=card.rule_id,
                indicator=card.indicator,
                suggestion_uuids=tuple(s.uuid for s in card.suggestions),
            )
            for card in cards
        )
        issuance = Issuance(
            hook=hook,
            service_id=service_id,
            hook_instance=hook_instance,
            patient_id=patient_id,
            user_id=user_id,
            rules_version=rules_version,
            cards=issued,
        )
        try:
            self.store.record_issued(issuance)
        except StoreError as error:
            with self._gaps.get_lock():
                self._gaps.value += 1
                gaps = self._gaps.value
            metrics.count_audit_failure(len(issued))
            log.error(
                "audit gap: cards were returned but could not be recorded",
                extra=log_fields(error=type(error).__name__, cards=len(issued), audit_gaps=gaps),
            )


@functools.cache
def open_store(database_url: str, secret: str) -> Store:
    """One store per process and database (it registers a fork hook and keeps a pool), its schema
    brought up to date. A database that cannot be reached now is logged, not fatal: the service still
    gives advice, and the gap shows in /health."""
    store = Store(database_url, secret=secret or _generated_secret(database_url))
    try:
        store.migrate()
    except StoreError as error:
        log.error("the audit database could not be prepared", extra=log_fields(error=type(error).__name__))
    return store


def _generated_secret(database_url: str) -> str:
    """A random secret kept beside a SQLite file (0600), so pseudonyms stay stable across restarts.

    With PostgreSQL (several instances) there is no shared place to keep it: it must be configured."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError("NALTREXONE_CDS_AUDIT_SECRET is required with a PostgreSQL audit database")
    path = Path(url.database).expanduser().resolve().with_suffix(".secret")
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process got there first
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    log.warning("generated the audit secret", extra=log_fields(path=str(path)))
    return value
