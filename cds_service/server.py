"""Serving the app with gunicorn, configured from ``Settings`` rather than a gunicorn config file."""

from __future__ import annotations

import atexit
import gc
import ipaddress
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from cds_service import STATE_KEY, create_app, metrics
from cds_service.auth import AuthPolicy
from cds_service.logs import QUIET_LOGGERS, log_fields
from cds_service.settings import Settings

log = logging.getLogger("naltrexone_cds.server")


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.application: Flask | None = None
        self._exporter: Any = None
        super().__init__()

    def run(self) -> None:
        if self.settings.metrics_port:
            prepare_metrics_directory(self.settings.metrics_dir)  # before the app (and the metrics) load
        super().run()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}",
            "workers": s.effective_workers,
            "worker_class": s.worker_class,
            "threads": s.threads if s.worker_class == "gthread" else 1,
            # Rules, value sets and schemas are loaded once in the master, then shared by every worker.
            "preload_app": True,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            # gunicorn trusts X-Forwarded-Proto from loopback by default: a local caller could then choose
            # the scheme of the URL the JWT audience is checked against. Only configured proxies count.
            "forwarded_allow_ips": ",".join(s.forwarded_allow_ips),
            "loglevel": s.log_level.lower(),
            "accesslog": None,  # the app writes its own structured request log
            "errorlog": "-",
            "logconfig_dict": logging_config(s.log_level),
            "proc_name": "naltrexone-cds",
            # One service per machine is not a given (tests, blue/green): no shared control socket.
            "control_socket_disable": True,
            "when_ready": self._when_ready,
            "post_fork": self._post_fork,
            "child_exit": self._child_exit,
            "post_request": self._post_request,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        if self.application is None:
            self.application = create_app(self.settings)
            state = self.application.extensions[STATE_KEY]
            knowledge = state.pipeline.knowledge
            metrics.announce_rules(knowledge.rulebook.version, knowledge.fingerprint)
            announce_security(self.settings, state.authenticator.policy)
            log.info(
                "naltrexone-cds configured",
                extra=log_fields(
                    settings=self.settings.describe(),
                    services=list(state.pipeline.services),
                    rules=state.pipeline.knowledge.version,
                    trusted_issuers=[issuer.iss for issuer in state.authenticator.policy.issuers],
                    authentication="required" if state.authenticator.policy.required else "OFF",
                ),
            )
            # Everything loaded so far (libraries, rules, value sets, schemas) lives as long as the
            # process: moved out of the collector's reach, full collections no longer walk it on every
            # request (measured: 10,000-resource request 415 -> 210 ms, typical 2.2 -> 1.9 ms), and the
            # forked workers do not copy the pages the collector would otherwise touch.
            gc.freeze()
        return self.application

    def _when_ready(self, _arbiter: Any) -> None:
        s = self.settings
        if not s.metrics_port:
            return
        try:
            self._exporter = metrics.start_exporter(s.metrics_host, s.metrics_port)
        except OSError as error:
            # Advice matters more than its counters: serve without metrics, loudly.
            log.error(
                "metrics are not served: the metrics address cannot be bound",
                extra=log_fields(host=s.metrics_host, port=s.metrics_port, error=str(error)),
            )
            return
        log.info("metrics served", extra=log_fields(url=f"http://{s.metrics_host}:{s.metrics_port}/metrics"))

    def _post_fork(self, _arbiter: Any, _worker: Any) -> None:
        if self._exporter is not None:
            self._exporter.socket.close()  # the master alone answers scrapes

    def _child_exit(self, _arbiter: Any, worker: Any) -> None:
        metrics.worker_exited(worker.pid)

    def _post_request(self, worker: Any, _request: Any, _environ: Any, _response: Any) -> None:
        """A worker whose rule engine holds a session it could not close (a fault inside durable-rules)
        exits after the answer it has just sent, and the master starts a fresh one: left sessions would
        add up (the 1,024th crashes the process; tests/test_faults_process.py)."""
        if self.application is None:
            return
        abandoned = self.application.extensions[STATE_KEY].pipeline.knowledge.engine.abandoned_sessions
        if abandoned and worker.alive:
            log.error(
                "replacing this worker: its rule engine holds a session it could not close",
                extra=log_fields(pid=os.getpid(), abandoned_sessions=abandoned),
            )
            worker.alive = False


def announce_security(settings: Settings, policy: AuthPolicy) -> None:
    """Loud about anything that would be unsafe with real patient data; refuses demo keys off loopback."""
    if not policy.required:
        log.warning(
            "AUTHENTICATION IS OFF: any caller can obtain clinical advice about any patient. "
            "NALTREXONE_CDS_ALLOW_UNAUTHENTICATED is set; never run like this with real patient data."
        )
    elif policy.demo_issuers:
        if not _is_loopback(settings.host):
            raise SystemExit(
                f"refusing to listen on {settings.host} while trusting the demo issuers "
                f"{', '.join(policy.demo_issuers)} (their private keys are public): "
                "set NALTREXONE_CDS_TRUSTED_ISSUERS_FILE to your EHR's issuers"
            )
        log.warning(
            "DEMO ISSUERS TRUSTED: tokens from them prove nothing (their private keys are public). "
            "Fine on this workstation; set NALTREXONE_CDS_TRUSTED_ISSUERS_FILE before serving real data.",
            extra=log_fields(demo_issuers=list(policy.demo_issuers)),
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def logging_config(level: str) -> dict[str, Any]:
    """gunicorn's own messages in the same JSON lines as the app's."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cds_service.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


def serve(settings: Settings) -> None:
    GunicornServer(settings).run()


def prepare_metrics_directory(configured: Path | None) -> None:
    """Before the app is loaded: every worker writes its counts there for the master to sum."""
    directory = configured or metrics.default_directory()
    metrics.use_directory(directory)
    if configured is None:
        master = os.getpid()

        # workers inherit this handler: only the master, which outlives them, removes the directory
        def remove() -> None:
            if os.getpid() == master:
                shutil.rmtree(directory, ignore_errors=True)

        atexit.register(remove)
