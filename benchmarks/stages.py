"""In-process micro-benchmark: the cost of each stage of ``Pipeline.run``, and profiles.

The stages are timed inside the real ``Pipeline.run``: for the duration of a measurement the stage
functions that ``cds_service/pipeline.py`` calls (looked up by name in that module, so pipeline.py is
neither copied nor modified) are replaced by timing wrappers. A call made from inside another timed
stage counts for the outer one only. Stages:

* ``decode``   - the HTTP layer's ``decode_json`` of the body (bytes -> Python objects);
* ``validate`` - ``parse_hook_request`` (JSON Schema validation and the checked ``HookRequest``);
* ``gather``   - ``gather``: prefetch, any fetch from fhirServer, the record by type;
* ``facts``    - ``identify_orders``, ``medication_index``, ``resolve`` and ``derive`` (all rule facts);
* ``engine``   - ``RuleEngine.evaluate`` (durable-rules);
* ``cards``    - ``CardContext`` and ``render`` (cards and FHIR suggestions);
* ``other``    - the rest of ``Pipeline.run`` (its own glue, and anything added to it since, e.g. an audit);
* ``encode``   - the response body as Flask's ``jsonify`` writes it.

``wsgi`` times the whole Flask application (the service's, or the floor's) called as gunicorn calls it,
with the production JSON log line written to /dev/null, to show what Flask and the HTTP layer add.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import gc
import io
import json
import logging
import os
import pstats
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

import cds_service.pipeline as pipeline_module
from benchmarks.fixtures import BenchRequest
from cds_service import STATE_KEY, create_app
from cds_service.api.encode import response_bytes, response_json
from cds_service.logs import JsonFormatter
from cds_service.pipeline import Pipeline
from cds_service.settings import Settings
from cds_service.validate import decode_json

STAGES = ("decode", "validate", "gather", "facts", "engine", "cards", "other", "encode")
PIPELINE_STAGES = ("validate", "gather", "facts", "engine", "cards", "other")
# names looked up in cds_service/pipeline.py -> the stage their calls count for
STAGE_OF_NAME = {
    "parse_hook_request": "validate",
    "gather": "gather",
    "identify_orders": "facts",
    "medication_index": "facts",
    "resolve": "facts",
    "derive": "facts",
    "CardContext": "cards",
    "render": "cards",
}


class NotAFullEvaluation(RuntimeError):
    """The request ended before the rule engine (the stage timings would not describe a full evaluation)."""


@dataclass(frozen=True)
class StageRun:
    ns: dict[str, int]
    cards: list[dict[str, Any]]


def service_settings(output: Path | None = None) -> dict[str, str]:
    """Environment for the service beyond its defaults, for settings that exist in this version only.

    The harness sends no credentials and must not write into the repository: when the service has an
    audit database or requires authentication, its database goes to the output directory and
    unauthenticated calls are allowed (and the results say so).
    """
    names = {f.name for f in fields(Settings)}
    env: dict[str, str] = {}
    if "database_url" in names and output is not None:
        env["NALTREXONE_CDS_DATABASE_URL"] = f"sqlite:///{(output / 'audit.sqlite3').resolve()}"
    if "allow_unauthenticated" in names:
        env["NALTREXONE_CDS_ALLOW_UNAUTHENTICATED"] = "1"
    return env


def production_app(output: Path | None = None) -> tuple[Flask, Pipeline]:
    """The service's app with production settings, logging its request lines to /dev/null."""
    app = create_app(Settings.from_env(service_settings(output)))
    handler = logging.FileHandler(os.devnull, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    pipeline: Pipeline = app.extensions[STATE_KEY].pipeline
    return app, pipeline


class StageClock:
    """Accumulates time per stage; nested timed calls count for the outermost stage only."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._depth = 0

    def reset(self) -> None:
        self.ns = {}
        self.calls = {}

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                self.ns[stage] = self.ns.get(stage, 0) + time.perf_counter_ns() - started
                self.calls[stage] = self.calls.get(stage, 0) + 1
                self._depth -= 1

        return timed

    def wrap_class(self, stage: str, cls: type) -> type:
        """A subclass whose construction and public methods count for ``stage``."""
        namespace: dict[str, Any] = {"__init__": self.wrap(stage, cls.__init__)}  # type: ignore[misc]
        for name, value in vars(cls).items():
            if not name.startswith("_") and callable(value):
                namespace[name] = self.wrap(stage, value)
        return type(cls.__name__, (cls,), namespace)


@contextlib.contextmanager
def instrumented(pipeline: Pipeline) -> Iterator[tuple[StageClock, list[str]]]:
    """Timing wrappers around the stage functions pipeline.py calls; the names found are yielded."""
    clock = StageClock()
    saved: dict[str, Any] = {}
    for name, stage in STAGE_OF_NAME.items():
        original = getattr(pipeline_module, name, None)
        if original is None:
            continue
        saved[name] = original
        wrapped = (
            clock.wrap_class(stage, original) if isinstance(original, type) else clock.wrap(stage, original)
        )
        setattr(pipeline_module, name, wrapped)
    engine_type = type(pipeline.knowledge.engine)
    evaluate = engine_type.evaluate
    engine_type.evaluate = clock.wrap("engine", evaluate)  # type: ignore[method-assign]
    try:
        yield clock, sorted(saved)
    finally:
        for name, original in saved.items():
            setattr(pipeline_module, name, original)
        engine_type.evaluate = evaluate  # type: ignore[method-assign]


def run_stages(pipeline: Pipeline, clock: StageClock, service_id: str, raw: bytes) -> StageRun:
    """One request: decode, the real ``Pipeline.run`` (stages timed by ``clock``), encode."""
    service = pipeline.service(service_id)
    clock.reset()
    t0 = time.perf_counter_ns()
    body = decode_json(raw)
    t1 = time.perf_counter_ns()
    response = pipeline.run(service, body)
    t2 = time.perf_counter_ns()
    response_bytes(response)  # what the HTTP layer does with the answer
    t3 = time.perf_counter_ns()
    payload = response_json(response)
    if not clock.calls.get("engine"):
        raise NotAFullEvaluation(f"{service_id}: Pipeline.run returned before the rule engine")
    ns = {stage: clock.ns.get(stage, 0) for stage in PIPELINE_STAGES if stage != "other"}
    ns["other"] = max(0, (t2 - t1) - sum(ns.values()))
    ns["decode"] = t1 - t0
    ns["encode"] = t3 - t2
    cards: list[dict[str, Any]] = payload["cards"]
    return StageRun(ns=ns, cards=cards)


class GcMonitor:
    """Collections of the cyclic garbage collector (count and pause per generation) while active."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> GcMonitor:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self, requests: int) -> dict[str, Any]:
        return {
            f"gen{generation}": {
                "collections_per_request": round(len(p) / requests, 4),
                "pause_ms_per_request": round(sum(p) / requests, 4),
                "max_pause_ms": round(max(p), 3) if p else 0.0,
            }
            for generation, p in self.pauses.items()
        }


def card_codes(cards: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(card["source"]["topic"]["code"]) for card in cards]


def stage_benchmark(
    app: Flask, pipeline: Pipeline, request: BenchRequest, *, iterations: int, warmup: int
) -> dict[str, Any]:
    """Median (and p90) of each stage over ``iterations`` runs; checks it matches ``Pipeline.run``."""
    service_id = f"naltrexone-{request.hook}"
    expected = card_codes(
        response_json(pipeline.run(pipeline.service(service_id), decode_json(request.body)))["cards"]
    )
    samples: dict[str, list[int]] = {stage: [] for stage in STAGES}
    totals: list[int] = []
    got: list[str] = []
    with instrumented(pipeline) as (clock, names):
        for _ in range(warmup):
            run_stages(pipeline, clock, service_id, request.body)
        with GcMonitor() as collections:
            for _ in range(iterations):
                run = run_stages(pipeline, clock, service_id, request.body)
                for stage, ns in run.ns.items():
                    samples[stage].append(ns)
                totals.append(sum(run.ns.values()))
                got = card_codes(run.cards)
    if got != expected:
        raise AssertionError(f"the instrumented run gave {got}, Pipeline.run gave {expected}")
    medians = {stage: statistics.median(values) / 1e6 for stage, values in samples.items()}
    pipeline_ms = sum(medians[s] for s in PIPELINE_STAGES)
    return {
        "request": request.name,
        "body_bytes": len(request.body),
        "iterations": iterations,
        "cards": expected,
        "instrumented": names,
        "median_ms": {k: round(v, 4) for k, v in medians.items()},
        "p90_ms": {k: round(_quantile(v, 0.9) / 1e6, 4) for k, v in samples.items()},
        "total_median_ms": round(statistics.median(totals) / 1e6, 4),
        "pipeline_sum_of_medians_ms": round(pipeline_ms, 4),
        "share_of_pipeline": {s: round(medians[s] / pipeline_ms, 4) for s in PIPELINE_STAGES},
        "gc": collections.summary(iterations),
    }


def what_if(
    app: Flask,
    pipeline: Pipeline,
    typical: BenchRequest,
    largest: BenchRequest,
    *,
    iterations: int,
    output: Path | None = None,
) -> dict[str, Any]:
    """Measured alternatives the service does not use (yet): evidence for docs/performance.md.

    * request validation with jsonschema-rs (the same openapi.yaml schemas), if it is installed;
    * the largest request with the cyclic garbage collector off during the request;
    * the typical request after ``gc.freeze()`` (start-up objects moved out of the collector's reach);
    * bearer-JWT verification, which the load runs switch off (see ``authentication_cost``).
    """
    results: dict[str, Any] = {}
    validation: dict[str, Any] = {"available": False}
    jsonschema_rs: Any = None
    with contextlib.suppress(ImportError):
        import jsonschema_rs  # type: ignore[import-not-found, no-redef, unused-ignore]
    if jsonschema_rs is not None:
        from cds_service.contract import openapi_document

        components = openapi_document()["components"]
        validation = {"available": True, "version": _version("jsonschema-rs")}
        for request in (typical, largest):
            hook_schema = "OrderSelectRequest" if request.hook == "order-select" else "OrderSignRequest"
            schema = {"$ref": f"#/components/schemas/{hook_schema}", "components": components}
            validator = jsonschema_rs.Draft202012Validator(schema)
            body = decode_json(request.body)
            if not validator.is_valid(body):
                raise AssertionError(f"jsonschema-rs rejects {request.name}, which the service accepts")
            times = []
            for _ in range(max(3, iterations)):
                started = time.perf_counter_ns()
                validator.is_valid(body)
                times.append(time.perf_counter_ns() - started)
            validation[request.name] = {"is_valid_median_ms": round(statistics.median(times) / 1e6, 4)}
    results["jsonschema_rs_validation"] = validation

    few = max(3, min(iterations, 5))
    enabled = stage_benchmark(app, pipeline, largest, iterations=few, warmup=1)["total_median_ms"]
    gc.disable()
    try:
        disabled = stage_benchmark(app, pipeline, largest, iterations=few, warmup=1)["total_median_ms"]
    finally:
        gc.enable()
        gc.collect()
    results["largest_gc"] = {
        "request": largest.name,
        "gc_enabled_total_ms": enabled,
        "gc_disabled_total_ms": disabled,
    }

    results["authentication"] = authentication_cost(typical, iterations=iterations, output=output)

    normal = stage_benchmark(app, pipeline, typical, iterations=iterations, warmup=5)
    gc.collect()
    gc.freeze()
    try:
        frozen = stage_benchmark(app, pipeline, typical, iterations=iterations, warmup=5)
    finally:
        gc.unfreeze()
    results["typical_gc_freeze"] = {
        "request": typical.name,
        "normal_total_ms": normal["total_median_ms"],
        "normal_gc": normal["gc"],
        "frozen_total_ms": frozen["total_median_ms"],
        "frozen_gc": frozen["gc"],
    }
    return results


def authentication_cost(request: BenchRequest, *, iterations: int, output: Path | None) -> dict[str, Any]:
    """What verifying the caller's bearer JWT costs per request, when this version of the service has it.

    The load runs send no token (a token's ``jti`` may be used once, so wrk cannot replay a fixed set)
    and switch authentication off; this measures the production check in-process instead: the service's
    own ``Authenticator`` with its default (demo) issuers, on tokens signed by the bundled demo client,
    each with a fresh ``jti`` (so the replay guard records each one, as in production).
    """
    try:
        from cds_service.auth.verify import audience_url
        from cds_service.demo_client import demo_token
    except ImportError:
        return {"available": False}
    env = {k: v for k, v in service_settings(output).items() if not k.endswith("ALLOW_UNAUTHENTICATED")}
    app = create_app(Settings.from_env(env))
    authenticator = getattr(app.extensions[STATE_KEY], "authenticator", None)
    if authenticator is None or not authenticator.policy.required:
        return {"available": False}
    host_url = "http://127.0.0.1:8000/"
    url = audience_url(host_url.rstrip("/"), request.path)
    count = max(5, iterations)
    tokens = [f"Bearer {demo_token(url)}" for _ in range(count + 5)]
    for token in tokens[:5]:
        authenticator.authenticate(token, host_url, request.path)
    times = []
    for token in tokens[5:]:
        started = time.perf_counter_ns()
        authenticator.authenticate(token, host_url, request.path)
        times.append(time.perf_counter_ns() - started)
    return {
        "available": True,
        "what": "Authenticator.authenticate: ES384 signature, claims, jti recorded by the replay guard",
        "iterations": count,
        "median_ms": round(statistics.median(times) / 1e6, 4),
        "p90_ms": round(_quantile(times, 0.9) / 1e6, 4),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def wsgi_benchmark(app: Flask, request: BenchRequest, *, iterations: int, warmup: int) -> dict[str, Any]:
    """The whole Flask app (routing, CORS, logging, jsonify) called as gunicorn calls it."""

    def environ() -> dict[str, Any]:
        builder = EnvironBuilder(
            path=request.path, method=request.method, data=request.body, content_type="application/json"
        )
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def call() -> int:
        env = environ()
        started = time.perf_counter_ns()
        status: list[str] = []

        def start_response(code: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
            status.append(code)
            return lambda data: None

        chunks = app(env, start_response)
        for _ in chunks:
            pass
        if hasattr(chunks, "close"):
            chunks.close()
        elapsed = time.perf_counter_ns() - started
        if not status or not status[0].startswith("200"):
            raise AssertionError(f"{request.name}: {status}")
        return elapsed

    for _ in range(warmup):
        call()
    values = [call() for _ in range(iterations)]
    return {
        "request": request.name,
        "iterations": iterations,
        "median_ms": round(statistics.median(values) / 1e6, 4),
        "p90_ms": round(_quantile(values, 0.9) / 1e6, 4),
    }


def json_roundtrip_ms(raw: bytes, *, iterations: int) -> float:
    """Median time of ``json.dumps(json.loads(body))``: the yardstick for the scaling target."""
    values = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        json.dumps(json.loads(raw))
        values.append(time.perf_counter_ns() - started)
    return round(statistics.median(values) / 1e6, 4)


def profile(
    pipeline: Pipeline, request: BenchRequest, *, iterations: int, out_dir: Path, label: str, top: int = 25
) -> dict[str, Any]:
    """cProfile of ``decode_json`` + ``Pipeline.run``: the text report on disk, the top costs returned."""
    service = pipeline.service(f"naltrexone-{request.hook}")
    pipeline.run(service, decode_json(request.body))  # warm
    profiler = cProfile.Profile()
    gc.collect()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(iterations):
        pipeline.run(service, decode_json(request.body))
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    report = io.StringIO()
    text_stats = pstats.Stats(profiler, stream=report)
    text_stats.strip_dirs().sort_stats("cumulative").print_stats(60)
    text_stats.sort_stats("tottime").print_stats(40)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / f"profile-{label}.txt"
    report_path.write_text(report.getvalue(), encoding="utf-8")
    stats.dump_stats(str(out_dir / f"profile-{label}.pstats"))
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw_stats.values())
    rows = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in raw_stats.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({function})",
                "calls_per_request": round(calls / iterations, 1),
                "cumulative_ms_per_request": round(cumtime / iterations * 1000, 3),
                "own_ms_per_request": round(tottime / iterations * 1000, 3),
                "cumulative_share": round(cumtime / total, 4) if total else 0.0,
            }
        )
    by_cumulative = sorted(rows, key=lambda r: -float(r["cumulative_ms_per_request"]))[:top]
    by_own = sorted(rows, key=lambda r: -float(r["own_ms_per_request"]))[:top]
    return {
        "request": request.name,
        "iterations": iterations,
        "profiled_ms_per_request": round(wall / iterations * 1000, 3),
        "report": report_path.name,
        "top_cumulative": by_cumulative,
        "top_own": by_own,
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/cds_service/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("cds_service/" + tail) if marker == "/cds_service/" else tail
    return filename


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])
