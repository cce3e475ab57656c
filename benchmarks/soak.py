"""The soak run: the fixture mix, authentication on, at about 70% of measured capacity, for a while.

    python -m benchmarks.soak --seconds 600     # the documented ten minutes (docs/reliability.md)
    python -m benchmarks.soak --seconds 60      # what the suite runs (tests/test_soak.py)

What it measures, written to ``--output`` as ``soak.json``: errors (any answer but 200, any connection
failure), worker restarts (the master's children at the start and at the end), worker RSS after warm-up
and at the end, and p50/p99 of the first and of the last window. Capacity is measured first with the same
client (a closed loop of 8 threads for a few seconds); the soak then paces requests open-loop at
``--load`` of it, each with a fresh single-use token (ES384, from the bundled demo client, minted ahead).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import fixtures
from benchmarks.load import percentile
from benchmarks.servers import RunningServer, ServerSpec, start
from cds_service.demo_client import demo_token

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out"
CLIENT_THREADS = 8
MAX_RATE_PER_S = 1000
"""Tokens minted for the capacity run: more than this client gets from any server here."""
TOKEN_LIFETIME_S = 3000


@dataclass(frozen=True)
class Sample:
    sent_at: float
    """Seconds since the soak started."""
    ms: float
    status: int
    """HTTP status; 0 for a connection failure."""


@dataclass(frozen=True)
class SoakResult:
    seconds: float
    load: float
    capacity_per_s: float
    target_per_s: float
    achieved_per_s: float
    requests: int
    errors: int
    statuses: dict[str, int]
    worker_restarts: int
    rss_after_warmup_kb: int
    rss_at_end_kb: int
    rss_growth_pct: float
    first_window: dict[str, float]
    last_window: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Tokens:
    """Single-use bearer tokens per service path, minted before the load so signing costs the client
    nothing while it measures."""

    def __init__(self, base_url: str, requests: Sequence[fixtures.BenchRequest], total: int) -> None:
        shares = Counter(request.path for request in requests)
        self._tokens = {
            path: [
                demo_token(base_url + path, lifetime_seconds=TOKEN_LIFETIME_S)
                for _ in range(math.ceil(total * count / len(requests)) + 20)
            ]
            for path, count in shares.items()
        }
        self._lock = threading.Lock()

    def take(self, path: str) -> str:
        with self._lock:
            return self._tokens[path].pop()


def _post(server: RunningServer, path: str, body: bytes, token: str) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        connection.close()
    return status, (time.perf_counter() - started) * 1000


def measure_capacity(
    server: RunningServer, requests: Sequence[fixtures.BenchRequest], tokens: Tokens, seconds: float
) -> float:
    """Requests per second a closed loop of CLIENT_THREADS threads gets."""
    done = [0] * CLIENT_THREADS
    deadline = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        index = slot
        while time.perf_counter() < deadline:
            request = requests[index % len(requests)]
            index += 1
            status, _ = _post(server, request.path, request.body, tokens.take(request.path))
            if status == 200:
                done[slot] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def paced(
    server: RunningServer,
    requests: Sequence[fixtures.BenchRequest],
    tokens: Tokens,
    rate_per_s: float,
    seconds: float,
) -> list[Sample]:
    """Open loop: request i is due at i / rate; CLIENT_THREADS threads take the due ones in turn, so a slow
    answer delays no other (up to the threads' number)."""
    samples: list[Sample] = []
    lock = threading.Lock()
    total = int(rate_per_s * seconds)
    next_index = [0]
    origin = time.perf_counter()

    def loop() -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= total:
                return
            due = origin + index / rate_per_s
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            request = requests[index % len(requests)]
            sent = time.perf_counter() - origin
            status, ms = _post(server, request.path, request.body, tokens.take(request.path))
            with lock:
                samples.append(Sample(sent, ms, status))

    threads = [threading.Thread(target=loop) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def rss_kb(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def window(samples: Sequence[Sample], start: float, end: float) -> dict[str, float]:
    ordered = sorted(s.ms for s in samples if start <= s.sent_at < end and s.status == 200)
    if not ordered:
        return {"requests": 0, "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
    }


def soak(seconds: float, load: float, output: Path, workers: int | None = None) -> SoakResult:
    output.mkdir(parents=True, exist_ok=True)
    requests = fixtures.request_mix()
    env = {"NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{(output / 'soak-audit.sqlite3').resolve()}"}
    server = start(ServerSpec(kind="service", worker_class="sync", workers=workers), output, env)
    try:
        capacity_seconds = 5.0
        capacity = measure_capacity(
            server,
            requests,
            Tokens(server.url, requests, int(MAX_RATE_PER_S * capacity_seconds)),
            capacity_seconds,
        )
        rate = capacity * load
        tokens = Tokens(server.url, requests, int(rate * seconds) + 1)
        pids_before = worker_pids(server.process.pid)
        warmup = min(10.0, seconds / 6)
        rss_at: dict[str, int] = {}

        def sample_rss() -> None:
            time.sleep(warmup)
            rss_at["warm"] = rss_kb(worker_pids(server.process.pid))

        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        samples = paced(server, requests, tokens, rate, seconds)
        sampler.join()
        pids_after = worker_pids(server.process.pid)
        rss_end = rss_kb(pids_after)
    finally:
        server.stop()
    span = max(s.sent_at for s in samples)
    edge = max(10.0, span / 5)
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    result = SoakResult(
        seconds=round(span, 1),
        load=load,
        capacity_per_s=round(capacity, 1),
        target_per_s=round(rate, 1),
        achieved_per_s=round(len(samples) / span, 1),
        requests=len(samples),
        errors=sum(1 for s in samples if s.status != 200),
        statuses=statuses,
        worker_restarts=len(pids_before - pids_after),
        rss_after_warmup_kb=rss_at["warm"],
        rss_at_end_kb=rss_end,
        rss_growth_pct=round((rss_end - rss_at["warm"]) * 100 / rss_at["warm"], 2),
        first_window=window(samples, warmup, warmup + edge),
        last_window=window(samples, span - edge, span + 1),
    )
    (output / "soak.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="soak duration (default 600)")
    parser.add_argument("--load", type=float, default=0.7, help="share of measured capacity (default 0.7)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the service's)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)
    result = soak(options.seconds, options.load, options.output, options.workers)
    print(json.dumps(result.as_dict(), indent=2))


if __name__ == "__main__":
    main()
