"""Faults of the audit database while the real server (gunicorn, two workers) is under traffic.

Two clients call the hook and send feedback about the card just answered, without pause, and a third
sends feedback about cards answered before the fault, while the database is stopped and started again
(a PostgreSQL cluster of the test's own), write-locked by another process (SQLite), or on a full disk
(SQLite on a small tmpfs; the test needs the right to mount one, as root has on CI). What an integrator
checks:

* every hook call is answered 200 with its cards, within a bound, whatever the database does;
* feedback is 503 with ``Retry-After`` while the database cannot take it, never a 500 nor a hang, and
  200 again once it can;
* every answer is either wholly in the audit trail or counted as an audit gap (``/health``, the metrics,
  one log line each), so the gaps are exactly the answers missing;
* every feedback acknowledged with 200 is in the database at the end; feedback about a card whose audit
  was lost is refused 404 (the card is not known), never stored against nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from fhir_fixtures import as_of_today as scenario
from tests.support.feedback import accepted
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.live

SECRET = "faults-database-test-secret-0123456789"
SELECT = "/cds-services/naltrexone-order-select"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
BUSY_TIMEOUT_S = 5.0
"""The store's statement, lock and (SQLite) busy timeout."""
REQUEST_WAIT_S = 1.0
"""How long a write a request waits on (an answer's audit, feedback) waits for a locked SQLite file."""
MARGIN_S = 0.5


# ------------------------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Call:
    kind: Literal["hook", "fresh", "late"]
    """A hook call; feedback about the card just answered (fresh) or about an earlier one (late)."""
    started: float
    ended: float
    status: int
    cards: tuple[str, ...]
    """hook: the uuids of the cards answered; feedback: the card it is about."""
    retry_after: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Traffic:
    """``clients`` threads calling the hook and sending feedback about the card just answered, and one more
    sending feedback about earlier cards (``earlier``: answered before the traffic starts, so audited),
    each in turn, until stopped."""

    def __init__(self, server: LiveServer, earlier: Sequence[dict[str, Any]], clients: int = 2) -> None:
        self.server = server
        self.earlier = earlier
        self.calls: list[Call] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._fresh, daemon=True) for _ in range(clients)]
        self._threads.append(threading.Thread(target=self._late, daemon=True))

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self._threads), "a client hangs"

    def _fresh(self) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=30) as http:
                while not self._stop.is_set():
                    started = time.monotonic()
                    answer = http.post(SELECT, json=scenario("test-dose"))
                    ended = time.monotonic()
                    cards = answer.json()["cards"] if answer.status_code == 200 else []
                    uuids = tuple(card["uuid"] for card in cards)
                    self.calls.append(Call("hook", started, ended, answer.status_code, uuids))
                    if cards:
                        self._feedback(http, cards[0], "fresh")
        except BaseException as exc:  # a client that dies must fail the test, not go quiet
            self.errors.append(exc)

    def _late(self) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=30) as http:
                while not self._stop.is_set():
                    for card in self.earlier:
                        self._feedback(http, card, "late")
                        if self._stop.wait(0.02):
                            return
        except BaseException as exc:
            self.errors.append(exc)

    def _feedback(self, http: httpx.Client, card: dict[str, Any], kind: Literal["fresh", "late"]) -> None:
        started = time.monotonic()
        response = http.post(SELECT + "/feedback", json={"feedback": [accepted(card)]})
        ended = time.monotonic()
        retry_after = response.headers.get("Retry-After")
        self.calls.append(Call(kind, started, ended, response.status_code, (card["uuid"],), retry_after))

    def between(self, start: float, end: float, *kinds: str) -> list[Call]:
        """The calls of ``kinds`` made wholly within [start, end]."""
        return [c for c in self.calls if c.kind in kinds and c.started >= start and c.ended <= end]

    def wait_for(self, count: int, kind: str = "fresh", timeout: float = 20.0) -> None:
        """Until ``count`` more calls of ``kind`` have ended."""
        target = sum(c.kind == kind for c in self.calls) + count
        deadline = time.monotonic() + timeout
        while sum(c.kind == kind for c in self.calls) < target and time.monotonic() < deadline:
            assert not self.errors, self.errors
            time.sleep(0.02)


def issue_cards(server: LiveServer, count: int) -> list[dict[str, Any]]:
    """Cards answered (and audited) before the fault: what the late feedback is about."""
    with server.client() as http:
        answers = [http.post(SELECT, json=scenario("test-dose")) for _ in range(count)]
    assert {a.status_code for a in answers} == {200}
    return [a.json()["cards"][0] for a in answers]


# ------------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class Held:
    cards: set[str]
    feedback: Counter[str]  # feedback rows per card uuid


def held(url: str) -> Held:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            cards = set(conn.execute(text("SELECT card_uuid FROM issued_card")).scalars())
            feedback = Counter(conn.execute(text("SELECT card_uuid FROM card_feedback")).scalars())
    finally:
        engine.dispose()
    return Held(cards, feedback)


def health(server: LiveServer) -> dict[str, Any]:
    """``/health``, with the time it took as ``seconds``."""
    started = time.monotonic()
    with server.client() as http:
        body: dict[str, Any] = http.get("/health").json()
    return {**body, "seconds": time.monotonic() - started}


def assert_consistent(traffic: Traffic, stored: Held, audit_gaps: int, log: str) -> list[Call]:
    """Every answer 200 and either wholly audited or a counted gap; every feedback acknowledged with 200
    stored, and nothing stored that was not sent; every refusal a 503 with Retry-After (the database) or
    a 404 (a card whose audit was lost). Returns the answers missing from the audit trail."""
    assert not traffic.errors, traffic.errors
    hooks = [c for c in traffic.calls if c.kind == "hook"]
    feedback = [c for c in traffic.calls if c.kind != "hook"]
    assert hooks and {c.status for c in hooks} == {200}
    assert all(c.cards for c in hooks)
    for call in hooks:
        present = [uuid in stored.cards for uuid in call.cards]
        assert all(present) or not any(present), f"an answer half in the audit trail: {call}"
    lost = [c for c in hooks if c.cards[0] not in stored.cards]
    assert len(lost) == audit_gaps, (
        f"{len(lost)} answers missing from the audit trail, {audit_gaps} gaps counted"
    )
    assert log.count("audit gap: cards were returned but could not be recorded") == audit_gaps
    assert {c.status for c in feedback} <= {200, 503, 404}, Counter(c.status for c in feedback)
    for call in feedback:
        if call.status == 503:
            assert call.retry_after is not None and int(call.retry_after) > 0
        if call.status == 404:
            assert call.cards[0] not in stored.cards, f"feedback about an audited card refused: {call}"
    acknowledged = Counter(c.cards[0] for c in feedback if c.status == 200)
    refused = Counter(c.cards[0] for c in feedback if c.status == 503)
    for card in acknowledged.keys() | stored.feedback.keys():
        assert acknowledged[card] <= stored.feedback[card], f"acknowledged feedback lost for card {card}"
        assert stored.feedback[card] <= acknowledged[card] + refused[card], f"feedback never sent: {card}"
    assert "Traceback" not in log
    return lost


def measured(label: str, calls: Sequence[Call]) -> str:
    if not calls:
        return f"{label}: none"
    seconds = sorted(c.seconds for c in calls)
    statuses = sorted({c.status for c in calls})
    return (
        f"{label}: {len(calls)} x {statuses}, {seconds[0] * 1000:.0f}-{seconds[-1] * 1000:.0f} ms"
        f" (median {seconds[len(seconds) // 2] * 1000:.0f})"
    )


def metric(port: int, name: str) -> float:
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(page) for s in f.samples if s.name == name)


# ---------------------------------------------------------------------------------------- PostgreSQL


class Cluster:
    """A PostgreSQL cluster of the test's own: initdb in a temporary directory, trust authentication, a
    free port, its socket in its own directory. Never the shared server."""

    def __init__(self) -> None:
        # under /tmp, not pytest's 0700 directory: the server runs as the postgres user when we are root
        self.root = Path(tempfile.mkdtemp(prefix="naltrexone-cds-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.user = "postgres"
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.running = False

    def _pg(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(PG_BIN / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{tool} failed:\n{result.stdout}\n{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Outage:
    moments: tuple[float, float, float, float, float]
    """When the fault began and was in place, when the repair began and was done, and when traffic ended."""
    health: dict[str, Any]
    """What /health said during the fault."""


def through_an_outage(
    traffic: Traffic,
    server: LiveServer,
    breaks: Callable[[], object],
    repairs: Callable[[], object],
    calls: int,
) -> Outage:
    """``calls`` calls of traffic, the fault for 3 s, the repair, then ``calls`` more."""
    traffic.wait_for(calls)
    breaking = time.monotonic()
    breaks()
    broken = time.monotonic()
    time.sleep(3.0)
    during = health(server)
    repairing = time.monotonic()
    repairs()
    repaired = time.monotonic()
    traffic.wait_for(calls)
    return Outage((breaking, broken, repairing, repaired, time.monotonic()), during)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.destroy()


def test_postgresql_stopped_and_started_again_under_traffic(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.create_database("audit")
    metrics_port = free_port()
    server = LiveServer(
        tmp_path / "server.log",
        env={
            "NALTREXONE_CDS_DATABASE_URL": url,
            "NALTREXONE_CDS_AUDIT_SECRET": SECRET,
            "NALTREXONE_CDS_METRICS_PORT": str(metrics_port),
            "NALTREXONE_CDS_METRICS_DIR": str(tmp_path / "metrics"),
        },
        workers=2,
    )
    try:
        with Traffic(server, issue_cards(server, 20)) as traffic:
            outage = through_an_outage(traffic, server, cluster.stop, cluster.start, calls=20)
        stopping, stopped, starting, started, ended = outage.moments
        during = outage.health
        after = health(server)
        failures_counted = metric(metrics_port, "naltrexone_cds_audit_write_failures_total")
    finally:
        server.stop()
    stored = held(url)
    lost = assert_consistent(traffic, stored, after["audit_gaps"], server.logs())

    before = traffic.between(0, stopping, "hook")
    down_hooks = traffic.between(stopped, starting, "hook")
    down_feedback = traffic.between(stopped, starting, "fresh", "late")
    up_hooks = traffic.between(started, ended, "hook")
    up_feedback = traffic.between(started, ended, "late")
    print(
        f"\nPostgreSQL stop {(stopped - stopping) * 1000:.0f} ms, start {(started - starting) * 1000:.0f} ms;"
        f"\n  {measured('hooks before', before)}\n  {measured('hooks while down', down_hooks)}"
        f"\n  {measured('feedback while down', down_feedback)}"
        f"\n  {measured('hooks after', up_hooks)}"
        f"\n  {measured('feedback (earlier cards) after', up_feedback)}"
        f"\n  audit gaps {after['audit_gaps']}, metric {failures_counted:.0f}; {len(traffic.calls)} calls"
    )
    assert during["database"] == "unavailable"
    assert after["database"] == "ok"
    assert all(c not in lost for c in before)  # the cards issued while it was up are there
    assert len(down_hooks) >= 5 and all(c in lost for c in down_hooks)
    assert all(c.seconds < MARGIN_S for c in down_hooks), measured("hooks while down", down_hooks)
    assert len(down_feedback) >= 5 and {c.status for c in down_feedback} == {503}
    # the pool reconnects at the first call after the restart: nothing lost, no feedback refused
    assert up_hooks and all(c not in lost for c in up_hooks)
    assert up_feedback and {c.status for c in up_feedback} == {200}
    assert failures_counted == after["audit_gaps"] >= len(down_hooks)


# -------------------------------------------------------------------------------------------- SQLite


def sqlite_server(database: Path, log: Path) -> tuple[LiveServer, str]:
    url = f"sqlite:///{database}"
    env = {"NALTREXONE_CDS_DATABASE_URL": url, "NALTREXONE_CDS_AUDIT_SECRET": SECRET}
    return LiveServer(log, env=env, workers=2), url


@contextlib.contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on the file until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "db.execute('ROLLBACK')\n",
            str(database),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()


def test_sqlite_write_locked_by_another_process(tmp_path: Path) -> None:
    database = tmp_path / "audit.sqlite3"
    server, url = sqlite_server(database, tmp_path / "server.log")
    try:
        with Traffic(server, issue_cards(server, 20)) as traffic:
            traffic.wait_for(10)
            with write_locked(database):
                locked = time.monotonic()
                time.sleep(BUSY_TIMEOUT_S + 1.0)  # longer than any write waits for the lock
                during = health(server)
                unlocking = time.monotonic()
            unlocked = time.monotonic()
            traffic.wait_for(10)
            ended = time.monotonic()
        after = health(server)
    finally:
        server.stop()
    stored = held(url)
    lost = assert_consistent(traffic, stored, after["audit_gaps"], server.logs())

    locked_hooks = traffic.between(locked, unlocking, "hook")
    locked_feedback = traffic.between(locked, unlocking, "fresh", "late")
    after_hooks = traffic.between(unlocked, ended, "hook")
    after_feedback = traffic.between(unlocked, ended, "late")
    print(
        f"\nSQLite write-locked {unlocking - locked:.1f} s (/health took {during['seconds'] * 1000:.0f} ms):"
        f"\n  {measured('hooks while locked', locked_hooks)}"
        f"\n  {measured('feedback while locked', locked_feedback)}"
        f"\n  {measured('hooks after', after_hooks)}"
        f"\n  {measured('feedback (earlier cards) after', after_feedback)}"
        f"\n  audit gaps {after['audit_gaps']}; {len(traffic.calls)} calls"
    )
    assert during["database"] == "ok"  # WAL: readers are not blocked by a writer
    assert during["seconds"] < 2 * REQUEST_WAIT_S + MARGIN_S  # nor is /health stuck behind the workers
    assert len(locked_hooks) >= 3 and all(c in lost for c in locked_hooks)
    # a write waits at most REQUEST_WAIT_S, then the answer goes out with the gap counted, or feedback is a
    # 503; a call may first queue behind another call's wait (three clients, two sync workers)
    assert all(c.seconds < 2 * REQUEST_WAIT_S + MARGIN_S for c in locked_hooks), measured("", locked_hooks)
    assert locked_feedback and {c.status for c in locked_feedback} == {503}
    assert all(c.seconds < 2 * REQUEST_WAIT_S + MARGIN_S for c in locked_feedback)  # a 503, not a hang
    assert after_hooks and all(c not in lost for c in after_hooks)
    assert after_feedback and {c.status for c in after_feedback} == {200}


# ----------------------------------------------------------------------------------------- disk full


def mount_small_disk(where: Path, size: str) -> None:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        # the development and CI machines run the suite as root; elsewhere this says why, never skips
        pytest.fail(
            "a full disk is simulated on a tmpfs mount, which this process may not make (run the suite as "
            f"root, as CI does): {done.stderr}"
        )


def fill(disk: Path) -> Path:
    """Writes a file until the disk is full; returns it."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with filler.open("ab", buffering=0) as handle:  # and the last bytes
        try:
            while True:
                handle.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_sqlite_on_a_full_disk(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    mount_small_disk(disk, "16m")
    try:
        server, url = sqlite_server(disk / "audit.sqlite3", tmp_path / "server.log")
        try:
            with Traffic(server, issue_cards(server, 20)) as traffic:
                outage = through_an_outage(
                    traffic, server, lambda: fill(disk), lambda: (disk / "filler").unlink(), calls=10
                )
            filling, full, freeing, freed, ended = outage.moments
            during = outage.health
            after = health(server)
        finally:
            server.stop()
        stored = held(url)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    lost = assert_consistent(traffic, stored, after["audit_gaps"], server.logs())

    full_hooks = traffic.between(full, freeing, "hook")
    full_late = traffic.between(full, freeing, "late")
    full_fresh = traffic.between(full, freeing, "fresh")
    after_hooks = traffic.between(freed, ended, "hook")
    after_feedback = traffic.between(freed, ended, "late")
    print(
        f"\nSQLite on a full disk {freeing - full:.1f} s (filled in {(full - filling) * 1000:.0f} ms;"
        f" /health said {during['database']!r}):"
        f"\n  {measured('hooks while full', full_hooks)}"
        f"\n  {measured('feedback about earlier cards while full', full_late)}"
        f"\n  {measured('feedback about cards answered while full', full_fresh)}"
        f"\n  {measured('hooks after', after_hooks)}"
        f"\n  {measured('feedback (earlier cards) after', after_feedback)}"
        f"\n  audit gaps {after['audit_gaps']}; {len(traffic.calls)} calls"
    )
    assert len(full_hooks) >= 5 and all(c in lost for c in full_hooks)
    assert all(c.seconds < MARGIN_S for c in full_hooks), measured("hooks while full", full_hooks)
    # feedback about an audited card cannot be written: 503; a card whose audit the full disk lost is
    # unknown to the service (the read still works): its feedback is refused 404, for good
    assert len(full_late) >= 5 and {c.status for c in full_late} == {503}
    assert full_fresh and all(c.status == (503 if c.cards[0] in stored.cards else 404) for c in full_fresh)
    assert after_hooks and all(c not in lost for c in after_hooks)
    assert after_feedback and {c.status for c in after_feedback} == {200}
