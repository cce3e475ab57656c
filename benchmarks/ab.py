"""A/B: the same request mix and load against two or more service variants, interleaved in one sitting.

    python -m benchmarks.ab --variant before:root=/path/to/clone-at-old-commit --variant after
    python -m benchmarks.ab --variant sync --variant gthread-1:worker_class=gthread,NALTREXONE_CDS_THREADS=1

A variant is ``LABEL[:key=value,...]``: ``root=PATH`` serves another source tree (e.g. a ``git clone`` at
another commit), ``worker_class=sync|gthread`` and ``workers=N`` set the gunicorn options, and any
``NALTREXONE_CDS_*=VALUE`` is passed to that variant only. Every variant gets the harness's settings
(``stages.service_settings``: its own audit database under the output directory, no token needed).

For each run it reports wrk's client-side figures and the server's own logged time per request (the
``ms`` of its request log lines written during that run), which shows tails that happen inside the app.
Results go to ``--output`` (default ``benchmarks/out/ab``) as ``ab.json`` and ``ab.md``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from benchmarks import fixtures, load, stages
from benchmarks.machine import CpuMeter, describe_machine, source_state, wait_for_quiet
from benchmarks.report import table
from benchmarks.run import exit_on_signal
from benchmarks.servers import RunningServer, ServerSpec, WorkerClass, start_all

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "ab"


def parse_variant(text: str) -> ServerSpec:
    label, _, options = text.partition(":")
    root: Path | None = None
    worker_class = "sync"
    workers: int | None = None
    env: list[tuple[str, str]] = []
    for option in filter(None, options.split(",")):
        key, separator, value = option.partition("=")
        if not separator:
            raise SystemExit(f"variant option {option!r} is not key=value")
        if key == "root":
            root = Path(value).resolve()
        elif key == "worker_class" and value in ("sync", "gthread"):
            worker_class = value
        elif key == "workers":
            workers = int(value)
        elif key.startswith("NALTREXONE_CDS_"):
            env.append((key, value))
        else:
            raise SystemExit(f"unknown variant option {option!r}")
    return ServerSpec(
        "service", cast(WorkerClass, worker_class), workers, label=label, root=root, env=tuple(env)
    )


def _server_ms(server: RunningServer, skip: int) -> tuple[list[float], int]:
    """Logged ``ms`` of the request lines after the first ``skip`` ones; and the new line count."""
    lines = [e for e in server.log_entries() if e.get("message") == "request"]
    return [float(e["ms"]) for e in lines[skip:] if e.get("ms") is not None], len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="LABEL[:key=value,...]")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if load.wrk_path() is None:
        print(f"error: {load.WRK_INSTALL_HINT}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)

    specs = [parse_variant(v) for v in args.variant]
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    fixtures.rebase_today()
    mix = fixtures.request_mix()
    manifest = load.write_manifest(mix, output / "bodies")
    meter = CpuMeter()
    env = stages.service_settings(output)
    servers = []
    for spec in specs:  # one audit database per variant
        variant_dir = output / spec.name
        variant_dir.mkdir(exist_ok=True)
        servers += start_all([spec], output, env=stages.service_settings(variant_dir))
    rows: list[dict[str, Any]] = []
    try:
        for server in servers:
            meter.add_group(server.process.pid)
            load.run_wrk(
                server.url, manifest, concurrency=args.concurrency, duration_s=2, server=server.spec.name
            )
        for round_index in range(args.rounds):
            ordered = servers if round_index % 2 == 0 else list(reversed(servers))
            for server in ordered:
                wait_for_quiet(meter, threshold_pct=10, max_wait_s=30)
                _, before = _server_ms(server, 0)
                meter.start()
                result = load.run_wrk(
                    server.url,
                    manifest,
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    server=server.spec.name,
                    round_index=round_index,
                )
                cpu = meter.stop()
                logged, _ = _server_ms(server, before)
                ordered_ms = sorted(logged)
                row = {
                    "variant": server.spec.name,
                    "round": round_index + 1,
                    "requests_per_s": result.requests_per_s,
                    "client_p50_ms": result.latency_ms["p50"],
                    "client_p99_ms": result.latency_ms["p99"],
                    "server_p50_ms": round(statistics.median(ordered_ms), 3) if ordered_ms else None,
                    "server_p99_ms": round(load.percentile(ordered_ms, 99), 3) if ordered_ms else None,
                    "server_p99_9_ms": round(load.percentile(ordered_ms, 99.9), 3) if ordered_ms else None,
                    "server_over_100ms": sum(1 for x in ordered_ms if x > 100),
                    "errors": sum(result.errors.values()),
                    "other_cpu_pct": cpu["foreign_pct"],
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for server in servers:
            server.stop()
    results = {
        "machine": describe_machine(),
        "harness_source": source_state(),
        "variants": {s.name: {"root": str(s.root) if s.root else None, "env": dict(s.env),
                              "worker_class": s.worker_class, "source": source_state(s.root)} for s in specs},
        "settings": env,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "runs": rows,
    }  # fmt: skip
    (output / "ab.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    headers = list(rows[0]) if rows else []
    text = f"A/B at concurrency {args.concurrency}, {args.duration:g} s per run\n\n" + table(
        headers, [list(r.values()) for r in rows]
    )
    (output / "ab.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
