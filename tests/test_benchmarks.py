"""The benchmark harness (benchmarks/) still runs end to end: its quick mode, no timing asserted.

Real servers are started (the service with ``naltrexone-cds serve`` and the floor), so the test is ``live``.
Without wrk installed the harness falls back to its Python client, which it reports as not comparable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.live


def test_the_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))

    assert results["schema"] == "naltrexone-cds-benchmark/1"
    assert results["mode"] == "quick"
    assert results["machine"]["logical_cpus"] >= 1
    assert results["load_generator"]["tool"] in ("wrk", "python")
    # with wrk the service also runs with authentication on, loaded with single-use ES384/RS384 tokens
    jwt = results["load_generator"]["tool"] == "wrk"
    assert set(results["servers"]) == {"service-sync", "floor-sync"} | (
        {"service-sync-jwt"} if jwt else set()
    )
    assert results["servers"]["service-sync"]["workers"] >= 1

    # every request of the mix was answered, by the service with the cards its scenario expects
    mix = results["requests"]["mix"]
    assert len(mix) >= 10 and {r["hook"] for r in mix} == {"order-select", "order-sign"}
    for server in results["servers"]:
        assert [row["status"] for row in results["correctness"][server]] == [200] * len(mix)

    summary = results["load"]["summary"]
    assert {(row["server"], row["concurrency"]) for row in summary} == {
        (server, c) for server in ("service-sync", "floor-sync") for c in results["plan"]["concurrency"]
    } | ({("service-sync-jwt", max(results["plan"]["concurrency"]))} if jwt else set())
    for row in summary:
        assert row["requests"] > 0 and row["errors"] == 0, row  # with JWT: every token accepted once
        assert {"requests_per_s", "p50_ms", "p95_ms", "p99_ms"} <= set(row)
    assert results["ratios"]

    assert results["scaling"][0]["kind"] == "typical"
    assert [row["resources"] for row in results["scaling"] if row["kind"] == "scaling"] == list(
        results["plan"]["scaling_sizes"]
    )
    for row in results["scaling"]:
        assert row["server_ms_median"] is not None and row["json_roundtrip_ms_median"] > 0

    typical = results["stages"]["typical"]
    assert set(typical["median_ms"]) >= {"decode", "validate", "gather", "facts", "engine", "cards", "encode"}
    assert typical["cards"], "the typical request is a full evaluation that returns cards"
    assert set(results["profiles"]) == {"typical", "largest"}
    assert (tmp_path / results["profiles"]["typical"]["report"]).is_file()
    expected_targets = {"throughput-service-sync", "engine-share"} | (
        {"throughput-service-sync-jwt"} if jwt else set()
    )
    assert {t["id"] for t in results["targets"]} >= expected_targets
    assert (tmp_path / "tables.md").read_text(encoding="utf-8").startswith("# naltrexone-cds benchmark")
