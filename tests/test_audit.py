"""The audit's pseudonym secret: kept beside a SQLite file, required for PostgreSQL; gaps are counted."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cds_service.audit import CardAudit, _generated_secret
from cds_service.cdshooks import Card, Source
from cds_service.store import Store, sqlite_url


def test_a_sqlite_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "audit.sqlite3")
    first = _generated_secret(url)
    assert len(first) >= 32 and _generated_secret(url) == first
    secret_file = tmp_path / "audit.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_postgresql_needs_a_configured_secret() -> None:
    with pytest.raises(ValueError, match="AUDIT_SECRET"):
        _generated_secret("postgresql://cds@127.0.0.1:5432/audit")


def test_an_answer_that_cannot_be_recorded_is_a_counted_gap_not_an_error(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "missing-directory" / "audit.sqlite3"), secret="s" * 32)
    audit = CardAudit(store)  # never migrated, and its directory does not exist: every write fails
    card = Card(
        uuid="3f8e0c1e-52cc-4c55-9b9a-7a1bd3f1e0a2", summary="s", indicator="info", source=Source("x")
    )
    for _ in range(2):
        audit.record(
            hook="order-select",
            service_id="naltrexone-order-select",
            hook_instance="h",
            patient_id="p",
            user_id=None,
            rules_version="v",
            cards=[card],
        )
    assert audit.gaps == 2
