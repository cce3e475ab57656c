"""Markdown tables from a results.json (what the run prints; also ``python -m benchmarks.report FILE``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGE_COLUMNS = ("decode", "validate", "gather", "facts", "engine", "cards", "other", "encode")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(results: dict[str, Any]) -> str:
    parts = [_heading(results)]
    if results["load"]["summary"]:
        parts += _load_tables(results)
    if results["scaling"]:
        parts += _scaling_table(results)
    parts += _stage_tables(results)
    parts += _profile_tables(results)
    if results.get("targets"):
        parts.append("## Targets")
        parts.append(
            table(
                ["target", "requirement", "measured", "met"],
                [[t["id"], t["target"], t["measured"], _verdict(t)] for t in results["targets"]],
            )
        )
    return "\n\n".join(parts) + "\n"


def _heading(results: dict[str, Any]) -> str:
    machine = results["machine"]
    generator = results["load_generator"]
    text = (
        f"# naltrexone-cds benchmark ({results['mode']} run, {results['started_at']})\n\n"
        f"`{results.get('command', '')}` on {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs, "
        f"{machine['python']}; load generator: **{generator['tool']}** ({generator['note']})."
    )
    source = results.get("source") or {}
    if source.get("commit"):
        modified = source.get("modified") or []
        text += f"\n\nService at commit {source['commit'][:10]} ({source.get('subject')})" + (
            f", with uncommitted changes to {', '.join(modified)}."
            if modified
            else ", no uncommitted changes."
        )
    if not generator["comparable"]:
        text += "\n\n**The load figures below come from the Python client: they are not comparable.**"
    return text


def _load_tables(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results["load"]["summary"]:
        used = f"{r['rounds_used']}/{r['rounds']}" + (" contended" if r["contended"] else "")
        tail = round(r["p99_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None
        rows.append(
            [
                r["server"],
                r["concurrency"],
                r["requests_per_s"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                tail,
                r["errors"],
                used,
                r["foreign_cpu_pct_max"],
            ]
        )
    ratio_rows = [
        [
            r["service"],
            r["floor"],
            r["concurrency"],
            r["service_rps"],
            r["floor_rps"],
            r["rps_ratio"],
            r["p50_ratio"],
            r["p99_ratio"],
        ]
        for r in results["ratios"]
    ]
    return [
        "## Throughput and latency (request mix, client side; medians of the quiet rounds)",
        table(
            [
                "server",
                "concurrency",
                "req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p99/p50",
                "errors",
                "rounds used",
                "other processes' CPU %",
            ],
            rows,
        ),
        "## Service / floor",
        table(
            [
                "service",
                "floor",
                "concurrency",
                "service req/s",
                "floor req/s",
                "req/s ratio",
                "p50 ratio",
                "p99 ratio",
            ],
            ratio_rows,
        ),
    ]


def _scaling_table(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["request"],
            r["resources"],
            round(r["body_bytes"] / 1024, 1),
            r["repetitions"],
            r["server_ms_median"],
            r["client_ms_median"],
            r["floor_client_ms_median"],
            r["json_roundtrip_ms_median"],
            r["server_over_json"],
            r.get("marginal_ms_per_resource"),
            r["in_process_ms_median"],
        ]
        for r in results["scaling"]
    ]
    return [
        "## Cost versus the size of the record (concurrency 1, medians)",
        table(
            [
                "request",
                "prefetch resources",
                "body KB",
                "reps",
                "server ms (logged)",
                "client ms",
                "floor client ms",
                "json loads+dumps ms",
                "server / json",
                "ms per added resource",
                "in-process ms",
            ],
            rows,
        ),
    ]


def _stage_tables(results: dict[str, Any]) -> list[str]:
    stages = results["stages"]

    def row(label: str, result: dict[str, Any]) -> list[Any]:
        medians = result["median_ms"]
        gen2 = result["gc"]["gen2"]
        return [
            label,
            *(medians[s] for s in STAGE_COLUMNS),
            result["total_median_ms"],
            result["share_of_pipeline"]["engine"],
            gen2["pause_ms_per_request"],
        ]

    headers = ["request", *STAGE_COLUMNS, "total", "engine share", "gen2 GC ms/request"]
    main = [row(f"typical ({stages['typical']['request']})", stages["typical"])]
    main += [row(f"{r['resources']:,} resources", r) for r in stages["scaling"]]
    mix = [row(r["request"], r) for r in stages["mix"]]
    wsgi = stages["wsgi"]
    parts = [
        "## Per stage, in-process (median ms; engine share = engine / (validate..other))",
        table(headers, main),
        f"Whole Flask app called as gunicorn calls it (typical request, in-process median): service "
        f"{wsgi['service']['median_ms']} ms, floor {wsgi['floor']['median_ms']} ms.",
        "### Every request of the mix",
        table(headers, mix),
    ]
    what_if = stages.get("what_if")
    if what_if:
        parts += ["### Measured alternatives (not what the service runs)", _what_if_text(stages, what_if)]
    return parts


def _what_if_text(stages: dict[str, Any], what_if: dict[str, Any]) -> str:
    lines = []
    validation = what_if["jsonschema_rs_validation"]
    if validation.get("available"):
        current = {stages["typical"]["request"]: stages["typical"]["median_ms"]["validate"]}
        current |= {r["request"]: r["median_ms"]["validate"] for r in stages["scaling"]}
        for name, value in validation.items():
            if isinstance(value, dict):
                lines.append(
                    f"- jsonschema-rs {validation['version']} `is_valid` on {name}: "
                    f"{value['is_valid_median_ms']} ms (the service's validate stage: {current.get(name)} ms)"
                )
    else:
        lines.append("- jsonschema-rs is not installed: validation alternative not measured")
    largest = what_if["largest_gc"]
    lines.append(
        f"- {largest['request']}: {largest['gc_enabled_total_ms']} ms with the garbage collector on, "
        f"{largest['gc_disabled_total_ms']} ms with it off during the request"
    )
    auth = what_if.get("authentication") or {}
    if auth.get("available"):
        lines.append(
            f"- bearer-JWT verification (off in the load runs): {auth['median_ms']} ms median, "
            f"{auth['p90_ms']} ms p90 per request ({auth['what']})"
        )
    freeze = what_if["typical_gc_freeze"]
    lines.append(
        f"- {freeze['request']}: {freeze['normal_total_ms']} ms normally "
        f"(gen2 GC {freeze['normal_gc']['gen2']['pause_ms_per_request']} ms/request), "
        f"{freeze['frozen_total_ms']} ms after gc.freeze() "
        f"(gen2 GC {freeze['frozen_gc']['gen2']['pause_ms_per_request']} ms/request)"
    )
    return "\n".join(lines)


def _profile_tables(results: dict[str, Any]) -> list[str]:
    parts = []
    for profile in results["profiles"].values():
        parts.append(
            f"## Profile: {profile['request']} ({profile['profiled_ms_per_request']} ms per request under "
            f"cProfile, {profile['iterations']} runs; full report {profile['report']})"
        )
        for key, title in (("top_cumulative", "cumulative"), ("top_own", "own time")):
            parts.append(f"Top by {title}:")
            parts.append(
                table(
                    ["function", "calls/request", "cumulative ms", "own ms"],
                    [
                        [
                            r["function"],
                            r["calls_per_request"],
                            r["cumulative_ms_per_request"],
                            r["own_ms_per_request"],
                        ]
                        for r in profile[key][:15]
                    ],
                )
            )
    return parts


def _verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return "not measured (quick run)"
    return "yes" if target["met"] else f"NO ({target.get('shortfall')})"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmarks.report RESULTS_JSON", file=sys.stderr)
        return 2
    print(render(json.loads(Path(args[0]).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
