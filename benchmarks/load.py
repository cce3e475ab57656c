"""Driving a server with a closed-loop load: wrk (preferred) or, for smoke runs only, a Python client.

wrk is a C load generator: on a 2-core machine it still competes with the server for CPU, but far less
than a Python client would, so only wrk's figures are meant to be compared with the floor and the anchors.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.fixtures import BenchRequest

Generator = Literal["wrk", "python"]
LUA_SCRIPT = Path(__file__).with_name("rotate.lua")
WRK_INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu package `wrk`)"


@dataclass(frozen=True)
class LoadResult:
    server: str
    concurrency: int
    generator: Generator
    duration_s: float
    requests: int
    requests_per_s: float
    latency_ms: dict[str, float]
    """min, mean, p50, p90, p95, p99, p99_9, max (milliseconds, client side)."""
    errors: dict[str, int] = field(default_factory=dict)
    round: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def write_manifest(
    requests: Sequence[BenchRequest], directory: Path, tokens: Mapping[str, Sequence[str]] | None = None
) -> Path:
    """Bodies as files plus the manifest rotate.lua reads (METHOD PATH BODY_FILE per line, and a file of
    single-use bearer tokens for that path when ``tokens`` gives them)."""
    directory.mkdir(parents=True, exist_ok=True)
    token_files: dict[str, Path] = {}
    for index, (path, minted) in enumerate(sorted((tokens or {}).items())):
        token_files[path] = directory / f"tokens-{index}.txt"
        token_files[path].write_text("\n".join(minted) + "\n", encoding="ascii")
    lines = []
    for index, request in enumerate(requests):
        body_file = directory / f"body-{index:02d}.json"
        body_file.write_bytes(request.body)
        line = f"{request.method} {request.path} {body_file.resolve()}"
        if request.path in token_files:
            line += f" {token_files[request.path].resolve()}"
        lines.append(line)
    manifest = directory / ("manifest-jwt.txt" if tokens else "manifest.txt")
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def run_wrk(
    url: str, manifest: Path, *, concurrency: int, duration_s: float, server: str, round_index: int = 0
) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_INSTALL_HINT)
    threads = max(1, min(2, concurrency))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(manifest),
        str(threads),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = data["duration_us"] / 1e6
    latency = {k: v / 1000 for k, v in data["latency_us"].items() if k != "stdev"}
    return LoadResult(
        server=server,
        concurrency=concurrency,
        generator="wrk",
        duration_s=round(seconds, 3),
        requests=data["requests"],
        requests_per_s=round(data["requests"] / seconds, 1),
        latency_ms={k: round(v, 3) for k, v in latency.items()},
        errors={k: int(v) for k, v in data["errors"].items()},
        round=round_index,
    )


def run_python(
    host: str,
    port: int,
    requests: Sequence[BenchRequest],
    *,
    concurrency: int,
    duration_s: float,
    server: str,
    round_index: int = 0,
) -> LoadResult:
    """A closed loop of ``concurrency`` threads with http.client. For smoke runs: it steals server CPU."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = {"status": 0, "connect": 0}
    deadline = time.perf_counter() + duration_s
    lock = threading.Lock()

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        index = slot
        while time.perf_counter() < deadline:
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            try:
                connection.request(
                    request.method,
                    request.path,
                    body=request.body,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    errors["connect"] += 1
                connection.close()
                continue
            latencies[slot].append(time.perf_counter() - started)
            if response.status >= 400:
                with lock:
                    errors["status"] += 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(x for per_thread in latencies for x in per_thread)
    return LoadResult(
        server=server,
        concurrency=concurrency,
        generator="python",
        duration_s=round(elapsed, 3),
        requests=len(every),
        requests_per_s=round(len(every) / elapsed, 1),
        latency_ms=summarise_ms(every),
        errors=errors,
        round=round_index,
    )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in 0-100)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summarise_ms(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    if not ordered:
        return {}
    ms = [x * 1000 for x in ordered]
    return {
        "min": round(ms[0], 3),
        "mean": round(statistics.fmean(ms), 3),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p95": round(percentile(ms, 95), 3),
        "p99": round(percentile(ms, 99), 3),
        "p99_9": round(percentile(ms, 99.9), 3),
        "max": round(ms[-1], 3),
    }
