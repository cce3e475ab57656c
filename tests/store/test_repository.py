"""The audit store, against a SQLite file and a real PostgreSQL server alike (``tests/databases.py``)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from cds_service.store import (
    FeedbackItem,
    FeedbackResult,
    Issuance,
    IssuedCard,
    OverrideReason,
    ReasonCount,
    ReportRow,
    Store,
    StoreUnavailable,
    UnknownCard,
    UnknownSuggestion,
    WrongService,
    sqlite_url,
)
from cds_service.store.models import Base
from tests.support.databases import PG_ADMIN_URL, Backend, dump, libpq_url, migrated, raw_text

SECRET = "test-secret-0123456789abcdef"
SERVICE = "naltrexone-order-select"
OTHER_SERVICE = "naltrexone-order-sign"
OVERRIDE_SYSTEM = "http://naltrexone-cds.org/fhir/CodeSystem/override-reason"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TABLES = ("card_feedback", "issued_suggestion", "issued_card", "seen_jwt_id")

# Forked workers, like gunicorn's: the children inherit a Store built (and used) by the parent.
FORK = multiprocessing.get_context("fork")


@pytest.fixture(scope="session")
def migrated_url(backend: Backend) -> str:
    return migrated(backend, SECRET)


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    """A store on an empty, migrated database."""
    engine = create_engine(migrated_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        else:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    opened = Store(migrated_url, secret=SECRET, clock=lambda: T0)
    yield opened
    opened.close()


# ---------------------------------------------------------------------------------------------- helpers


def issue(
    store: Store,
    *,
    rule_id: str = "opioid-active",
    suggestions: int = 1,
    service_id: str = SERVICE,
    issued_at: datetime = T0,
    patient_id: str | None = "Patient/p1",
    user_id: str | None = "Practitioner/u1",
    count: int = 1,
) -> list[IssuedCard]:
    cards = [
        IssuedCard(
            uuid=str(uuid.uuid4()),
            rule_id=rule_id,
            indicator="critical",
            suggestion_uuids=tuple(str(uuid.uuid4()) for _ in range(suggestions)),
        )
        for _ in range(count)
    ]
    store.record_issued(
        Issuance(
            hook="order-select",
            service_id=service_id,
            hook_instance=str(uuid.uuid4()),
            patient_id=patient_id,
            user_id=user_id,
            rules_version="2026.11.1",
            cards=tuple(cards),
            issued_at=issued_at,
        )
    )
    return cards


def accepted(card: IssuedCard, at: datetime = T0) -> FeedbackItem:
    return FeedbackItem(card.uuid, "accepted", at, accepted_suggestions=card.suggestion_uuids[:1])


def overridden(
    card: IssuedCard, code: str | None = "record-out-of-date", at: datetime = T0, comment: str | None = None
) -> FeedbackItem:
    reason = OverrideReason(OVERRIDE_SYSTEM, code, code and code.replace("-", " ")) if code else None
    return FeedbackItem(card.uuid, "overridden", at, override_reason=reason, user_comment=comment)


def feedback_rows(url: str) -> list[dict[str, Any]]:
    return dump(url)["card_feedback"]


def run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(barrier, results, *a)`` in one forked process per ``a``; their results, or raise."""
    barrier = FORK.Barrier(len(args))
    results = FORK.Queue()
    processes = [FORK.Process(target=target, args=(barrier, results, *a)) for a in args]
    for process in processes:
        process.start()
    collected = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [r for r in collected if isinstance(r, str)]
    assert not errors, errors
    assert all(p.exitcode == 0 for p in processes)
    return collected


def _post_feedback(barrier: Any, results: Any, store: Store, batches: list[list[FeedbackItem]]) -> None:
    try:
        barrier.wait(timeout=20)
        outcomes: list[str] = []
        for batch in batches:
            outcomes.extend(store.record_feedback(SERVICE, batch).outcomes)
        results.put(outcomes)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def _claim(barrier: Any, results: Any, store: Store, jtis: list[str]) -> None:
    try:
        barrier.wait(timeout=20)
        expires = T0 + timedelta(minutes=5)  # the store under test lives at T0
        results.put([(jti, store.first_use("https://ehr.example", jti, expires)) for jti in jtis])
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def _migrate(barrier: Any, results: Any, url: str) -> None:
    try:
        store = Store(url, secret=SECRET)
        barrier.wait(timeout=20)
        store.migrate()
        results.put(["ok"])
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


# -------------------------------------------------------------------------------------------- schema


def test_migrations_build_the_schema_from_nothing_and_are_idempotent(backend: Backend) -> None:
    url = backend.new_url()
    store = Store(url, secret=SECRET)
    store.migrate()
    store.migrate()
    store.check()
    store.close()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {*TABLES, "alembic_version"}
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0001"]
            # The shipped migrations build exactly what the models describe.
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_instances_starting_together_migrate_once(backend: Backend) -> None:
    url = backend.new_url()
    run_processes(_migrate, [(url,)] * 4)
    assert dump(url)["alembic_version"] == [{"version_num": "0001"}]


def test_an_unmigrated_database_is_unavailable_not_a_crash(backend: Backend) -> None:
    store = Store(backend.new_url(), secret=SECRET)
    with pytest.raises(StoreUnavailable, match="record feedback"):
        store.record_feedback(SERVICE, [FeedbackItem("c", "overridden", T0)])
    store.close()


# ------------------------------------------------------------------------------------------ issued cards


def test_issued_cards_are_recorded_with_their_suggestions(store: Store, migrated_url: str) -> None:
    when = datetime(2026, 11, 22, 7, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    cards = issue(store, suggestions=2, issued_at=when, count=2)
    issue(store, rule_id="test-dose", suggestions=0, patient_id=None, user_id=None)
    rows = dump(migrated_url)
    by_uuid = {row["card_uuid"]: row for row in rows["issued_card"]}
    assert len(by_uuid) == 3
    first = by_uuid[cards[0].uuid]
    assert first["hook"] == "order-select" and first["service_id"] == SERVICE
    assert (first["rule_id"], first["indicator"], first["rules_version"]) == (
        "opioid-active",
        "critical",
        "2026.11.1",
    )
    assert first["patient_hash"] == store.pseudonym("patient", "Patient/p1")
    assert first["user_hash"] == store.pseudonym("user", "Practitioner/u1")
    assert first["issued_at"] == when and first["issued_at"].tzinfo == UTC
    assert {(r["card_uuid"], r["suggestion_uuid"]) for r in rows["issued_suggestion"]} == {
        (card.uuid, s) for card in cards for s in card.suggestion_uuids
    }
    anonymous = next(row for row in rows["issued_card"] if row["rule_id"] == "test-dose")
    assert anonymous["patient_hash"] is None and anonymous["user_hash"] is None


def test_recording_the_same_answer_twice_stores_it_once(store: Store, migrated_url: str) -> None:
    (card,) = issue(store, suggestions=2)
    again = Issuance("order-select", SERVICE, "hi", "Patient/p1", None, "2026.11.1", (card,), issued_at=T0)
    store.record_issued(again)
    store.record_issued(Issuance("order-select", SERVICE, "hi", None, None, "v", ()))  # no cards: no-op
    rows = dump(migrated_url)
    assert (len(rows["issued_card"]), len(rows["issued_suggestion"])) == (1, 2)


# ---------------------------------------------------------------------------------------------- feedback


def test_accepted_and_overridden_feedback_is_recorded(store: Store, migrated_url: str) -> None:
    card_a, card_o = issue(store, suggestions=2, count=2)
    local = datetime(2026, 11, 22, 14, 5, 1, 250000, tzinfo=timezone(timedelta(hours=2)))
    result = store.record_feedback(
        SERVICE,
        [
            FeedbackItem(card_a.uuid, "accepted", local, accepted_suggestions=card_a.suggestion_uuids),
            overridden(card_o, "opioid-stopped", comment="stopped methadone 10 days ago"),
        ],
    )
    assert result == FeedbackResult(("recorded", "recorded"))
    rows = {row["card_uuid"]: row for row in feedback_rows(migrated_url)}
    row_a, row_o = rows[card_a.uuid], rows[card_o.uuid]
    assert row_a["outcome"] == "accepted"
    assert row_a["accepted_suggestions"] == sorted(card_a.suggestion_uuids)
    assert row_a["outcome_timestamp"] == local and row_a["outcome_timestamp"].tzinfo == UTC
    assert row_o["outcome"] == "overridden" and row_o["accepted_suggestions"] == []
    assert (row_o["override_system"], row_o["override_code"], row_o["override_display"]) == (
        OVERRIDE_SYSTEM,
        "opioid-stopped",
        "opioid stopped",
    )
    assert row_o["user_comment"] == "stopped methadone 10 days ago"
    assert row_o["received_at"] == T0


def test_repeated_feedback_is_acknowledged_and_not_stored_twice(store: Store, migrated_url: str) -> None:
    card_a, card_o = issue(store, suggestions=2, count=2)
    items = [
        FeedbackItem(card_a.uuid, "accepted", T0, accepted_suggestions=card_a.suggestion_uuids),
        overridden(card_o, "opioid-stopped", comment="seen"),
    ]
    assert store.record_feedback(SERVICE, items).recorded == 2
    same_again = [
        # The same instant in another offset, suggestions in another order: the same statement.
        FeedbackItem(
            card_a.uuid,
            "accepted",
            T0.astimezone(timezone(timedelta(hours=-7))),
            accepted_suggestions=tuple(reversed(card_a.suggestion_uuids)),
        ),
        # The reason's display is a label: without it (as the sandbox sends), still the same.
        FeedbackItem(
            card_o.uuid,
            "overridden",
            T0,
            override_reason=OverrideReason(OVERRIDE_SYSTEM, "opioid-stopped"),
            user_comment="seen",
        ),
    ]
    assert store.record_feedback(SERVICE, same_again) == FeedbackResult(("duplicate", "duplicate"))
    assert store.record_feedback(SERVICE, items + items).outcomes == ("duplicate",) * 4
    assert len(feedback_rows(migrated_url)) == 2


def test_a_later_different_outcome_for_the_same_card_is_recorded(store: Store, migrated_url: str) -> None:
    (card,) = issue(store)
    store.record_feedback(SERVICE, [overridden(card, at=T0)])
    assert store.record_feedback(SERVICE, [accepted(card, at=T0 + timedelta(minutes=2))]).recorded == 1
    # Same moment, another reason: a different statement too.
    assert store.record_feedback(SERVICE, [overridden(card, "opioid-stopped", at=T0)]).recorded == 1
    assert sorted(row["outcome"] for row in feedback_rows(migrated_url)) == [
        "accepted",
        "overridden",
        "overridden",
    ]
    (row,) = store.report(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert (row.accepted, row.overridden, row.no_feedback) == (1, 0, 0)  # the latest outcome counts


def test_feedback_for_an_unknown_card_names_it_and_records_nothing(store: Store, migrated_url: str) -> None:
    (card,) = issue(store)
    with pytest.raises(UnknownCard, match="unknown card uuid: no-such-card") as caught:
        store.record_feedback(SERVICE, [accepted(card), overridden(IssuedCard("no-such-card", "x", "info"))])
    assert caught.value.card_uuids == ("no-such-card",) and caught.value.card_uuid == "no-such-card"
    assert feedback_rows(migrated_url) == []


def test_feedback_about_another_services_card_is_rejected(store: Store, migrated_url: str) -> None:
    (card,) = issue(store, service_id=OTHER_SERVICE)
    with pytest.raises(WrongService, match=f"card {card.uuid} was issued by service '{OTHER_SERVICE}'"):
        store.record_feedback(SERVICE, [overridden(card)])
    assert feedback_rows(migrated_url) == []


def test_accepting_a_suggestion_the_card_did_not_offer_is_rejected(store: Store, migrated_url: str) -> None:
    first, second = issue(store, count=2)
    wrong = FeedbackItem(first.uuid, "accepted", T0, accepted_suggestions=second.suggestion_uuids)
    with pytest.raises(UnknownSuggestion, match=second.suggestion_uuids[0]):
        store.record_feedback(SERVICE, [wrong])
    assert feedback_rows(migrated_url) == []


def test_concurrent_feedback_from_several_processes_loses_nothing_and_duplicates_nothing(
    store: Store, migrated_url: str
) -> None:
    workers = 6
    shared = issue(store, count=4)  # every process sends the same feedback on these
    contested = issue(store)[0]  # every process sends its own, different outcome on this one
    own = [issue(store, count=5) for _ in range(workers)]  # each process's own cards
    args = []
    for index in range(workers):
        mine = [accepted(card) for card in own[index]]
        distinct = overridden(contested, at=T0 + timedelta(seconds=index))
        same = [overridden(card, "opioid-stopped") for card in shared]
        # Each process repeats its batches too, as a client retrying after a timeout would.
        batches = [[*same, distinct], mine[:3], [*mine, *same], mine[3:]]
        args.append((store, batches))
    outcomes = [o for result in run_processes(_post_feedback, args) for o in result]
    rows = feedback_rows(migrated_url)
    expected = len(shared) + workers + workers * 5
    assert len(rows) == expected
    assert outcomes.count("recorded") == expected  # each row was claimed by exactly one request
    assert len({(row["card_uuid"], row["fingerprint"]) for row in rows}) == expected
    assert sum(row["card_uuid"] == contested.uuid for row in rows) == workers
    # The parent, whose store the workers inherited, carries on with it.
    assert sum(row.overridden for row in store.report(T0, T0 + timedelta(days=1))) == len(shared) + 1


# ---------------------------------------------------------------------------------------------- JWT ids


def test_a_jwt_id_is_accepted_once(store: Store) -> None:
    soon = T0 + timedelta(minutes=5)
    assert store.first_use("https://ehr.example", "jti-1", soon) is True
    assert store.first_use("https://ehr.example", "jti-1", soon) is False
    assert store.first_use("https://other-ehr.example", "jti-1", soon) is True
    with pytest.raises(ValueError, match="aware"):
        store.first_use("https://ehr.example", "jti-2", datetime(2026, 11, 22, 12, 5))


def test_an_expired_jwt_id_is_purged_and_no_longer_blocks(migrated_url: str, store: Store) -> None:
    assert store.first_use("iss", "old", T0 + timedelta(minutes=1)) is True
    assert store.first_use("iss", "old", T0 + timedelta(minutes=1)) is False
    later = Store(migrated_url, secret=SECRET, clock=lambda: T0 + timedelta(hours=1))
    assert later.first_use("iss", "new", T0 + timedelta(hours=2)) is True  # a new process purges first
    assert [row["jti"] for row in dump(migrated_url)["seen_jwt_id"]] == ["new"]
    assert later.first_use("iss", "old", T0 + timedelta(hours=2)) is True
    later.close()


def test_first_use_has_exactly_one_winner_across_processes(store: Store) -> None:
    jtis = [f"jti-{n}" for n in range(5)]
    results = run_processes(_claim, [(store, jtis)] * 8)
    winners = {jti: sum(won for result in results for j, won in result if j == jti) for jti in jtis}
    assert winners == dict.fromkeys(jtis, 1)


# ------------------------------------------------------------------------------------------ unavailable


def test_a_database_that_is_down_raises_store_unavailable_quickly(backend: Backend) -> None:
    store = Store(backend.down_url(), secret=SECRET)
    (card,) = [IssuedCard("c", "opioid-active", "critical")]
    calls: list[Callable[[], object]] = [
        store.migrate,
        store.check,
        lambda: store.record_issued(Issuance("order-select", SERVICE, "h", "p", "u", "v", (card,))),
        lambda: store.record_feedback(SERVICE, [overridden(card)]),
        lambda: store.first_use("iss", "jti", T0),
        lambda: store.report(T0, T0 + timedelta(days=1)),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"audit database unavailable|cannot create"):
            call()
        assert time.monotonic() - started < 3
    store.close()


@contextmanager
def write_locked(url: str, table: str) -> Iterator[str]:
    """Another connection holds the write lock (SQLite: the file's; PostgreSQL: ``table``'s) until exit."""
    holder = create_engine(url)
    try:
        with holder.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.exec_driver_sql("DELETE FROM seen_jwt_id")  # now holds the write lock
            else:
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield conn.dialect.name
            conn.exec_driver_sql("ROLLBACK")
    finally:
        holder.dispose()


def test_a_locked_database_gives_up_after_the_statement_timeout(store: Store, migrated_url: str) -> None:
    (card,) = issue(store)
    impatient = Store(migrated_url, secret=SECRET, statement_timeout=0.5)
    try:
        with write_locked(migrated_url, "card_feedback") as backend:
            if backend == "sqlite":
                # Readers do not queue behind a writer (WAL, and reads begin DEFERRED).
                impatient.check()
                assert impatient.report(T0, T0 + timedelta(days=1))[0].issued == 1
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                impatient.record_feedback(SERVICE, [overridden(card)])
            assert time.monotonic() - started < 3
    finally:
        impatient.close()
    assert store.record_feedback(SERVICE, [overridden(card)]).recorded == 1


def test_an_answer_write_that_waited_out_a_lock_keeps_its_connection(migrated_url: str) -> None:
    """A busy database is normal under load: the connection is rolled back and reused, not replaced
    (a new one would redo the connect-time setup just when the database is contended)."""
    impatient = Store(migrated_url, secret=SECRET, statement_timeout=0.3)
    issue(impatient)  # the pool now holds one connection
    connects: list[object] = []
    event.listen(impatient._engine(), "connect", lambda dbapi, record: connects.append(dbapi))
    try:
        with write_locked(migrated_url, "issued_card"):
            for _ in range(3):
                with pytest.raises(StoreUnavailable):
                    issue(impatient)
        (card,) = issue(impatient)
        assert impatient.first_use("https://ehr.example.org", "jti-1", T0 + timedelta(days=1))
    finally:
        impatient.close()
    assert connects == []
    assert card.uuid in {row["card_uuid"] for row in dump(migrated_url)["issued_card"]}


def test_postgresql_connections_cut_by_the_server_are_replaced(postgres: Backend) -> None:
    url = postgres.new_url()
    store = Store(url, secret=SECRET, clock=lambda: T0)
    store.migrate()
    (card,) = issue(store)  # the pool now holds an open connection
    with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(url).database,),
        )
    assert store.record_feedback(SERVICE, [overridden(card)]).recorded == 1
    issue(store)  # the answer's own write path checks its connection out the same way
    store.close()


# --------------------------------------------------------------------------------------------- privacy


def test_no_patient_or_user_identifier_is_stored_in_clear(store: Store, migrated_url: str) -> None:
    patient, user = "Patient/pt-7f3a9c-secret", "Practitioner/dr-41b2e8-secret"
    (card,) = issue(store, patient_id=patient, user_id=user)
    store.record_feedback(SERVICE, [accepted(card), overridden(card, at=T0 + timedelta(minutes=1))])
    everything = json.dumps(dump(migrated_url), default=str) + raw_text(migrated_url)
    assert card.uuid in everything  # the dump does see the data
    for secret in ("pt-7f3a9c", "dr-41b2e8"):
        assert secret not in everything
    # Keyed: neither a plain hash of the identifier nor the same under another secret.
    stored = dump(migrated_url)["issued_card"][0]["patient_hash"]
    assert stored == store.pseudonym("patient", patient)
    assert stored != hashlib.sha256(patient.encode()).hexdigest()
    assert stored != Store(migrated_url, secret="another-secret-0123456789").pseudonym("patient", patient)
    assert store.pseudonym("user", patient) != stored  # patients and users hash apart


# ---------------------------------------------------------------------------------------------- report


def test_report_counts_against_a_known_history(store: Store) -> None:
    day = timedelta(days=1)
    # opioid-active: 6 in range: 2 accepted, 3 overridden (2 stopped, 1 without reason), 1 without feedback.
    active = issue(store, count=6, issued_at=T0)
    store.record_feedback(
        SERVICE,
        [
            accepted(active[0]),
            accepted(active[1]),
            overridden(active[2], "opioid-stopped"),
            overridden(active[3], "opioid-stopped"),
            overridden(active[4], None),
        ],
    )
    # ...and one first accepted, later overridden: counted once, as overridden (record out of date).
    store.record_feedback(SERVICE, [accepted(active[5]), overridden(active[5], at=T0 + timedelta(hours=1))])
    # test-dose (the other service): 3 cards, 1 overridden, 2 without feedback; a repeat changes nothing.
    dose = issue(store, rule_id="test-dose", service_id=OTHER_SERVICE, count=3, issued_at=T0 + 2 * day)
    for _ in range(2):
        store.record_feedback(OTHER_SERVICE, [overridden(dose[0], "supervised-induction")])
    # Outside the period: before it, and at its (exclusive) end.
    issue(store, count=2, issued_at=T0 - day)
    issue(store, rule_id="lft-needed", issued_at=T0 + 7 * day)

    rows = store.report(T0, T0 + 7 * day)

    stopped = ReasonCount(OVERRIDE_SYSTEM, "opioid-stopped", "opioid stopped", 2)
    out_of_date = ReasonCount(OVERRIDE_SYSTEM, "record-out-of-date", "record out of date", 1)
    no_reason = ReasonCount(None, None, None, 1)
    induction = ReasonCount(OVERRIDE_SYSTEM, "supervised-induction", "supervised induction", 1)
    assert rows == [
        ReportRow("opioid-active", 6, 2, 4, 0, (stopped, out_of_date, no_reason)),
        ReportRow("test-dose", 3, 0, 1, 2, (induction,)),
    ]
    assert store.report(T0, T0 + 7 * day, top=1)[0].top_override_reasons == (stopped,)
    assert store.report(T0, T0 + 7 * day, service_id=OTHER_SERVICE) == rows[1:]
    assert store.report(T0 + 30 * day, T0 + 31 * day) == []


# ------------------------------------------------------------------------------------------ configuration


def test_bad_configurations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Store(sqlite_url(tmp_path / "a.db"), secret="short")
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        Store("mysql://root@127.0.0.1/test", secret=SECRET)
    with pytest.raises(ValueError, match="SQLite file"):
        Store("sqlite://", secret=SECRET)
    with pytest.raises(ValueError, match="not a database URL"):
        Store("not a url", secret=SECRET)


def test_urls_are_normalised_and_passwords_kept_out_of_logs() -> None:
    store = Store("postgresql://cds:hunter2@db.example:5432/audit", secret=SECRET)
    assert store.backend == "postgresql"
    assert store.url_for_logs == "postgresql+psycopg://cds:***@db.example:5432/audit"
    assert "hunter2" not in repr(store)
    assert Store(sqlite_url("/var/lib/cds/audit.db"), secret=SECRET).backend == "sqlite"


def test_sqlite_fsyncs_feedback_but_not_the_audit_of_each_answer(tmp_path: Path) -> None:
    """Feedback is acknowledged as stored: it must survive a power cut (synchronous=FULL). The audit of
    issued cards only has to survive the process (NORMAL): an fsync per answer tripled the tail."""
    store = Store(sqlite_url(tmp_path / "audit.db"), secret=SECRET, clock=lambda: T0)
    store.migrate()

    def synchronous_of_the_pooled_connection() -> int:
        with store._engine().connect() as conn:  # one thread: the pool hands back the same connection
            driver = conn.connection.driver_connection
            assert driver is not None
            return int(driver.execute("PRAGMA synchronous").fetchone()[0])

    try:
        (card,) = issue(store)
        assert synchronous_of_the_pooled_connection() == 1  # NORMAL
        store.record_feedback(SERVICE, [accepted(card)])
        assert synchronous_of_the_pooled_connection() == 2  # FULL
        issue(store)
        assert synchronous_of_the_pooled_connection() == 1
    finally:
        store.close()
