"""The audit store: every card issued, the feedback received about it, and the JWT ids already seen.

One ``Store`` per process is built from a database URL: a SQLite file (embedded default) or PostgreSQL
(``postgresql://``, driven by psycopg 3) when several instances share one database.

Concurrency and processes:

* SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
  ``BEGIN IMMEDIATE``: concurrent writers (several gunicorn workers) queue on the file lock instead of
  failing when a read transaction tries to become a write transaction.  Feedback commits with
  ``synchronous=FULL``: it survives a power cut, so feedback committed before the 200 is not lost.  The
  audit of issued cards and the JWT ids commit with ``synchronous=NORMAL`` (WAL: durable when the process
  dies, not when the power does): the clinician is waiting on that write, and an fsync on every answer
  costs more than the rest of the clinical evaluation.  The writes an HTTP request waits on (those two
  and feedback) wait for the file lock at most ``REQUEST_WRITE_WAIT_S``: then the answer goes out with
  the audit gap counted, the JWT id is checked in memory, feedback is a 503.  Migrations and prune wait
  the whole statement timeout.
* No pooled connection crosses a fork (SQLite forbids carrying a connection into a child): just before
  ``os.fork()`` (gunicorn spawning a worker) the store closes its idle pooled connections, and the
  engine is created lazily, per process, so each worker builds its own pool on first use.  Should a
  connection be checked out at the fork (another thread mid-transaction), the child never uses nor
  closes it: the inherited engine stays referenced until the child exits.
* PostgreSQL connections are checked before use (``pool_pre_ping``), so a database restart costs no
  request; connecting, waiting for a pooled connection, statements and locks all have bounded timeouts.
* The two writes on every answer's path (the cards issued, the caller's JWT id) run their one fixed
  statement on the pooled driver connection (``_answer_write``), in the same transaction and with the same
  durability and lock wait: SQLAlchemy's statement machinery cost more than the database there.
  Everything else goes through SQLAlchemy.

Any failure to reach or use the database raises ``StoreUnavailable`` (the HTTP layer answers 503, or for
the hook endpoints logs and counts the audit gap and still returns the cards).  Feedback that cannot be
linked to what was issued raises a ``FeedbackRejected`` subclass naming the card (a 4xx).

Idempotency of feedback: two feedback items are *the same* when they name the same card and agree on
outcome, outcome timestamp (as a UTC instant, to the microsecond), the set of accepted suggestion ids,
the override reason's system and code, and the user comment (``FeedbackItem.fingerprint``; the reason's
``display`` is a label, not part of the statement).  The same item sent again is acknowledged and not
stored twice (a unique constraint on card and fingerprint decides, atomically, across processes).  Any
other feedback for the card, such as a later outcome, is a new row: the report counts each card by its
latest outcome.

Retention (``Store.prune``): cards without feedback are deleted once older than the audit period; a card
with feedback, its suggestions and its feedback only once the card and every feedback item about it are
older than the feedback period; JWT ids once expired.  It deletes in batches, one short transaction
each, so the service's own writes wait at most one batch.  On PostgreSQL the batch locks the cards it
takes (``FOR UPDATE SKIP LOCKED``) and feedback locks its cards before checking them (``FOR KEY SHARE``):
feedback that arrives while its card is being pruned gets "unknown card", never a half-deleted card.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn

from alembic import command
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from cds_service.store.migrations import alembic_config
from cds_service.store.models import (
    FeedbackRow,
    IssuedCardRow,
    IssuedSuggestionRow,
    SeenJwtIdRow,
    UTCDateTime,
)
from cds_service.store.records import (
    MIN_SECRET_BYTES,
    FeedbackItem,
    FeedbackResult,
    IdentifierKind,
    Issuance,
    OverrideReason,
    ReasonCount,
    ReportRow,
    StoreError,
    StoreUnavailable,
    UnknownCard,
    UnknownSuggestion,
    WrongService,
    short,
)

_JTI_PURGE_INTERVAL_S = 60.0
PRUNE_BATCH_ROWS = {"sqlite": 1_000, "postgresql": 5_000}
"""Cards (or JWT ids) per prune transaction. SQLite has one writer: its batch must stay far below the
1 s that a request's write waits for the lock (1,000 cards: about 0.05–0.08 s here)."""
_MAX_PRUNE_BATCH_ROWS = 10_000  # one IN list per batch: well within SQLite's and libpq's parameter limits
# SQLite's busy handler lets a waiting writer sleep up to 100 ms between tries: a pause as long between
# batches lets every writer that queued during one batch in before the next.  PostgreSQL waiters queue.
_SQLITE_PRUNE_PAUSE_S = 0.1
_READ_ONLY = "naltrexone_cds_read_only"
REQUEST_WRITE_WAIT_S = 1.0
"""SQLite: longest wait for the file lock by a write an HTTP request waits on (far above a prune batch).
Another process holding the lock must not hold every request, and so every worker, for the busy timeout."""
# Engines a forked process inherited from its parent: kept referenced, never used nor closed, so that
# garbage collection in the child does not touch connections that belong to the parent.
_INHERITED_ENGINES: list[Engine] = []

# ----------------------------------------------------------------------------------------------- store


def _utc_now() -> datetime:
    return datetime.now(UTC)


def sqlite_url(path: Path | str) -> str:
    """The database URL of a SQLite file (made absolute)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def _normalise_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("the audit store needs a SQLite file: in-memory databases are per connection")
        return parsed
    raise ValueError(f"unsupported database {backend!r}: use a SQLite file or PostgreSQL (postgresql://)")


def _unavailable(exc: BaseException) -> bool:
    """Is this exception "the database cannot be used now" rather than a bug or bad data?"""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError | OSError):
        return True
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.NotSupportedError):
        return False
    if isinstance(exc, sa_exc.ProgrammingError):
        return getattr(exc.orig, "sqlstate", None) == "42P01"  # undefined table: not migrated
    return isinstance(exc, sa_exc.DBAPIError)


def _sqlite_on_connect(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN (see _sqlite_on_begin) instead of the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        _switch_to_wal(cursor, busy_timeout_ms)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Changing the journal mode needs a moment alone with a new file and SQLite does not wait for it
    (the busy handler does not apply), so processes starting together retry until the timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _sqlite_synchronous(conn: Connection, mode: str, busy_timeout_ms: int) -> None:
    """Sets ``PRAGMA synchronous`` and ``busy_timeout`` outside any transaction (on the driver connection,
    in autocommit)."""
    pooled = conn.connection  # its ``info`` lives as long as the driver connection
    if pooled.info.get("synchronous") != (mode, busy_timeout_ms):
        driver = pooled.driver_connection
        assert driver is not None  # a checked-out connection
        driver.execute(f"PRAGMA synchronous = {mode}")
        driver.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        pooled.info["synchronous"] = (mode, busy_timeout_ms)


def _sqlite_on_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``Store.prune`` deleted (a dry run: would delete), per table, and the cut-offs it applied."""

    issued_before: datetime  # cards without feedback issued before this instant
    feedback_before: datetime  # cards with feedback: the card and all its feedback before this instant
    expired_at: datetime  # JWT ids whose expiry is at or before this instant
    dry_run: bool
    issued_card: int = 0
    issued_suggestion: int = 0
    card_feedback: int = 0
    seen_jwt_id: int = 0
    batches: int = 0  # transactions that deleted something

    def counts(self) -> dict[str, int]:
        return {
            "issued_card": self.issued_card,
            "issued_suggestion": self.issued_suggestion,
            "card_feedback": self.card_feedback,
            "seen_jwt_id": self.seen_jwt_id,
        }


@dataclass(frozen=True)
class _AnswerStatements:
    """The two writes on every answer's path, as driver SQL in the driver's own parameter style."""

    insert_cards: str
    insert_suggestions: str
    first_jti_use: str
    bind_instant: Callable[[datetime], Any]
    """An aware datetime as SQLAlchemy would bind it for this database (the type's own processor), so
    the rows are the ones the rest of the store reads and compares."""


def _insert_sql(model: Any, on_conflict: str, placeholder: Callable[[str], str]) -> str:
    columns = [column.name for column in model.__table__.columns if column.autoincrement is not True]
    names = ", ".join(columns)
    values = ", ".join(placeholder(name) for name in columns)
    return f"INSERT INTO {model.__tablename__} ({names}) VALUES ({values}) {on_conflict}"


def _answer_statements(engine: Engine) -> _AnswerStatements:
    dialect = engine.dialect

    def placeholder(name: str) -> str:  # both drivers take a mapping of named parameters
        return f":{name}" if dialect.name == "sqlite" else f"%({name})s"

    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)

    def bind_instant(value: datetime) -> Any:
        return processor(value) if processor is not None else value

    # Both SQLite and PostgreSQL speak this SQL.
    return _AnswerStatements(
        insert_cards=_insert_sql(IssuedCardRow, "ON CONFLICT (card_uuid) DO NOTHING", placeholder),
        insert_suggestions=_insert_sql(
            IssuedSuggestionRow, "ON CONFLICT (card_uuid, suggestion_uuid) DO NOTHING", placeholder
        ),
        first_jti_use=_insert_sql(
            SeenJwtIdRow,
            "ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at"
            f" WHERE seen_jwt_id.expires_at <= {placeholder('now')} RETURNING jti",
            placeholder,
        ),
        bind_instant=bind_instant,
    )


def _rolled_back(pooled: Any) -> bool:
    try:
        pooled.rollback()
    except Exception:
        return False
    return True


def _disconnected(engine: Engine, exc: BaseException, driver: Any, cursor: Any) -> bool:
    """Did ``exc`` lose the connection (as the dialect judges its driver's errors)?"""
    dbapi = engine.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return bool(engine.dialect.is_disconnect(exc, driver, cursor))
    return isinstance(exc, OSError)


class Store:
    """The audit store.  Thread-safe and fork-safe: build one per process, or once before forking."""

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | str,
        clock: Callable[[], datetime] = _utc_now,
        connect_timeout: float = 2.0,
        statement_timeout: float = 5.0,
    ) -> None:
        self._url = _normalise_url(url)
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(self._secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the identifier hashing secret must be at least {MIN_SECRET_BYTES} bytes")
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._lock = threading.Lock()
        self._engine_: Engine | None = None
        self._engine_pid = 0
        self._next_jti_purge = 0.0
        self._answer_sql: _AnswerStatements | None = None  # one URL, one dialect
        this = weakref.ref(self)

        def before_fork() -> None:
            store = this()
            if store is not None:
                store._release_before_fork()

        os.register_at_fork(before=before_fork)

    # -- description

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self._url.get_backend_name() == "sqlite" else "postgresql"

    @property
    def url_for_logs(self) -> str:
        """The database URL with any password masked."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self.url_for_logs!r})"

    # -- engine and transactions

    def _create_engine(self) -> Engine:
        if self.backend == "sqlite":
            busy_ms = int(self._statement_timeout * 1000)
            engine = create_engine(
                self._url,
                hide_parameters=True,  # errors must not carry row contents into logs
                connect_args={"timeout": self._statement_timeout, "check_same_thread": False},
                pool_timeout=self._statement_timeout,
            )
            event.listen(engine, "connect", lambda dbapi, _record: _sqlite_on_connect(dbapi, busy_ms))
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        timeout_ms = int(self._statement_timeout * 1000)
        return create_engine(
            self._url,
            hide_parameters=True,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            pool_timeout=self._connect_timeout,
            pool_recycle=1800,
            connect_args={
                # libpq counts whole seconds and treats anything below 2 as 2.
                "connect_timeout": max(2, math.ceil(self._connect_timeout)),
                "application_name": "naltrexone-cds",
                "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"
                f" -c idle_in_transaction_session_timeout={10 * timeout_ms}",
            },
        )

    def _engine(self) -> Engine:
        pid = os.getpid()
        with self._lock:
            if self._engine_ is None or self._engine_pid != pid:
                if self._engine_ is not None:
                    _INHERITED_ENGINES.append(self._engine_)  # forked: the parent's, not ours
                self._engine_ = self._create_engine()
                self._engine_pid = pid
            return self._engine_

    def _release_before_fork(self) -> None:
        engine = self._engine_
        if engine is not None and self._engine_pid == os.getpid():
            engine.dispose()  # closes the idle connections; checked-out ones are dropped when returned

    @contextmanager
    def _transaction(
        self, action: str, *, read_only: bool = False, durable: bool = True, request: bool = False
    ) -> Iterator[Connection]:
        """``durable=False``: on SQLite the commit is not fsynced; ``request``: an HTTP request waits on this
        write, which waits for SQLite's file lock at most ``REQUEST_WRITE_WAIT_S`` (see the module
        docstring)."""
        try:
            with self._engine().connect() as conn:
                if read_only:
                    conn.execution_options(**{_READ_ONLY: True})
                elif self.backend == "sqlite":
                    wait = (
                        min(self._statement_timeout, REQUEST_WRITE_WAIT_S)
                        if request
                        else self._statement_timeout
                    )
                    _sqlite_synchronous(conn, "FULL" if durable else "NORMAL", int(wait * 1000))
                with conn.begin():
                    yield conn
        except StoreError:
            raise
        except Exception as exc:
            self._raise_failure(action, exc)

    def _insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        return sqlite.insert(table) if self.backend == "sqlite" else postgresql.insert(table)

    @contextmanager
    def _answer_write(self, action: str) -> Iterator[tuple[Any, _AnswerStatements]]:
        """A write an answer waits on (its cards, its caller's JWT id), at the driver.

        The same pooled connection, transaction and durability as ``_transaction(durable=False,
        request=True)``, without SQLAlchemy's statement machinery around the two fixed statements: on
        this path that machinery cost more than the database (see docs/performance.md). Yields a driver
        cursor and the statements in the driver's parameter style."""
        try:
            engine = self._engine()
            statements = self._answer_statements_for(engine)
            pooled = engine.raw_connection()
        except Exception as exc:
            self._raise_failure(action, exc)
        driver: Any = None
        cursor: Any = None
        reusable = True
        try:
            driver = pooled.driver_connection
            assert driver is not None  # a checked-out connection
            if self.backend == "sqlite":
                wait_ms = int(min(self._statement_timeout, REQUEST_WRITE_WAIT_S) * 1000)
                if pooled.info.get("synchronous") != ("NORMAL", wait_ms):
                    driver.execute("PRAGMA synchronous = NORMAL")
                    driver.execute(f"PRAGMA busy_timeout = {wait_ms}")
                    pooled.info["synchronous"] = ("NORMAL", wait_ms)
            cursor = pooled.cursor()
            if self.backend == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")  # the driver is in autocommit: see _sqlite_on_connect
            yield cursor, statements
            pooled.commit()
        except BaseException as exc:
            # A busy database ("locked") or the caller's own error leaves a good connection once rolled
            # back; a lost connection, or one that cannot roll back, is never handed out again.
            reusable = _rolled_back(pooled) and not _disconnected(engine, exc, driver, cursor)
            if not isinstance(exc, Exception) or isinstance(exc, StoreError):
                raise
            self._raise_failure(action, exc)
        finally:
            if cursor is not None:
                with contextlib.suppress(Exception):
                    cursor.close()
            if reusable:
                pooled.close()
            else:
                pooled.invalidate()

    def _answer_statements_for(self, engine: Engine) -> _AnswerStatements:
        if self._answer_sql is None:
            self._answer_sql = _answer_statements(engine)
        return self._answer_sql

    def _raise_failure(self, action: str, exc: Exception) -> NoReturn:
        """Raises ``StoreUnavailable`` for "the database cannot be used now" (driver errors classified as
        SQLAlchemy classifies them); anything else is a bug or bad data and is raised as it is."""
        error: BaseException = exc
        dbapi = self._engine_.dialect.loaded_dbapi if self._engine_ is not None else None
        if dbapi is not None and isinstance(exc, dbapi.Error):
            error = sa_exc.DBAPIError.instance(None, None, exc, dbapi.Error)
        if not _unavailable(error):
            raise exc
        cause = getattr(error, "orig", None) or error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise StoreUnavailable(f"{action}: audit database unavailable ({short(reason, 200)})") from exc

    def close(self) -> None:
        """Close this process's pooled connections (the store stays usable: it reconnects on demand)."""
        with self._lock:
            if self._engine_ is not None and self._engine_pid == os.getpid():
                self._engine_.dispose()
            self._engine_ = None

    # -- administration

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent; safe to run concurrently)."""
        try:
            if self.backend == "sqlite" and self._url.database:
                Path(self._url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"migrate: cannot create the SQLite file's directory ({exc})") from exc
        with self._transaction("migrate") as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def check(self) -> None:
        """A cheap round trip to the database; raises ``StoreUnavailable`` when it cannot be reached."""
        with self._transaction("check", read_only=True) as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def pseudonym(self, kind: IdentifierKind, value: str) -> str:
        """The keyed hash (HMAC-SHA256, hex) stored in place of a patient or user identifier."""
        message = f"{kind}\x1f{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- audit of issued cards

    def record_issued(self, issuance: Issuance) -> None:
        """Record every card of one hook answer (and its suggestions); a retry records nothing twice."""
        if not issuance.cards:
            return
        issued_at = issuance.issued_at or self._clock()
        patient_hash = self.pseudonym("patient", issuance.patient_id) if issuance.patient_id else None
        user_hash = self.pseudonym("user", issuance.user_id) if issuance.user_id else None
        with self._answer_write("record issued cards") as (cursor, sql):
            at = sql.bind_instant(issued_at)
            cursor.executemany(
                sql.insert_cards,
                [
                    {
                        "card_uuid": card.uuid,
                        "issued_at": at,
                        "hook": issuance.hook,
                        "service_id": issuance.service_id,
                        "hook_instance": issuance.hook_instance,
                        "rule_id": card.rule_id,
                        "indicator": card.indicator,
                        "rules_version": issuance.rules_version,
                        "patient_hash": patient_hash,
                        "user_hash": user_hash,
                    }
                    for card in issuance.cards
                ],
            )
            suggestions = [
                {"card_uuid": card.uuid, "suggestion_uuid": suggestion}
                for card in issuance.cards
                for suggestion in dict.fromkeys(card.suggestion_uuids)
            ]
            if suggestions:
                cursor.executemany(sql.insert_suggestions, suggestions)

    # -- feedback

    def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """Record a feedback request's items, all or none, committed before this returns.

        Raises ``UnknownCard``, ``WrongService`` or ``UnknownSuggestion`` (nothing recorded) when an item
        cannot be linked to a card ``service_id`` issued, and ``StoreUnavailable`` when the database is down.
        """
        if not items:
            return FeedbackResult(())
        received_at = self._clock()
        card_uuids = list(dict.fromkeys(item.card_uuid for item in items))
        with self._transaction("record feedback", request=True) as conn:
            # PostgreSQL: FOR KEY SHARE, so that prune skips these cards (SQLite serialises writers anyway)
            issued_by = {
                uuid: issuer
                for uuid, issuer in conn.execute(
                    select(IssuedCardRow.card_uuid, IssuedCardRow.service_id)
                    .where(IssuedCardRow.card_uuid.in_(card_uuids))
                    .with_for_update(read=True, key_share=True)
                )
            }
            missing = [uuid for uuid in card_uuids if uuid not in issued_by]
            if missing:
                raise UnknownCard(missing)
            for uuid in card_uuids:
                if issued_by[uuid] != service_id:
                    raise WrongService(uuid, service_id, issued_by[uuid])
            with_accepted = sorted({item.card_uuid for item in items if item.accepted_suggestions})
            offered: set[tuple[str, str]] = set()
            if with_accepted:
                offered = {
                    (card, suggestion)
                    for card, suggestion in conn.execute(
                        select(IssuedSuggestionRow.card_uuid, IssuedSuggestionRow.suggestion_uuid).where(
                            IssuedSuggestionRow.card_uuid.in_(with_accepted)
                        )
                    )
                }
            for item in items:
                for suggestion in item.accepted_suggestions:
                    if (item.card_uuid, suggestion) not in offered:
                        raise UnknownSuggestion(item.card_uuid, suggestion)
            outcomes: list[Literal["recorded", "duplicate"]] = []
            for item in items:
                reason = item.override_reason or OverrideReason()
                statement = (
                    self._insert(FeedbackRow)
                    .values(
                        card_uuid=item.card_uuid,
                        fingerprint=item.fingerprint,
                        outcome=item.outcome,
                        accepted_suggestions=sorted(set(item.accepted_suggestions)),
                        override_system=reason.system,
                        override_code=reason.code,
                        override_display=reason.display,
                        user_comment=item.user_comment,
                        outcome_timestamp=item.outcome_timestamp,
                        received_at=received_at,
                    )
                    .on_conflict_do_nothing(index_elements=["card_uuid", "fingerprint"])
                    .returning(FeedbackRow.id)
                )
                inserted = conn.execute(statement).first() is not None
                outcomes.append("recorded" if inserted else "duplicate")
        return FeedbackResult(tuple(outcomes))

    # -- JWT replay cache

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True the first time ``(issuer, jti)`` is presented before it expires, False on every replay.

        Atomic across processes and instances (a primary key decides).  A seen id is kept until
        ``expires_at``; expired ones are purged now and then.
        """
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be an aware datetime")
        now = self._clock()
        if time.monotonic() >= self._next_jti_purge:
            self._next_jti_purge = time.monotonic() + _JTI_PURGE_INTERVAL_S
            with self._transaction("purge JWT ids", durable=False, request=True) as conn:
                conn.execute(delete(SeenJwtIdRow).where(SeenJwtIdRow.expires_at <= now))
        with self._answer_write("check JWT id") as (cursor, sql):
            # an expired entry no longer blocks the id: it is overwritten
            parameters = {
                "issuer": issuer,
                "jti": jti,
                "expires_at": sql.bind_instant(expires_at),
                "now": sql.bind_instant(now),
            }
            cursor.execute(sql.first_jti_use, parameters)
            return cursor.fetchone() is not None

    # -- retention

    def prune(
        self,
        *,
        audit_retention: timedelta,
        feedback_retention: timedelta,
        dry_run: bool = False,
        batch_rows: int | None = None,
        pause: float | None = None,
        on_batch: Callable[[dict[str, int]], None] | None = None,
    ) -> PruneResult:
        """Delete what the retention periods no longer keep (see the module docstring), in batches of at
        most ``batch_rows`` cards (with their suggestions and feedback) or JWT ids, one transaction each,
        pausing ``pause`` seconds between them (default: 0.1 s on SQLite, none on PostgreSQL).

        ``dry_run`` counts instead of deleting.  ``on_batch`` gets each committed batch's counts.
        Safe while the service writes; raises ``StoreUnavailable`` when the database cannot be used.
        """
        if audit_retention <= timedelta(0) or feedback_retention <= timedelta(0):
            raise ValueError("retention periods must be positive")
        batch_rows = PRUNE_BATCH_ROWS[self.backend] if batch_rows is None else batch_rows
        if not 1 <= batch_rows <= _MAX_PRUNE_BATCH_ROWS:
            raise ValueError(f"batch_rows must be 1-{_MAX_PRUNE_BATCH_ROWS}, not {batch_rows}")
        now = self._clock()
        result = PruneResult(now - audit_retention, now - feedback_retention, now, dry_run)
        card, feedback = IssuedCardRow, FeedbackRow
        kept_from = result.feedback_before
        expired_card = (
            card.issued_at < result.issued_before,
            # no feedback received within the feedback period...
            ~exists().where(feedback.card_uuid == card.card_uuid, feedback.received_at >= kept_from),
            # ...and a card with feedback is itself older than it
            or_(card.issued_at < kept_from, ~exists().where(feedback.card_uuid == card.card_uuid)),
        )
        expired_jti = SeenJwtIdRow.expires_at <= now
        if dry_run:
            cards = select(card.card_uuid).where(*expired_card).scalar_subquery()
            with self._transaction("count what prune would delete", read_only=True) as conn:
                return dataclasses.replace(
                    result,
                    issued_card=conn.execute(
                        select(func.count()).select_from(card).where(*expired_card)
                    ).scalar_one(),
                    issued_suggestion=conn.execute(
                        select(func.count())
                        .select_from(IssuedSuggestionRow)
                        .where(IssuedSuggestionRow.card_uuid.in_(cards))
                    ).scalar_one(),
                    card_feedback=conn.execute(
                        select(func.count()).select_from(feedback).where(feedback.card_uuid.in_(cards))
                    ).scalar_one(),
                    seen_jwt_id=conn.execute(
                        select(func.count()).select_from(SeenJwtIdRow).where(expired_jti)
                    ).scalar_one(),
                )
        wait = (_SQLITE_PRUNE_PAUSE_S if self.backend == "sqlite" else 0.0) if pause is None else pause
        locking = self.backend == "postgresql"
        totals = dict.fromkeys(result.counts(), 0)
        batches = 0

        def run(batch: Callable[[Connection], dict[str, int]]) -> bool:
            nonlocal batches
            if batches:
                time.sleep(wait)
            with self._transaction("prune the audit trail") as conn:
                counts = batch(conn)
            if not any(counts.values()):
                return False
            batches += 1
            for table, count in counts.items():
                totals[table] += count
            if on_batch is not None:
                on_batch(counts)
            return True

        def cards_batch(conn: Connection) -> dict[str, int]:
            query = select(card.card_uuid).where(*expired_card).order_by(card.issued_at).limit(batch_rows)
            if locking:  # cards whose feedback is being recorded right now are left for the next run
                query = query.with_for_update(skip_locked=True)
            uuids = conn.execute(query).scalars().all()
            if locking and uuids:
                # The condition above was read in the snapshot the statement started with: feedback that
                # committed while it ran (before its card was reached and locked) is not in it. Read
                # again, now that the cards are ours and no feedback can be added to them.
                uuids = (
                    conn.execute(select(card.card_uuid).where(card.card_uuid.in_(uuids), *expired_card))
                    .scalars()
                    .all()
                )
            if not uuids:
                return {}
            return {
                "card_feedback": conn.execute(delete(feedback).where(feedback.card_uuid.in_(uuids))).rowcount,
                "issued_suggestion": conn.execute(
                    delete(IssuedSuggestionRow).where(IssuedSuggestionRow.card_uuid.in_(uuids))
                ).rowcount,
                "issued_card": conn.execute(delete(card).where(card.card_uuid.in_(uuids))).rowcount,
            }

        def jti_batch(conn: Connection) -> dict[str, int]:
            keys = select(SeenJwtIdRow.issuer, SeenJwtIdRow.jti).where(expired_jti).limit(batch_rows)
            if locking:
                keys = keys.with_for_update(skip_locked=True)
            statement = delete(SeenJwtIdRow).where(tuple_(SeenJwtIdRow.issuer, SeenJwtIdRow.jti).in_(keys))
            return {"seen_jwt_id": conn.execute(statement).rowcount}

        while run(cards_batch):
            pass
        while run(jti_batch):
            pass
        return dataclasses.replace(
            result,
            issued_card=totals["issued_card"],
            issued_suggestion=totals["issued_suggestion"],
            card_feedback=totals["card_feedback"],
            seen_jwt_id=totals["seen_jwt_id"],
            batches=batches,
        )

    # -- report

    def report(
        self, start: datetime, end: datetime, *, service_id: str | None = None, top: int = 3
    ) -> list[ReportRow]:
        """Per rule id, the cards issued in ``[start, end)`` and what became of them (latest outcome)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("report bounds must be aware datetimes")
        conditions = [IssuedCardRow.issued_at >= start, IssuedCardRow.issued_at < end]
        if service_id is not None:
            conditions.append(IssuedCardRow.service_id == service_id)
        # Each card of the period once, with its latest feedback (NULLs when it has none).  One pass over
        # the cards, each looking its feedback up by index: the plan stays linear even on fresh tables.
        ranked = (
            select(
                IssuedCardRow.rule_id,
                FeedbackRow.outcome,
                FeedbackRow.override_system,
                FeedbackRow.override_code,
                FeedbackRow.override_display,
                func.row_number()
                .over(
                    partition_by=IssuedCardRow.card_uuid,
                    order_by=(FeedbackRow.outcome_timestamp.desc(), FeedbackRow.id.desc()),
                )
                .label("position"),
            )
            .outerjoin(FeedbackRow, FeedbackRow.card_uuid == IssuedCardRow.card_uuid)
            .where(*conditions)
            .subquery("ranked")
        )
        keys = (ranked.c.rule_id, ranked.c.outcome, ranked.c.override_system, ranked.c.override_code)
        groups = (
            select(*keys, func.max(ranked.c.override_display), func.count())
            .where(ranked.c.position == 1)
            .group_by(*keys)
        )
        with self._transaction("report", read_only=True) as conn:
            counted = conn.execute(groups).all()
        issued: dict[str, int] = {}
        outcomes: dict[tuple[str, str], int] = {}
        reasons: dict[str, list[ReasonCount]] = {}
        for rule_id, outcome, system, code, display, count in counted:
            issued[rule_id] = issued.get(rule_id, 0) + count
            if outcome is not None:
                outcomes[rule_id, outcome] = outcomes.get((rule_id, outcome), 0) + count
            if outcome == "overridden":
                reasons.setdefault(rule_id, []).append(ReasonCount(system, code, display, count))
        rows = []
        for rule_id, total in issued.items():
            accepted = outcomes.get((rule_id, "accepted"), 0)
            overridden = outcomes.get((rule_id, "overridden"), 0)
            ranked_reasons = sorted(
                reasons.get(rule_id, []),
                key=lambda r: (-r.count, r.code is None, r.code or "", r.system or ""),
            )
            rows.append(
                ReportRow(
                    rule_id=rule_id,
                    issued=total,
                    accepted=accepted,
                    overridden=overridden,
                    no_feedback=total - accepted - overridden,
                    top_override_reasons=tuple(ranked_reasons[:top]),
                )
            )
        rows.sort(key=lambda row: (-row.issued, row.rule_id))
        return rows
