"""Pruning the audit trail (``Store.prune`` and ``naltrexone-cds prune``) on a SQLite file and on the real
PostgreSQL server alike (the ``backend`` fixture), and while the real server answers hook calls and
takes feedback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, insert, text

from cds_service.demo_client import demo_token
from cds_service.store import FeedbackItem, Issuance, IssuedCard, OverrideReason, Store, UnknownCard
from cds_service.store.models import FeedbackRow, SeenJwtIdRow
from cds_service.store.repository import PRUNE_BATCH_ROWS, PruneResult
from fhir_fixtures import as_of_today as scenario
from tests.support.databases import Backend, dump, migrated
from tests.support.feedback import accepted as accepted_json
from tests.support.live import LiveServer, clean_environ

SECRET = "prune-test-secret-0123456789"
SERVICE = "naltrexone-order-select"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
AUDIT = timedelta(days=90)
FEEDBACK = timedelta(days=2190)
TABLES = ("card_feedback", "issued_suggestion", "issued_card", "seen_jwt_id")
NOTHING = dict.fromkeys(("issued_card", "issued_suggestion", "card_feedback", "seen_jwt_id"), 0)
COMMAND = str(Path(sys.executable).with_name("naltrexone-cds"))


class Clock:
    """The store's clock, which a test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def database(backend: Backend) -> str:
    return migrated(backend, SECRET)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: str, clock: Clock) -> Iterator[Store]:
    """A store on an empty, migrated database, living at ``clock``."""
    engine = create_engine(database)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    opened = Store(database, secret=SECRET, clock=clock)
    yield opened
    opened.close()


# ---------------------------------------------------------------------------------------------- helpers


def issue(
    store: Store, issued_at: datetime, *, count: int = 1, suggestions: int = 1, rule_id: str = "test-dose"
) -> list[IssuedCard]:
    cards = [
        IssuedCard(str(uuid.uuid4()), rule_id, "info", tuple(str(uuid.uuid4()) for _ in range(suggestions)))
        for _ in range(count)
    ]
    issuance = Issuance(
        "order-select", SERVICE, str(uuid.uuid4()), "Patient/p1", None, "v1", tuple(cards), issued_at
    )
    store.record_issued(issuance)
    return cards


def give_feedback(
    store: Store, clock: Clock, card: IssuedCard, received_at: datetime, *, override: str | None = None
) -> None:
    """Feedback on ``card`` as received at ``received_at`` (the store's clock stamps it)."""
    if override:
        item = FeedbackItem(
            card.uuid, "overridden", received_at, override_reason=OverrideReason("s", override)
        )
    else:
        item = FeedbackItem(
            card.uuid, "accepted", received_at, accepted_suggestions=card.suggestion_uuids[:1]
        )
    now, clock.now = clock.now, received_at
    try:
        assert store.record_feedback(SERVICE, [item]).recorded == 1
    finally:
        clock.now = now


def prune(store: Store, **options: Any) -> PruneResult:
    return store.prune(audit_retention=AUDIT, feedback_retention=FEEDBACK, **{"pause": 0.0, **options})


def uuids(cards: list[IssuedCard]) -> set[str]:
    return {card.uuid for card in cards}


def held(url: str) -> dict[str, Any]:
    rows = dump(url)
    return {
        "cards": {row["card_uuid"] for row in rows["issued_card"]},
        "suggested": {row["card_uuid"] for row in rows["issued_suggestion"]},
        "suggestions": len(rows["issued_suggestion"]),
        "feedback": Counter(row["card_uuid"] for row in rows["card_feedback"]),
        "jti": {row["jti"] for row in rows["seen_jwt_id"]},
    }


# ----------------------------------------------------------------------------------------------- ages


def test_cards_without_feedback_go_once_older_than_the_audit_period(store: Store, database: str) -> None:
    at_the_limit = issue(store, T0 - AUDIT)
    just_past = issue(store, T0 - AUDIT - TICK, suggestions=2)
    recent = issue(store, T0 - AUDIT + DAY, count=2)
    years_old = issue(store, T0 - 3 * 365 * DAY, suggestions=3)

    result = prune(store)

    assert result.counts() == {**NOTHING, "issued_card": 2, "issued_suggestion": 5}
    assert (result.issued_before, result.feedback_before, result.expired_at) == (
        T0 - AUDIT,
        T0 - FEEDBACK,
        T0,
    )
    kept = held(database)
    assert kept["cards"] == uuids(at_the_limit + recent)
    assert kept["suggested"] == kept["cards"] and kept["suggestions"] == 3
    assert not kept["cards"] & uuids(just_past + years_old)
    assert prune(store).counts() == NOTHING  # nothing more to do


def test_a_card_with_feedback_stays_until_the_feedback_period_ends(
    store: Store, clock: Clock, database: str
) -> None:
    # Every card here is long past the audit period.
    young = issue(store, T0 - FEEDBACK + DAY)
    give_feedback(store, clock, young[0], T0 - FEEDBACK + DAY)
    at_the_limit = issue(store, T0 - FEEDBACK - DAY)
    give_feedback(store, clock, at_the_limit[0], T0 - FEEDBACK)
    expired = issue(store, T0 - FEEDBACK - DAY, suggestions=2)
    give_feedback(store, clock, expired[0], T0 - FEEDBACK - DAY)
    give_feedback(store, clock, expired[0], T0 - FEEDBACK - TICK, override="changed-mind")
    revisited = issue(store, T0 - FEEDBACK - DAY)  # old feedback, then more ten days ago: all of it kept
    give_feedback(store, clock, revisited[0], T0 - FEEDBACK - DAY)
    give_feedback(store, clock, revisited[0], T0 - 10 * DAY, override="record-out-of-date")

    result = prune(store)

    assert result.counts() == {**NOTHING, "issued_card": 1, "issued_suggestion": 2, "card_feedback": 2}
    kept = held(database)
    assert kept["cards"] == uuids(young + at_the_limit + revisited)
    assert kept["feedback"] == Counter({young[0].uuid: 1, at_the_limit[0].uuid: 1, revisited[0].uuid: 2})

    # Later, each goes with its feedback when its own feedback period ends, and not a microsecond sooner.
    clock.now = T0 - 10 * DAY + FEEDBACK  # revisited's last feedback is exactly at the limit
    assert prune(store).counts() == {**NOTHING, "issued_card": 2, "issued_suggestion": 2, "card_feedback": 2}
    assert held(database)["cards"] == uuids(revisited)
    clock.now += TICK
    assert prune(store).counts() == {**NOTHING, "issued_card": 1, "issued_suggestion": 1, "card_feedback": 2}
    assert held(database)["cards"] == set()


def test_jwt_ids_are_pruned_only_once_expired(store: Store, clock: Clock, database: str) -> None:
    clock.now = T0 - timedelta(hours=1)
    for jti, expires_at in [("long-expired", T0 - DAY), ("expires-now", T0), ("still-valid", T0 + TICK)]:
        assert store.first_use("https://ehr.example", jti, expires_at)
    clock.now = T0

    result = prune(store)

    assert result.counts() == {**NOTHING, "seen_jwt_id": 2}
    assert held(database)["jti"] == {"still-valid"}
    assert store.first_use("https://ehr.example", "still-valid", T0 + DAY) is False  # still a replay


def test_feedback_about_a_pruned_card_is_about_an_unknown_card(store: Store) -> None:
    (card,) = issue(store, T0 - AUDIT - DAY)
    prune(store)
    with pytest.raises(UnknownCard):
        store.record_feedback(SERVICE, [FeedbackItem(card.uuid, "overridden", T0)])


# ------------------------------------------------------------------------------------ dry run, batches


def test_a_dry_run_counts_exactly_what_prune_then_deletes_and_deletes_nothing(
    store: Store, clock: Clock, database: str
) -> None:
    issue(store, T0 - 200 * DAY, count=7, suggestions=2)
    with_feedback = issue(store, T0 - FEEDBACK - DAY, count=3)
    for card in with_feedback:
        give_feedback(store, clock, card, T0 - FEEDBACK - DAY)
    give_feedback(store, clock, with_feedback[0], T0 - DAY, override="still-relevant")
    issue(store, T0 - DAY, count=4)
    clock.now = T0 - DAY
    for n in range(5):
        store.first_use("https://ehr.example", f"jti-{n}", T0 - timedelta(minutes=n))
    clock.now = T0
    before = dump(database)

    dry = prune(store, dry_run=True)

    assert dump(database) == before
    assert dry.dry_run and dry.batches == 0
    assert dry.counts() == {"issued_card": 9, "issued_suggestion": 16, "card_feedback": 2, "seen_jwt_id": 5}
    real = prune(store)
    assert not real.dry_run and real.counts() == dry.counts()
    assert prune(store, dry_run=True).counts() == NOTHING


def test_batches_bound_each_transaction_and_together_cover_every_row(
    store: Store, clock: Clock, database: str
) -> None:
    issue(store, T0 - 200 * DAY, count=1234, suggestions=2)
    recent = issue(store, T0 - DAY, count=10)
    expired = [
        {"issuer": "https://ehr.example", "jti": f"jti-{n}", "expires_at": T0 - timedelta(seconds=n)}
        for n in range(250)
    ]
    engine = create_engine(database)
    with engine.begin() as conn:
        conn.execute(insert(SeenJwtIdRow), expired)
    engine.dispose()
    batches: list[dict[str, int]] = []

    result = prune(store, batch_rows=100, on_batch=batches.append)

    card_batches, jti_batches = batches[:13], batches[13:]
    assert [batch["issued_card"] for batch in card_batches] == [100] * 12 + [34]
    assert all(batch["issued_suggestion"] == 2 * batch["issued_card"] for batch in card_batches)
    assert [batch["seen_jwt_id"] for batch in jti_batches] == [100, 100, 50]
    assert result.batches == 16
    assert result.counts() == {
        "issued_card": 1234,
        "issued_suggestion": 2468,
        "card_feedback": 0,
        "seen_jwt_id": 250,
    }
    kept = held(database)
    assert kept["cards"] == uuids(recent) and kept["jti"] == set()


def test_the_default_batch_is_bounded_too(store: Store, database: str) -> None:
    for _ in range(11):
        issue(store, T0 - 200 * DAY, count=1000)
    batches: list[dict[str, int]] = []

    result = store.prune(audit_retention=AUDIT, feedback_retention=FEEDBACK, on_batch=batches.append)

    size = PRUNE_BATCH_ROWS[store.backend]
    assert size == (1000 if store.backend == "sqlite" else 5000)
    assert [batch["issued_card"] for batch in batches] == [size] * (11_000 // size) + (
        [11_000 % size] if 11_000 % size else []
    )
    assert result.issued_card == result.issued_suggestion == 11_000
    assert held(database)["cards"] == set()


def test_bad_arguments_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        prune(store, batch_rows=0)
    with pytest.raises(ValueError, match="positive"):
        store.prune(audit_retention=timedelta(0), feedback_retention=FEEDBACK)


# --------------------------------------------------------------------------------------------- report


def test_the_report_still_counts_what_is_kept(store: Store, clock: Clock) -> None:
    recent = issue(store, T0 - 10 * DAY, count=5, rule_id="opioid-active")
    give_feedback(store, clock, recent[0], T0 - 10 * DAY)
    give_feedback(store, clock, recent[1], T0 - 9 * DAY, override="opioid-stopped")
    old = issue(store, T0 - 200 * DAY, count=6)
    give_feedback(store, clock, old[0], T0 - 200 * DAY)
    give_feedback(store, clock, old[1], T0 - 199 * DAY, override="already-tolerated")
    last_month = store.report(T0 - 30 * DAY, T0)

    assert prune(store).issued_card == 4  # the old cards nobody gave feedback on

    assert store.report(T0 - 30 * DAY, T0) == last_month
    (row,) = store.report(T0 - 365 * DAY, T0 - 100 * DAY)
    assert (row.rule_id, row.issued, row.accepted, row.overridden, row.no_feedback) == (
        "test-dose",
        2,
        1,
        1,
        0,
    )
    assert [reason.code for reason in row.top_override_reasons] == ["already-tolerated"]


# ------------------------------------------------------------------------------------ racing feedback


def test_feedback_sent_while_its_card_is_being_pruned_is_unknown_not_an_error(
    store: Store, database: str
) -> None:
    """A prune batch deleting the card is under way when feedback about it arrives: the feedback waits
    for the batch, then finds no card (404), rather than failing on the foreign key (500)."""
    (card,) = issue(store, T0 - 200 * DAY)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            store.record_feedback(SERVICE, [FeedbackItem(card.uuid, "overridden", T0)])
        except BaseException as exc:  # the assertion below names it
            outcome.append(exc)

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # what a batch does: lock the cards it takes
                conn.execute(
                    text("SELECT 1 FROM issued_card WHERE card_uuid = :c FOR UPDATE"), {"c": card.uuid}
                )
            conn.execute(text("DELETE FROM issued_suggestion WHERE card_uuid = :c"), {"c": card.uuid})
            conn.execute(text("DELETE FROM issued_card WHERE card_uuid = :c"), {"c": card.uuid})
            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(0.5)
            assert sender.is_alive()  # waiting for the batch
            conn.commit()
        sender.join(timeout=10)
    finally:
        engine.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], UnknownCard), outcome
    assert dump(database)["card_feedback"] == []


def test_a_card_whose_feedback_is_being_recorded_is_kept_with_it(store: Store, database: str) -> None:
    """Feedback about an old card is being committed when prune runs: the card and the feedback stay
    (PostgreSQL: the batch skips the locked card; SQLite: the batch waits, then sees the feedback)."""
    busy, _unasked = issue(store, T0 - 200 * DAY, count=2)  # the other has no feedback: it goes
    pruned: list[PruneResult] = []
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # what record_feedback does first
                conn.execute(
                    text("SELECT 1 FROM issued_card WHERE card_uuid = :c FOR KEY SHARE"), {"c": busy.uuid}
                )
            row = {
                "card_uuid": busy.uuid,
                "fingerprint": "f" * 64,
                "outcome": "overridden",
                "accepted_suggestions": [],
                "outcome_timestamp": T0,
                "received_at": T0,
            }
            conn.execute(insert(FeedbackRow), row)
            pruner = threading.Thread(target=lambda: pruned.append(prune(store)))
            pruner.start()
            time.sleep(0.5)
            conn.commit()
        pruner.join(timeout=10)
    finally:
        engine.dispose()
    assert len(pruned) == 1 and pruned[0].issued_card == 1
    kept = held(database)
    assert kept["cards"] == {busy.uuid} and kept["feedback"] == Counter({busy.uuid: 1})


# ------------------------------------------------------------------------------------------ command


def run_prune(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "prune", *options],
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_prune_command_deletes_what_the_settings_say_and_reports_it(backend: Backend) -> None:
    url = backend.new_url()
    store = Store(url, secret=SECRET)
    store.migrate()
    now = datetime.now(UTC)
    old = issue(store, now - 100 * DAY, count=3, suggestions=2)
    store.record_feedback(SERVICE, [FeedbackItem(old[0].uuid, "overridden", now)])  # kept: has feedback
    recent = issue(store, now - 10 * DAY, count=2)
    store.close()
    env = {"NALTREXONE_CDS_DATABASE_URL": url, "NALTREXONE_CDS_AUDIT_SECRET": SECRET}
    before = dump(url)

    dry = run_prune(env, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    assert json.loads(dry.stdout)["rows"] == {**NOTHING, "issued_card": 2, "issued_suggestion": 4}
    assert dump(url) == before

    longer = run_prune(env, "--older-than-days", "120")
    assert longer.returncode == 0, longer.stderr
    assert "issued_card" in longer.stdout and dump(url) == before

    done = run_prune(env, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == {**NOTHING, "issued_card": 2, "issued_suggestion": 4}
    assert report["dry_run"] is False and report["batches"] == 1
    issued_before = datetime.fromisoformat(report["cards_without_feedback_issued_before"])
    assert abs(issued_before - (now - 90 * DAY)) < timedelta(minutes=5)
    assert held(url)["cards"] == uuids(old[:1] + recent)

    shorter = run_prune({**env, "NALTREXONE_CDS_AUDIT_RETENTION_DAYS": "5"})
    assert shorter.returncode == 0, shorter.stderr
    lines = dict(line.split() for line in shorter.stdout.splitlines() if line.startswith("  "))
    assert lines == {"issued_card": "2", "issued_suggestion": "2", "card_feedback": "0", "seen_jwt_id": "0"}
    assert held(url)["cards"] == uuids(old[:1])


def test_the_prune_command_fails_cleanly_when_the_database_is_down(backend: Backend) -> None:
    result = run_prune(
        {"NALTREXONE_CDS_DATABASE_URL": backend.down_url(), "NALTREXONE_CDS_AUDIT_SECRET": SECRET}, "--json"
    )
    assert result.returncode == 1
    assert "Error: the audit database could not be pruned" in result.stderr
    assert "audit database unavailable" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_prune_command_refuses_retention_settings_that_contradict() -> None:
    result = run_prune(
        {"NALTREXONE_CDS_AUDIT_RETENTION_DAYS": "400", "NALTREXONE_CDS_FEEDBACK_RETENTION_DAYS": "365"}
    )
    assert result.returncode == 2
    assert "feedback_retention_days (365) must be at least audit_retention_days (400)" in result.stderr


# -------------------------------------------------------------------------------- while serving


@pytest.mark.live
def test_prune_runs_again_and_again_while_the_server_answers_and_takes_feedback(
    backend: Backend, tmp_path: Path
) -> None:
    """The real server (two workers, demo-client JWTs) answers hook calls and feedback from three
    clients while prune deletes 12,000 stale cards in batches of 500, then runs again and again."""
    url = backend.new_url()
    seeder = Store(url, secret=SECRET)
    seeder.migrate()
    now = datetime.now(UTC)
    for _ in range(12):
        issue(seeder, now - 200 * DAY, count=1000, suggestions=2)
    kept_old = issue(seeder, now - 200 * DAY, count=20)
    seeder.record_feedback(SERVICE, [FeedbackItem(card.uuid, "overridden", now) for card in kept_old])
    seeder.close()
    env = {**clean_environ(), "NALTREXONE_CDS_DATABASE_URL": url, "NALTREXONE_CDS_AUDIT_SECRET": SECRET}
    server = LiveServer(tmp_path / "server.log", env=env, workers=2, authenticated=True)
    path = f"/cds-services/{SERVICE}"
    statuses: list[int] = []
    feedback_statuses: list[int] = []
    issued: list[str] = []
    acknowledged: dict[str, Any] = {}
    passes: list[PruneResult] = []
    answered_while_pruning = 0
    failures: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not stop.is_set():
                    token = demo_token(server.url + path)
                    answer = http.post(
                        path, json=scenario("test-dose"), headers={"Authorization": f"Bearer {token}"}
                    )
                    statuses.append(answer.status_code)
                    if answer.status_code != 200:
                        continue
                    cards = answer.json()["cards"]
                    issued.extend(card["uuid"] for card in cards)
                    token = demo_token(server.url + path + "/feedback")
                    response = http.post(
                        path + "/feedback",
                        json={"feedback": [accepted_json(cards[0])]},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    feedback_statuses.append(response.status_code)
                    if response.status_code == 200:
                        acknowledged[cards[0]["uuid"]] = response.json()
        except BaseException as exc:
            failures.append(exc)

    def pruner() -> None:
        nonlocal answered_while_pruning
        store = Store(url, secret=SECRET)
        try:
            while not stop.is_set():
                before = len(statuses)
                passes.append(store.prune(audit_retention=AUDIT, feedback_retention=FEEDBACK, batch_rows=500))
                if len(passes) == 1:
                    answered_while_pruning = len(statuses) - before
        except BaseException as exc:
            failures.append(exc)
        finally:
            store.close()

    clients = [threading.Thread(target=client) for _ in range(3)]
    pruning = threading.Thread(target=pruner)
    try:
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 120
        while len(statuses) < 10 and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        engine = create_engine(url)  # JWT ids that expired a minute ago, for prune to find
        with engine.begin() as conn:
            expired = now - timedelta(minutes=1)
            conn.execute(
                insert(SeenJwtIdRow),
                [{"issuer": "old", "jti": f"j{n}", "expires_at": expired} for n in range(500)],
            )
        engine.dispose()
        pruning.start()
        while (len(passes) < 4 or len(statuses) < 150) and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        with server.client() as http:
            health = http.get("/health").json()
    finally:
        stop.set()
        for thread in [*clients, pruning]:
            if thread.ident is not None:  # started
                thread.join(timeout=60)
        server.stop()

    assert not failures, failures
    assert len(passes) >= 4 and len(statuses) >= 150
    assert answered_while_pruning > 0  # the first pass really ran alongside the traffic
    assert passes[0].issued_card == 12_000 and passes[0].issued_suggestion == 24_000
    assert sum(p.issued_card for p in passes[1:]) == 0
    assert Counter(statuses) == Counter({200: len(statuses)})  # no 5xx, no lock timeouts
    assert Counter(feedback_statuses) == Counter({200: len(feedback_statuses)})
    assert all(body == {"recorded": 1, "duplicates": 0} for body in acknowledged.values())
    assert health["audit_gaps"] == 0
    logs = server.logs()
    assert "audit gap" not in logs and "Traceback" not in logs

    kept = held(url)
    assert set(issued) <= kept["cards"]  # every card answered is in the audit trail
    assert kept["cards"] == set(issued) | uuids(kept_old)  # and of the stale ones, only those with feedback
    assert kept["feedback"] == Counter(dict.fromkeys([*acknowledged, *uuids(kept_old)], 1))
    assert [row for row in dump(url)["seen_jwt_id"] if row["issuer"] == "old"] == []  # expired ids gone
    reader = Store(url, secret=SECRET)
    try:
        rows = reader.report(now - DAY, datetime.now(UTC) + DAY)
    finally:
        reader.close()
    assert sum(row.issued for row in rows) == len(issued)
    assert sum(row.accepted for row in rows) == len(acknowledged)
