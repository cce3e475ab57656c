"""The ``naltrexone-cds`` command."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import click

from cds_service.logs import configure as configure_logging
from cds_service.settings import MAX_RETENTION_DAYS, Settings, SettingsError


@click.group()
@click.version_option(package_name="naltrexone-cds")
def main() -> None:
    """naltrexone-cds: a CDS Hooks service for naltrexone orders."""


@main.command()
@click.option("--host", help="Interface to listen on [env NALTREXONE_CDS_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [env NALTREXONE_CDS_PORT; default 8000].")
@click.option("--workers", type=int, help="Worker processes, 0 = two per core [env NALTREXONE_CDS_WORKERS].")
@click.option(
    "--worker-class",
    type=click.Choice(["sync", "gthread"]),
    help="Gunicorn worker type [env NALTREXONE_CDS_WORKER_CLASS; default sync].",
)
@click.option("--threads", type=int, help="Threads per gthread worker [env NALTREXONE_CDS_THREADS].")
def serve(
    host: str | None, port: int | None, workers: int | None, worker_class: str | None, threads: int | None
) -> None:
    """Run the service under gunicorn (a production WSGI server)."""
    from cds_service.server import serve as run_server

    try:
        settings = Settings.from_env(
            host=host, port=port, workers=workers, worker_class=worker_class, threads=threads
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level)
    run_server(settings)


@main.command()
@click.argument("request", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the raw CDS Hooks response.")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Evaluate as of this date (YYYY-MM-DD) instead of today, e.g. a fixture's reference date.",
)
@click.option("--service", "service_id", help="Service id; default: the one for the request's hook.")
@click.option("--rules-dir", type=click.Path(file_okay=False, path_type=Path), help="Rules directory to use.")
@click.option("--policy-file", type=click.Path(dir_okay=False, path_type=Path), help="Policy overrides.")
def evaluate(
    request: str,
    as_json: bool,
    today: object,
    service_id: str | None,
    rules_dir: Path | None,
    policy_file: Path | None,
) -> None:
    """Evaluate one CDS Hooks request file (or - for stdin) and print the cards; no server needed.

    Exit status: 0 with cards printed; 1 if the request is refused (the OperationOutcome is printed).
    """
    from cds_service.evaluate import EvaluationFailed, dump_json, read_request, render_text
    from cds_service.evaluate import evaluate as run

    try:
        settings = Settings.from_env(rules_dir=rules_dir, policy_file=policy_file)
        day = today.date() if hasattr(today, "date") else None
        response = run(read_request(request), settings=settings, today=day, service_id=service_id)
    except (SettingsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except EvaluationFailed as failure:
        click.echo(dump_json(failure.outcome) if as_json else f"HTTP {failure.status}: {failure}", err=True)
        raise SystemExit(1) from None
    click.echo(dump_json(response) if as_json else render_text(response))


@main.command()
@click.argument("request", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--service", "service_id", help="Service id; default: the one for the request's hook.")
def lint(request: str, as_json: bool, service_id: str | None) -> None:
    """Check one captured CDS Hooks request (or - for stdin): answered or refused, the deviations from
    CDS Hooks 2.0.1 the service tolerates, prefetch keys not sent, resources that are not valid FHIR R4.

    Exit status: 0 conforming; 1 refused (the service would answer 4xx); 2 answered, with deviations.
    """
    from zoneinfo import ZoneInfo

    from cds_service.clock import Calendar, utc_now
    from cds_service.evaluate import read_request
    from cds_service.lint import NothingFetched, render_json, render_text
    from cds_service.lint import lint as run
    from cds_service.pipeline import Pipeline

    settings = _settings()
    calendar = Calendar(ZoneInfo(settings.timezone), utc_now)
    pipeline = Pipeline.from_settings(settings, calendar=calendar, fetcher=NothingFetched())
    if service_id is not None and service_id not in pipeline.services:
        raise click.UsageError(f"no service {service_id!r}; the services are " + ", ".join(pipeline.services))
    try:
        report = run(read_request(request), pipeline, service_id)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_json(report) if as_json else render_text(report))
    raise SystemExit(0 if report.conforming else 1 if report.refused is not None else 2)


@main.command()
@click.argument("url")
@click.option(
    "--private-key", type=click.Path(dir_okay=False, path_type=Path), help="PEM key to sign tokens."
)
@click.option("--issuer", help="The iss of the signed tokens (with --private-key).")
@click.option("--kid", help="Key id in the token header; default: the key's RFC 7638 thumbprint.")
@click.option("--alg", type=click.Choice(["ES384", "RS384"]), help="Default: from the key type.")
@click.option("--tenant", help="A tenant claim, for an issuer with a tenant allowlist.")
@click.option("--token-command", help="Shell command printing one token for $NALTREXONE_CDS_CHECK_AUD.")
@click.option("--demo", is_flag=True, help="Tokens from the bundled demo client (loopback demo instances).")
@click.option("--allow-unauthenticated", is_flag=True, help="Authentication off is not a failure.")
@click.option("--origin", default="https://sandbox.cds-hooks.org", show_default=True, help="CORS origin.")
@click.option("--timezone", default="UTC", show_default=True, help="The instance's NALTREXONE_CDS_TIMEZONE.")
@click.option("--only", type=click.Choice(["protocol", "scenarios"]), help="Run only these checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
def check(
    url: str,
    private_key: Path | None,
    issuer: str | None,
    kid: str | None,
    alg: str | None,
    tenant: str | None,
    token_command: str | None,
    demo: bool,
    allow_unauthenticated: bool,
    origin: str,
    timezone: str,
    only: Any,
    as_json: bool,
    timeout: float,
) -> None:
    """Check a deployed instance at URL: the protocol (health, discovery, CORS, 401s, error shapes,
    feedback) and every fixture scenario's cards and card contract; a fresh JWT per call.

    Exit status: 0 all checks pass; 1 any fails; 2 usage error, token command failed or URL unreachable.
    """
    from cds_service.check import TokenError, Unreachable, UsageProblem, render_json, render_table, run_checks
    from cds_service.check import token_source as tokens_from

    try:
        tokens = tokens_from(
            demo=demo,
            private_key=private_key,
            issuer=issuer,
            kid=kid,
            algorithm=alg,
            tenant=tenant,
            token_command=token_command,
            allow_unauthenticated=allow_unauthenticated,
            timeout=timeout,
        )
        report = run_checks(
            url,
            tokens,
            only=only,
            origin=origin,
            allow_unauthenticated=allow_unauthenticated,
            timeout=timeout,
            timezone=timezone,
        )
    except UsageProblem as problem:
        raise click.UsageError(str(problem)) from None
    except (Unreachable, TokenError) as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(2) from None
    click.echo(render_json(report) if as_json else render_table(report))
    raise SystemExit(0 if report.ok else 1)


@main.command()
@click.option(
    "--from", "start", type=click.DateTime(formats=["%Y-%m-%d"]), help="First day (UTC), default 30 days ago."
)
@click.option("--to", "end", type=click.DateTime(formats=["%Y-%m-%d"]), help="Last day (UTC), default today.")
@click.option("--service", "service_id", help="Only this service id.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
def report(start: Any, end: Any, service_id: str | None, as_json: bool, as_csv: bool) -> None:
    """Per rule: cards issued, accepted, overridden, and the top override reasons, over a date range."""
    from cds_service.audit import open_store
    from cds_service.report import render_report
    from cds_service.store import StoreError

    settings = _settings()
    last = (end.date() if end else datetime.now(UTC).date()) + timedelta(days=1)
    first = start.date() if start else last - timedelta(days=31)
    try:
        rows = open_store(settings.database_url, settings.audit_secret).report(
            datetime.combine(first, time.min, UTC),
            datetime.combine(last, time.min, UTC),
            service_id=service_id,
        )
    except (StoreError, ValueError) as exc:
        raise click.ClickException(f"the audit database could not be read: {exc}") from None
    click.echo(render_report(rows, "json" if as_json else "csv" if as_csv else "table"))


@main.command()
def migrate() -> None:
    """Create or upgrade the audit database schema (serve also does this at start-up)."""
    from cds_service.audit import open_store
    from cds_service.store import StoreError

    settings = _settings()
    try:
        open_store(settings.database_url, settings.audit_secret).migrate()
    except (StoreError, ValueError) as exc:
        raise click.ClickException(f"the audit database could not be migrated: {exc}") from None
    click.echo("the audit database schema is up to date")


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--older-than-days",
    type=click.IntRange(1, MAX_RETENTION_DAYS),
    help="Delete cards without feedback issued more than N days ago "
    "[default: env NALTREXONE_CDS_AUDIT_RETENTION_DAYS, 90].",
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def prune(dry_run: bool, older_than_days: int | None, as_json: bool) -> None:
    """Delete what the audit trail no longer keeps: cards without feedback older than the audit period,
    feedback and its cards older than the feedback period, expired JWT ids. Safe while the service runs
    (short batches); schedule it daily. See docs/audit-retention.md."""
    import json
    import time as clock

    from cds_service.audit import open_store
    from cds_service.store import StoreError

    settings = _settings()
    days = older_than_days or settings.audit_retention_days
    started = clock.monotonic()
    try:
        result = open_store(settings.database_url, settings.audit_secret).prune(
            audit_retention=timedelta(days=days),
            feedback_retention=timedelta(days=settings.feedback_retention_days),
            dry_run=dry_run,
        )
    except (StoreError, ValueError) as exc:
        raise click.ClickException(f"the audit database could not be pruned: {exc}") from None
    seconds = round(clock.monotonic() - started, 3)

    def stamp(instant: datetime) -> str:
        return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    if as_json:
        document = {
            "dry_run": result.dry_run,
            "rows": result.counts(),
            "cards_without_feedback_issued_before": stamp(result.issued_before),
            "cards_with_feedback_last_received_before": stamp(result.feedback_before),
            "jwt_ids_expired_at": stamp(result.expired_at),
            "batches": result.batches,
            "seconds": seconds,
        }
        click.echo(json.dumps(document, indent=2))
        return
    heading = "would delete (dry run: nothing deleted)" if dry_run else f"deleted in {result.batches} batches"
    click.echo(f"{heading}, {seconds} s:")
    for table, count in result.counts().items():
        click.echo(f"  {table:<18} {count:>10}")
    click.echo(
        f"kept: cards issued since {stamp(result.issued_before)}, cards with feedback received since "
        f"{stamp(result.feedback_before)}, JWT ids not yet expired"
    )


@main.command("demo-token")
@click.argument("url")
@click.option("--lifetime", type=int, default=300, show_default=True, help="Seconds until the token expires.")
def demo_token(url: str, lifetime: int) -> None:
    """Print a bearer JWT for URL from the bundled DEMO client (for curl on a workstation).

    Its private key ships with the package, so such a token proves nothing: the service trusts this
    issuer only with the bundled demo issuers, on a loopback address.
    """
    from cds_service.demo_client import demo_token as sign

    click.echo(sign(url, lifetime_seconds=lifetime))


@main.command()
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Rewrite the marked block of this README (rules/README.md) instead of printing.",
)
def vocabulary(readme: Path | None) -> None:
    """Print the facts, card placeholders and evidence lists the rule book may use, with their meanings.

    They are declared by the modules of cds_service/facts/; this writes rules/README.md's tables from them.
    """
    from cds_service.facts.reference import reference_tables, with_reference_tables

    if readme is None:
        click.echo(reference_tables(), nl=False)
        return
    try:
        updated = with_reference_tables(readme.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    readme.write_text(updated, encoding="utf-8")
    click.echo(f"updated {readme}")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
