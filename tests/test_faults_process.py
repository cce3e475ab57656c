"""Process faults against the real ``naltrexone-cds serve`` (gunicorn, sync workers), each with a measured
outcome: a worker SIGKILLed mid-request, SIGTERM under load, the whole server SIGKILLed right after feedback
was acknowledged, and a fault inside durable-rules in one worker.

Every server here has its own SQLite audit file. Numbers worth keeping are printed (``pytest -s`` shows
them) and asserted against bounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cds_service.store import sqlite_url
from fhir_fixtures import as_of_today
from tests.support.feedback import accepted
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

SELECT = "/cds-services/naltrexone-order-select"
GRACEFUL_TIMEOUT = 10.0  # server.py: gunicorn's graceful_timeout


# ----------------------------------------------------------------------------------------------- helpers


def audited_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"NALTREXONE_CDS_DATABASE_URL": sqlite_url(tmp_path / "audit.sqlite3"), **extra}


def workers_of(master: int) -> set[int]:
    """The gunicorn master's children (its workers: no metrics exporter or other child runs here)."""
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False)
    return {int(pid) for pid in found.stdout.split()}


def wait_for_workers(master: int, count: int, timeout: float, exclude: Collection[int] = ()) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = workers_of(master)
        if len(pids) == count and not pids & set(exclude):
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"master {master} has workers {pids}, wanted {count} not in {exclude}")
        time.sleep(0.02)


def group_gone(group: int, timeout: float = 5.0) -> bool:
    """Whether no process of ``group`` is left (killed workers are reaped by init: it may take a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def socket_owner(local_port: int, remote_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP socket ``local_port -> remote_port`` (via /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == local_port
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


def classify(error: httpx.HTTPError) -> str:
    """What a client saw instead of an answer."""
    if isinstance(error, httpx.ConnectError):
        return "refused" if "refused" in str(error).lower() else f"connect: {error}"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "reset"  # the connection was closed or reset before an answer
    return type(error).__name__


def no_keepalive_client(timeout: float = 30.0) -> httpx.Client:
    """A client that opens a new connection per request (what sync workers do anyway)."""
    return httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))


def card_view(cards: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a clinician reads of the cards (uuids vary per call)."""
    return sorted(
        (
            card["source"]["topic"]["code"],
            card["indicator"],
            card["summary"],
            card.get("detail"),
            tuple(s["label"] for s in card.get("suggestions", ())),
        )
        for card in cards
    )


def rule_ids(response: httpx.Response) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in response.json()["cards"])


# ------------------------------------------------------------------------------ a FHIR server that holds


class _HoldingHandler(BaseHTTPRequestHandler):
    server: HoldingFhirServer

    def do_GET(self) -> None:
        server = self.server
        url = urlsplit(self.path)
        patient = parse_qs(url.query).get("patient", [""])[0] or url.path.rsplit("/", 1)[-1]
        release = server.release  # the event of the phase this query arrived in
        with server.lock:
            server.queries.append((patient, self.client_address[1]))
            server.held[self.client_address[1]] = (patient, time.monotonic())
        server.arrived.set()
        try:
            release.wait(server.hold)
            if "/Patient/" in url.path:
                body: dict[str, Any] = {"resourceType": "Patient", "id": patient}
            else:
                body = {"resourceType": "Bundle", "type": "searchset", "total": 0}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the worker that asked is gone
        finally:
            with server.lock:
                server.held.pop(self.client_address[1], None)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class HoldingFhirServer(ThreadingHTTPServer):
    """A FHIR server that holds every query for ``hold`` seconds (or until ``release`` is set), then answers
    an empty searchset (or the Patient read). It knows which patients' queries it is holding, and from which
    client port: so which worker is busy, and on which request."""

    daemon_threads = True

    def __init__(self, hold: float) -> None:
        super().__init__(("127.0.0.1", 0), _HoldingHandler)
        self.hold = hold
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.lock = threading.Lock()
        self.held: dict[int, tuple[str, float]] = {}  # client port -> (patient id, arrival)
        self.queries: list[tuple[str, int]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def held_patients(self, younger_than: float = float("inf")) -> set[str]:
        """The patients whose queries are held now (and arrived less than ``younger_than`` seconds ago)."""
        now = time.monotonic()
        with self.lock:
            return {patient for patient, arrived in self.held.values() if now - arrived < younger_than}

    def ports_of(self, patient: str) -> list[int]:
        with self.lock:
            return [port for p, port in self.queries if p == patient]

    def next_phase(self, hold: float) -> None:
        """Lets every held query go and holds the next ones for ``hold`` seconds."""
        old = self.release
        self.release = threading.Event()
        self.hold = hold
        self.arrived.clear()
        old.set()

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def holding_fhir_server(hold: float) -> Iterator[HoldingFhirServer]:
    server = HoldingFhirServer(hold)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def running(server: LiveServer) -> Iterator[LiveServer]:
    try:
        yield server
    finally:
        server.stop()


def fetching_request(
    patient: str, fhir: HoldingFhirServer, *, keys: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The test-dose scenario for ``patient``, with ``keys`` (default: all) of its prefetch left out, so the
    service fetches them from ``fhir``."""
    body = as_of_today("test-dose", patient_id=patient)
    for key in list(body["prefetch"]) if keys is None else keys:
        del body["prefetch"][key]
    body["fhirServer"] = fhir.url
    return body


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None = None
    error: str | None = None
    rule_ids: list[str] = field(default_factory=list)


def post(http: httpx.Client, url: str, body: dict[str, Any], **headers: str) -> Outcome:
    started = time.monotonic()
    try:
        response = http.post(url, json=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(started, time.monotonic(), error=classify(error))
    outcome = Outcome(started, time.monotonic(), status=response.status_code)
    if response.status_code == 200:
        outcome.rule_ids = rule_ids(response)
    return outcome


class Load:
    """``threads`` clients, each posting ``make(n)`` in a loop until stopped; every outcome kept."""

    def __init__(self, url: str, threads: int, make: Callable[[str], dict[str, Any]]) -> None:
        self.url = url
        self.make = make
        self.outcomes: dict[str, Outcome] = {}  # by the request's patient id
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        try:
            with no_keepalive_client() as http:
                n = 0
                while not self.stop.is_set():
                    patient = f"load-{index}-{n}"
                    n += 1
                    outcome = post(http, self.url, self.make(patient))
                    with self._lock:
                        self.outcomes[patient] = outcome
                    if outcome.error == "refused":
                        time.sleep(0.01)
        except Exception as error:  # a thread must not die silently
            self.failures.append(repr(error))

    def snapshot(self) -> dict[str, Outcome]:
        with self._lock:
            return dict(self.outcomes)


# ------------------------------------------------------------------- 1. a worker SIGKILLed mid-request


def test_a_worker_killed_in_the_middle_of_a_request(tmp_path: Path) -> None:
    with (
        holding_fhir_server(hold=9.0) as fhir,
        running(
            LiveServer(
                tmp_path / "server.log",
                env=audited_env(tmp_path, NALTREXONE_CDS_FHIR_BUDGET_MS="8000"),
                workers=2,
            )
        ) as server,
    ):
        master = server.process.pid
        workers = wait_for_workers(master, 2, timeout=10)
        url = server.url + SELECT
        with no_keepalive_client() as http:
            calibration = http.post(url, json=as_of_today("test-dose"))
        assert calibration.status_code == 200
        expected = rule_ids(calibration)

        # the slow request: no prefetch, a fhirServer that holds every query for 9 s (budget 8 s)
        slow: list[Outcome] = []

        def send_slow() -> None:
            with no_keepalive_client() as client:
                slow.append(post(client, url, fetching_request("slow-victim", fhir)))

        slow_thread = threading.Thread(target=send_slow, daemon=True)
        slow_thread.start()
        assert fhir.arrived.wait(10), "the slow request never reached the FHIR server"
        victim = socket_owner(fhir.ports_of("slow-victim")[0], fhir.port, workers)
        assert victim in workers, f"no worker holds the FHIR connection ({workers})"
        (survivor,) = workers - {victim}

        # while the victim is busy, the other worker answers; and keeps answering through the kill
        beside: list[Outcome] = []
        stop = threading.Event()

        def send_beside() -> None:
            with no_keepalive_client() as client:
                while not stop.is_set():
                    beside.append(post(client, url, as_of_today("test-dose")))

        beside_thread = threading.Thread(target=send_beside, daemon=True)
        beside_thread.start()
        time.sleep(0.5)
        answered_before_kill = len(beside)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        slow_thread.join(timeout=15)
        assert slow, "the in-flight request hung"
        (victim_outcome,) = slow
        error_after = victim_outcome.ended - killed
        replaced = wait_for_workers(master, 2, timeout=10, exclude={victim})
        replaced_after = time.monotonic() - killed
        (replacement,) = replaced - {survivor}
        time.sleep(0.3)
        stop.set()
        beside_thread.join(timeout=10)
        fhir.next_phase(hold=1.5)

        # both workers, the replacement among them, serve: two slow requests at once take one hold
        pair: list[Outcome] = []

        def send_one(patient: str) -> None:
            with no_keepalive_client() as client:
                pair.append(post(client, url, fetching_request(patient, fhir)))

        started = time.monotonic()
        pair_threads = [
            threading.Thread(target=send_one, args=(p,), daemon=True) for p in ("after-a", "after-b")
        ]
        for thread in pair_threads:
            thread.start()
        deadline = time.monotonic() + 5
        while fhir.held_patients() != {"after-a", "after-b"} and time.monotonic() < deadline:
            time.sleep(0.01)
        serving = {socket_owner(fhir.ports_of(p)[0], fhir.port, replaced) for p in ("after-a", "after-b")}
        for thread in pair_threads:
            thread.join(timeout=15)
        pair_seconds = time.monotonic() - started
        with no_keepalive_client() as http:
            later = [post(http, url, as_of_today("test-dose")) for _ in range(10)]
        logs = server.logs()

    print(
        f"\nworker SIGKILL: in-flight request failed after {error_after * 1000:.0f} ms with "
        f"{victim_outcome.error!r}; replaced after {replaced_after * 1000:.0f} ms; {len(beside)} requests "
        f"beside ({answered_before_kill} before the kill): {Counter(o.status for o in beside)}; two slow "
        f"requests at once took {pair_seconds:.2f} s (hold 1.5 s) on workers {serving}"
    )
    assert victim_outcome.status is None and victim_outcome.error == "reset", victim_outcome
    assert error_after < 2.0, f"the in-flight request took {error_after:.1f} s to fail after the kill"
    assert answered_before_kill >= 1 and beside and all(o.status == 200 for o in beside), beside
    assert all(o.rule_ids == expected for o in beside)
    assert replaced_after < 5.0
    assert replacement not in workers and f"Worker (pid:{victim}) was sent SIGKILL" in logs
    assert serving == {survivor, replacement}
    # one after the other they would take at least 3.0 s (two 1.5 s holds); a stalled machine adds time
    assert [o.status for o in pair] == [200, 200] and pair_seconds < 2.95
    assert all(o.status == 200 and o.rule_ids == expected for o in later)


# ------------------------------------------------------------------------------ 2. SIGTERM under load


@pytest.mark.parametrize("target", ["master", "group"])
def test_sigterm_under_load_finishes_what_is_in_flight(tmp_path: Path, target: str) -> None:
    """SIGTERM to the master (Kubernetes: PID 1) or to the whole process group (systemd's default)."""
    with (
        holding_fhir_server(hold=0.5) as fhir,
        running(
            LiveServer(
                tmp_path / "server.log",
                env=audited_env(tmp_path, NALTREXONE_CDS_FHIR_BUDGET_MS="3000"),
                workers=2,
            )
        ) as server,
    ):
        master = server.process.pid
        workers = wait_for_workers(master, 2, timeout=10)
        url = server.url + SELECT

        def make(patient: str) -> dict[str, Any]:
            return fetching_request(patient, fhir, keys=("procedures",))

        with no_keepalive_client() as http:
            calibration = http.post(url, json=make("calibration"))
        assert calibration.status_code == 200 and fhir.ports_of("calibration"), "procedures were not fetched"
        expected = rule_ids(calibration)

        with Load(url, threads=4, make=make) as load:
            # steady state: answers coming back, and both workers in the middle of one
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                done = [o for o in load.snapshot().values() if o.status == 200]
                # both held for at most 0.3 s of 0.5: each has 0.2 s of work left at the signal
                if len(done) >= 6 and len(fhir.held_patients(younger_than=0.3)) == 2:
                    break
                time.sleep(0.005)
            in_flight = fhir.held_patients(younger_than=0.3)
            terminated = time.monotonic()
            if target == "master":
                os.kill(master, signal.SIGTERM)
            else:
                os.killpg(master, signal.SIGTERM)
            assert len(in_flight) == 2, f"load never reached both workers: {load.snapshot()}"
            server.process.wait(timeout=GRACEFUL_TIMEOUT + 5)
            exited = time.monotonic()
            time.sleep(1.0)  # the clients keep trying after the exit
        outcomes = load.snapshot()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        assert group_gone(master), "a worker outlived the master"

    assert not load.failures, load.failures
    exit_seconds = exited - terminated
    statuses = Counter(o.status for o in outcomes.values() if o.status is not None)
    errors = Counter(o.error for o in outcomes.values() if o.error is not None)
    started_after_exit = [o for o in outcomes.values() if o.started > exited]
    reset_started_after_term = [o for o in outcomes.values() if o.error == "reset" and o.started > terminated]
    print(
        f"\nSIGTERM to the {target}: {len(outcomes)} requests, answers {dict(statuses)}, "
        f"errors {dict(errors)}; "
        f"in flight at the signal: {sorted(in_flight)} -> {[outcomes[p].status for p in sorted(in_flight)]}; "
        f"master exited after {exit_seconds * 1000:.0f} ms (workers {sorted(workers)}); "
        f"{len(started_after_exit)} requests started after the exit: "
        f"{dict(Counter(o.error for o in started_after_exit))}; "
        f"{len(reset_started_after_term)} connected between the signal and the exit and were reset unanswered"
    )
    assert set(statuses) == {200}, f"an answer other than 200: {statuses}"
    assert all(o.rule_ids == expected for o in outcomes.values() if o.status == 200)
    for patient in in_flight:
        assert outcomes[patient].status == 200, f"{patient} was in flight at SIGTERM: {outcomes[patient]}"
        assert outcomes[patient].ended > terminated + 0.15  # it really was finished after the signal
    assert set(errors) <= {"reset", "refused"}, errors
    assert exit_seconds < GRACEFUL_TIMEOUT + 2
    assert started_after_exit and all(o.error == "refused" for o in started_after_exit)
    # a reset only for connections the kernel took before the last worker closed the listening socket
    assert all(o.started < exited for o in outcomes.values() if o.error == "reset")


# ------------------------------------------- 3. feedback acknowledged, then the whole server SIGKILLed


def test_feedback_acknowledged_before_a_sigkill_of_the_whole_server_is_kept(tmp_path: Path) -> None:
    env = audited_env(tmp_path)
    database = tmp_path / "audit.sqlite3"
    acknowledged: list[str] = []
    acknowledged_at: list[float] = []  # when the wanted-th acknowledgement arrived
    issued_uuids: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    wanted, offered = 50, 64
    server = LiveServer(tmp_path / "first.log", env=env, workers=2)
    try:
        url = server.url + SELECT
        cards: list[dict[str, Any]] = []
        with no_keepalive_client() as http:
            for _ in range(offered):
                response = http.post(url, json=as_of_today("test-dose"))
                assert response.status_code == 200
                cards.extend(response.json()["cards"])
        issued_uuids.extend(card["uuid"] for card in cards)
        queue = list(cards)
        late_cards: list[str] = []  # cards answered while the feedback is coming in, up to the kill

        def give_feedback() -> None:
            with contextlib.suppress(httpx.HTTPError), no_keepalive_client() as client:
                while True:
                    with lock:
                        if not queue or enough.is_set():
                            return
                        card = queue.pop()
                    response = client.post(url + "/feedback", json={"feedback": [accepted(card)]})
                    if response.status_code == 200 and response.json() == {"recorded": 1, "duplicates": 0}:
                        with lock:
                            acknowledged.append(card["uuid"])
                            if len(acknowledged) == wanted:
                                acknowledged_at.append(time.monotonic())
                                enough.set()

        def issue_cards() -> None:
            with contextlib.suppress(httpx.HTTPError), no_keepalive_client() as client:
                while not enough.is_set():
                    response = client.post(url, json=as_of_today("test-dose"))
                    if response.status_code == 200:
                        with lock:
                            late_cards.extend(card["uuid"] for card in response.json()["cards"])

        threads = [threading.Thread(target=give_feedback, daemon=True) for _ in range(4)]
        threads.append(threading.Thread(target=issue_cards, daemon=True))
        for thread in threads:
            thread.start()
        assert enough.wait(30), f"only {len(acknowledged)} feedback items acknowledged"
        os.killpg(server.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        with lock:
            acknowledged_at_kill = list(acknowledged)
            cards_at_kill = list(late_cards)
        server.process.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        server.stop()
    assert group_gone(server.process.pid)

    restarted = LiveServer(tmp_path / "second.log", env=env, workers=2)
    try:
        with no_keepalive_client() as http:
            health = http.get(restarted.url + "/health").json()
        restart_seconds = time.monotonic() - killed
    finally:
        restarted.stop()
    report = subprocess.run(
        [str(Path(sys.executable).with_name("naltrexone-cds")), "report", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(report.stdout)
    with contextlib.closing(sqlite3.connect(database)) as db:
        feedback = {uuid for (uuid,) in db.execute("SELECT card_uuid FROM card_feedback")}
        issued = {uuid for (uuid,) in db.execute("SELECT card_uuid FROM issued_card")}
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]

    print(
        f"\nSIGKILL after feedback: {len(acknowledged_at_kill)} items acknowledged at the kill "
        f"({(killed - acknowledged_at[0]) * 1000:.1f} ms after the {wanted}th), "
        f"{len(feedback)} feedback rows after the restart ({len(feedback - set(acknowledged_at_kill))} "
        f"recorded but unacknowledged); {len(cards_at_kill)} cards answered during the feedback, "
        f"{len(set(cards_at_kill) - issued)} missing; restart to /health in {restart_seconds:.1f} s; "
        f"report: {rows}"
    )
    assert health["database"] == "ok"
    assert integrity == "ok"
    assert len(acknowledged_at_kill) >= wanted
    assert set(acknowledged_at_kill) <= feedback, "acknowledged feedback was lost"
    assert set(issued_uuids) | set(cards_at_kill) <= issued, "answered cards are missing from the audit"
    (test_dose,) = [row for row in rows if row["rule_id"] == "test-dose"]
    assert test_dose["accepted"] == len(feedback) >= wanted


# ------------------------------------------------------------- 4. a fault inside durable-rules, in one worker

FAULT_HEADER = "X-Test-Durable-Fault"
SITECUSTOMIZE = '''
"""Test-only (tests/test_faults_process.py): on the server's PYTHONPATH, never installed.

In the gunicorn workers only (not in the master, whose pid is taken here at start-up), wraps the C calls
durable-rules makes to assert a fact and delete a session, so that a request carrying the header
X-Test-Durable-Fault fails inside durable-rules:

* ``before-first``: the request's first assertion raises before reaching the engine;
* ``after-every``: every assertion of the request is made, then raises (the engine's state changed, and
  no action ran: the session cannot be closed safely).

Each worker writes its counts to ``$ENGINE_FAULT_STATS/<pid>.json``: faulted requests by kind, the
sessions asserted into and not deleted (left behind), and the clean evaluations after its first fault.
"""
import json
import os

MASTER = os.getpid()
STATS = os.environ["ENGINE_FAULT_STATS"]


def _install():
    import durable_rules_engine as engine  # the C extension durable.engine calls

    real_assert, real_delete = engine.assert_fact, engine.delete_state
    live = set()
    counts = {"faulted": {}, "clean_after_fault": 0, "live_sessions": 0}

    def write():
        counts["live_sessions"] = len(live)
        path = os.path.join(STATS, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(counts, handle)
        os.replace(path + ".tmp", path)

    def request_fault():
        """The fault the current request asks for, and whether this is its first assertion."""
        if os.getpid() == MASTER:
            return None, False
        from flask import g, has_request_context, request

        if not has_request_context():
            return None, False
        g.durable_calls = g.get("durable_calls", 0) + 1
        return request.headers.get("X-Test-Durable-Fault"), g.durable_calls == 1

    def fault(kind, first):
        if first:
            counts["faulted"][kind] = counts["faulted"].get(kind, 0) + 1
        write()
        raise RuntimeError("injected durable-rules fault: " + kind)

    def assert_fact(handle, payload):
        kind, first = request_fault()
        if kind == "before-first" and first:
            fault(kind, first)
        result = real_assert(handle, payload)  # the session's state exists from here on
        live.add(json.loads(payload)["sid"])
        if kind == "after-every":
            fault(kind, first)
        return result

    def delete_state(handle, sid):
        real_delete(handle, sid)
        live.discard(sid)
        if os.getpid() != MASTER:
            from flask import has_request_context, request

            if counts["faulted"] and has_request_context():
                if not request.headers.get("X-Test-Durable-Fault"):
                    counts["clean_after_fault"] += 1
            write()

    engine.assert_fact = assert_fact
    engine.delete_state = delete_state


_install()
'''

SCENARIOS = (
    "test-dose",
    "opioid-active-methadone-statement",
    "ldn-recent-opioid",
    "near-miss-injection-restart-after-a-lapse",
    "continuation-oral-refill",  # reviewed, no rule matches: the engine's "init" path
)


def engine_stats(directory: Path) -> dict[int, dict[str, Any]]:
    return {int(path.stem): json.loads(path.read_text()) for path in directory.glob("*.json")}


def assert_clean_500(response: httpx.Response) -> None:
    """The documented answer to an unexpected error: a 500 OperationOutcome naming an incident, nothing
    of the failure itself."""
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"] == "application/json"
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "exception"
    assert outcome["issue"][0]["diagnostics"].startswith("internal error; reported as incident ")
    for leak in ("Traceback", "RuntimeError", "injected", "durable", 'File "'):
        assert leak not in response.text


def test_a_fault_inside_durable_rules_fails_only_its_request(tmp_path: Path) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    path = os.pathsep.join(p for p in (str(inject), os.environ.get("PYTHONPATH", "")) if p)
    env = audited_env(tmp_path, PYTHONPATH=path, ENGINE_FAULT_STATS=str(stats_dir))
    recoverable, unclosable = 150, 30
    wrong: list[tuple[str, int, str]] = []
    with running(LiveServer(tmp_path / "server.log", env=env, workers=2)) as server:
        master = server.process.pid
        started_with = wait_for_workers(master, 2, timeout=10)
        url = server.url + SELECT
        with no_keepalive_client() as http:

            def cards(name: str, fault: str | None = None) -> httpx.Response:
                return http.post(url, json=as_of_today(name), headers={FAULT_HEADER: fault} if fault else {})

            # A fresh worker's very first evaluation fails and leaves a session it cannot close: deleting
            # it there would free uninitialised pointers (SIGSEGV, no answer at all).
            assert_clean_500(cards("test-dose", "after-every"))
            (first_victim,) = engine_stats(stats_dir)
            workers = wait_for_workers(master, 2, timeout=10, exclude={first_victim})

            baseline = {name: card_view(cards(name).json()["cards"]) for name in SCENARIOS}
            assert [len(baseline[name]) for name in SCENARIOS] == [1, 1, 2, 2, 0]
            for n in range(100):  # warm-up: allocator pools at their working size in both workers
                assert cards(SCENARIOS[n % len(SCENARIOS)]).status_code == 200
            rss_before = {pid: rss_kib(pid) for pid in workers}

            def fault_then_clean(count: int, fault: str) -> float:
                started = time.monotonic()
                for n in range(count):
                    name = SCENARIOS[n % len(SCENARIOS)]
                    failed = cards(name, fault)
                    if failed.status_code != 500:
                        wrong.append((fault, failed.status_code, failed.text[:200]))
                    else:
                        assert_clean_500(failed)
                    after = cards(name)  # the very next request, to whichever worker takes it
                    if after.status_code != 200 or card_view(after.json()["cards"]) != baseline[name]:
                        wrong.append((name, after.status_code, after.text[:200]))
                return time.monotonic() - started

            # 1. faults the engine recovers from: the same workers go on, with nothing left behind
            recoverable_seconds = fault_then_clean(recoverable, "before-first")
            after_recoverable = workers_of(master)
            rss_after = {pid: rss_kib(pid) for pid in workers}
            stats_recoverable = {pid: s for pid, s in engine_stats(stats_dir).items() if pid in workers}

            # 2. faults that leave a session: the worker answers, then is replaced
            unclosable_seconds = fault_then_clean(unclosable, "after-every")
            victims = {pid for pid, s in engine_stats(stats_dir).items() if s["faulted"].get("after-every")}
            wait_for_workers(master, 2, timeout=10, exclude=victims)  # every victim replaced
            again = {name: card_view(cards(name).json()["cards"]) for name in SCENARIOS}
        stats = engine_stats(stats_dir)
        logs = server.logs()

    growth = {pid: rss_after[pid] - rss_before[pid] for pid in workers}
    replaced = logs.count("replacing this worker: its rule engine holds a session it could not close")
    booted = logs.count("Booting worker with pid")
    print(
        f"\ndurable-rules fault: first evaluation of a fresh worker -> 500, worker {first_victim} replaced; "
        f"{recoverable} recoverable faults (+ as many clean calls) in {recoverable_seconds:.1f} s: workers "
        f"{sorted(workers)} -> {sorted(after_recoverable)}, per worker {stats_recoverable}, resident memory "
        f"growth (KiB) {growth}; {unclosable} faults leaving a session in {unclosable_seconds:.1f} s: "
        f"{replaced} workers replaced ({booted} booted in all), sessions left per victim "
        f"{sorted(stats[pid]['live_sessions'] for pid in victims)}"
    )
    assert not wrong, wrong[:5]
    assert again == baseline
    # recoverable: nothing left behind, no worker lost, no memory kept
    assert after_recoverable == workers, "a worker died (and was replaced) after a recoverable fault"
    # The kernel decides which worker accepts each call (one may take them all): every fault counted in
    # some worker, a worker that faulted went on to answer correctly, and no worker kept a session.
    faulted = {pid: c for pid, c in stats_recoverable.items() if c["faulted"].get("before-first", 0) > 0}
    assert sum(c["faulted"]["before-first"] for c in faulted.values()) == recoverable, stats_recoverable
    assert any(c["clean_after_fault"] > 0 for c in faulted.values()), faulted
    for pid, counted in stats_recoverable.items():
        assert counted["live_sessions"] == 0, f"worker {pid} left durable-rules sessions behind: {counted}"
    assert sum(growth.values()) < 16 * 1024, f"resident memory grew by {growth} KiB"
    # unclosable: each victim holds one session at most, and is replaced cleanly (never a crash)
    assert first_victim in victims and len(victims) == 1 + unclosable == replaced
    assert victims == {pid for pid, s in stats.items() if s["faulted"].get("after-every")}
    assert all(stats[pid]["live_sessions"] == 1 for pid in victims)
    assert "SIGSEGV" not in logs and "Perhaps out of memory" not in logs
    assert booted == len(started_with) + replaced
    assert logs.count('"unhandled error"') == 1 + recoverable + unclosable  # each logged with its incident
