"""The ``naltrexone-cds`` command."""

from __future__ import annotations

import click

from cds_service.logs import configure as configure_logging
from cds_service.settings import Settings, SettingsError


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
