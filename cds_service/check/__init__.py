"""``naltrexone-cds check URL``: does a deployed instance keep the contract an EHR relies on?

For integration teams, before go-live and after each deployment. Over HTTP, against any instance:

* the **protocol checks** (``protocol.py``): ``/health`` (and ``/health/ready`` where the version has it),
  discovery, a CORS preflight from the EHR's browser origin, a call without a token (401 with
  ``WWW-Authenticate``), a token with a wrong signature and a replayed token (401), malformed JSON, a wrong
  content type and an unknown service (4xx with a JSON OperationOutcome, never HTML or a 5xx), and the
  feedback endpoint;
* the **scenario checks** (``scenarios.py``): every clinical scenario of ``fhir_fixtures/`` (bundled with
  the package), dated forward to today, sent to its service; the cards must be those its ``expected.json``
  names, and every card must keep the CDS Hooks card contract of ``openapi.yaml`` (``cds_service.contract``).

Each call carries a fresh bearer JWT whose ``aud`` is the exact URL called (``tokens.py``). The scenario
checks expect the bundled rules and policy: a local policy file that changes an outcome shows up as a
failing scenario, which is the point. Each check answers pass, fail or skip (not applicable) with one line
an integrator can act on; ``run_checks`` runs them in order and ``render_table``/``render_json`` show them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from cds_service.check.protocol import PROTOCOL_CHECKS
from cds_service.check.scenarios import load_scenarios, scenario_check
from cds_service.check.target import (
    DEFAULT_ORIGIN,
    Check,
    Group,
    Target,
    TokenSource,
    UsageProblem,
    Verdict,
    base_url_of,
    failed,
    short,
)
from cds_service.check.tokens import AUD_VARIABLE, TokenError, token_source
from cds_service.knowledge.services import load_services
from cds_service.resources import default_rules_dir

__all__ = [
    "AUD_VARIABLE",
    "Report",
    "Result",
    "TokenError",
    "Unreachable",
    "UsageProblem",
    "render_json",
    "render_table",
    "run_checks",
    "token_source",
]


class Unreachable(Exception):
    """Nothing answers at the URL (exit status 2)."""


@dataclass(frozen=True)
class Result:
    name: str
    group: Group
    result: Verdict
    reason: str
    ms: float


@dataclass(frozen=True)
class Report:
    url: str
    results: tuple[Result, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.result != "fail" for r in self.results)

    def count(self, verdict: Verdict) -> int:
        return sum(r.result == verdict for r in self.results)

    def summary(self) -> str:
        skipped_count = self.count("skip")
        return (
            f"{'PASS' if self.ok else 'FAIL'}: {len(self.results)} checks against {self.url}: "
            f"{self.count('pass')} passed, {self.count('fail')} failed"
            + (f", {skipped_count} skipped" if skipped_count else "")
            + f" ({self.seconds:.1f} s)"
        )


def contract_services() -> dict[str, str]:
    """Service id -> hook of the services the bundled ``rules/services.yaml`` declares."""
    return {sid: service.hook for sid, service in load_services(default_rules_dir()).items()}


def checks_for(only: Group | None = None) -> list[Check]:
    checks: list[Check] = []
    if only in (None, "protocol"):
        checks += PROTOCOL_CHECKS
    if only in (None, "scenarios"):
        checks += [scenario_check(scenario) for scenario in load_scenarios()]
    return checks


def today_in(timezone: str) -> date:
    try:
        return datetime.now(ZoneInfo(timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageProblem(f"{timezone!r} is not an IANA time zone (e.g. America/New_York)") from None


def run_checks(
    url: str,
    tokens: TokenSource,
    *,
    only: Group | None = None,
    origin: str = DEFAULT_ORIGIN,
    allow_unauthenticated: bool = False,
    timeout: float = 10.0,
    timezone: str = "UTC",
) -> Report:
    """Every check against the instance at ``url``. ``Unreachable`` if nothing answers there at all;
    ``TokenError`` if the token command fails; ``UsageProblem`` for a bad URL or time zone."""
    base = base_url_of(url)
    today = today_in(timezone)
    started = time.perf_counter()
    headers = {"User-Agent": "naltrexone-cds-check"}
    with httpx.Client(timeout=timeout, follow_redirects=False, headers=headers) as http:
        try:
            http.get(base + "/health")
        except httpx.TransportError as error:
            raise Unreachable(f"nothing answers at {base}: {transport_error(error)}") from None
        target = Target(
            base,
            http,
            tokens,
            origin=origin,
            allow_unauthenticated=allow_unauthenticated,
            today=today,
            services=contract_services(),
        )
        results = [run_one(check, target) for check in checks_for(only)]
    return Report(base, tuple(results), time.perf_counter() - started)


def run_one(check: Check, target: Target) -> Result:
    started = time.perf_counter()
    try:
        outcome = check.run(target)
    except httpx.TransportError as error:
        outcome = failed(f"no answer: {transport_error(error)}")
    except TokenError:
        raise
    except Exception as error:  # an answer so odd the check could not read it is a failure, not a crash
        outcome = failed(f"the answer could not be read: {type(error).__name__}: {short(str(error), 100)}")
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Result(check.name, check.group, outcome.verdict, outcome.reason, ms)


def transport_error(error: httpx.TransportError) -> str:
    said = str(error) or "no detail"
    return f"{type(error).__name__} ({short(said, 100)})"


def render_table(report: Report) -> str:
    """One row per check (check, result, ms, reason: the reason last, as long as it needs), then the
    summary line."""
    rows = [("check", "result", "ms", "reason")]
    rows += [(r.name, r.result.upper(), f"{r.ms:.0f}", r.reason) for r in report.results]
    width = max(len(row[0]) for row in rows)
    lines = [f"{name:<{width}}  {result:<6}  {ms:>5}  {reason}" for name, result, ms, reason in rows]
    return "\n".join([*lines, "", report.summary()])


def render_json(report: Report) -> str:
    document = {
        "url": report.url,
        "ok": report.ok,
        "passed": report.count("pass"),
        "failed": report.count("fail"),
        "skipped": report.count("skip"),
        "seconds": round(report.seconds, 2),
        "checks": [asdict(result) for result in report.results],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
