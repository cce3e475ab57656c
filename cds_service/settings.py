"""Every setting of the service, in one typed place.

Settings come from environment variables named ``NALTREXONE_CDS_<FIELD NAME IN CAPITALS>`` (the CLI
flags of ``naltrexone-cds serve`` override them).  Each field declares its help text, which the
README's configuration table must repeat (``tests/test_docs.py`` checks it).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cds_service.resources import default_rules_dir

ENV_PREFIX = "NALTREXONE_CDS_"

WorkerClass = Literal["sync", "gthread"]
MAX_RETENTION_DAYS = 36_500  # a hundred years: any longer is a typo


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


def _setting(default: Any, help: str) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for collection defaults")
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = _setting("127.0.0.1", "Interface the server listens on (`0.0.0.0` for all).")
    port: int = _setting(8000, "TCP port the server listens on.")
    workers: int = _setting(0, "Gunicorn worker processes; 0 means two per CPU core.")
    worker_class: WorkerClass = _setting(
        "sync", "Gunicorn worker type: `sync` (one request per process) or `gthread` (keep-alive, threads)."
    )
    threads: int = _setting(
        1,
        "Threads per worker when `worker_class` is `gthread`; more than 1 lengthens the tail "
        "(CPU-bound work, see docs/performance.md).",
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024, "Largest request body accepted, in bytes; larger bodies get 413."
    )
    cors_origins: tuple[str, ...] = _setting(
        ("*",),
        "Comma-separated browser origins allowed by CORS (e.g. the CDS Hooks sandbox's); `*` allows any.",
    )
    log_level: str = _setting("INFO", "Python logging level of the service (DEBUG, INFO, WARNING, ERROR).")
    fhir_fetch: bool = _setting(
        True, "Fetch prefetch data the EHR did not send from the request's fhirServer (false: answer 412)."
    )
    fhir_budget_ms: int = _setting(300, "Time budget in ms for all fhirServer queries of one request.")
    fhir_max_pages: int = _setting(10, "Most search result pages followed per prefetch query.")
    fhir_server_allowlist: tuple[str, ...] = _setting(
        (), "Comma-separated URL prefixes a request's fhirServer must start with; empty allows any."
    )
    timezone: str = _setting(
        "UTC", 'IANA time zone whose calendar days the rules count (e.g. America/New_York): sets "today".'
    )
    database_url: str = _setting(
        "sqlite:///naltrexone-cds.sqlite3",
        "Audit database (cards issued, feedback, JWT ids seen): a SQLite file, or postgresql://... for "
        "several instances.",
    )
    audit_secret: str = _setting(
        "",
        "Secret (16+ bytes) keying the HMAC of patient and user ids in the audit trail; empty: generated "
        "once and kept beside the SQLite file (required with PostgreSQL).",
    )
    audit_retention_days: int = _setting(
        90,
        "Days an issued card without feedback is kept: `naltrexone-cds prune` deletes older ones, and "
        "expired JWT ids (see docs/audit-retention.md).",
    )
    feedback_retention_days: int = _setting(
        2190,
        "Days feedback and the cards it refers to are kept after the latest feedback (2190: six years, a "
        "common medical-records period); at least `audit_retention_days`.",
    )
    trusted_issuers_file: Path | None = _setting(
        None,
        "YAML file of trusted CDS clients (iss, JWKS, jku allowlist, tenants); default: the bundled demo "
        "issuers, trusted only on a loopback address.",
    )
    allow_unauthenticated: bool = _setting(
        False,
        "Accept calls without a bearer JWT (announced loudly at start-up); never with real patient data.",
    )
    public_base_url: str = _setting(
        "",
        "URL the EHR calls the service at (e.g. https://cds.hospital.org behind a proxy): the JWT `aud` must "
        "be it plus the path. Required with a trusted-issuers file, unless `allowed_hosts` is set.",
    )
    allowed_hosts: tuple[str, ...] = _setting(
        (),
        "Comma-separated host names (with port if not default) the service answers to; any other `Host` "
        "header gets 400. Empty: any host (with a trusted-issuers file, set this or `public_base_url`).",
    )
    forwarded_allow_ips: tuple[str, ...] = _setting(
        (),
        "Comma-separated addresses or networks of reverse proxies whose X-Forwarded-Proto/-For headers are "
        "trusted; empty trusts none (the scheme is then the connection's own).",
    )
    ready_requires_database: bool = _setting(
        True,
        "`/health/ready` answers 503 while the audit database is unreachable (hooks keep answering either "
        "way); false keeps the instance in rotation, unaudited, when the database is down.",
    )
    metrics_host: str = _setting(
        "127.0.0.1",
        "Interface of the Prometheus `/metrics` endpoint, served by the gunicorn master apart from the "
        "service port (`0.0.0.0` inside a pod, for the scraper).",
    )
    metrics_port: int = _setting(
        9464, "Port of the Prometheus `/metrics` endpoint; 0 turns metrics serving off."
    )
    metrics_dir: Path | None = _setting(
        None,
        "Directory of its own where the workers keep their metric counts (an earlier run's count files are "
        "removed, any other file refused); default: a new directory in /dev/shm (or the temporary "
        "directory) per start.",
    )
    policy_file: Path | None = _setting(
        None, "YAML file overriding values of rules/policy.yaml (washout days, look-backs, LFT multiples...)."
    )
    demo_page: str = _setting(
        "auto",
        "The /demo page (scenario patients, real calls and feedback): `auto` is on with the bundled demo "
        "issuers and off with a trusted-issuers file; `on` or `off` decide.",
    )
    rules_dir: Path | None = _setting(
        None,
        "Directory of the rule, value set and service files; default: the copy shipped with the package.",
    )

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535, not {self.port}")
        if not 0 <= self.metrics_port < 65536:
            problems.append(f"metrics_port must be 0 (off) or 1-65535, not {self.metrics_port}")
        elif self.metrics_port == self.port:
            problems.append("metrics_port must differ from port: metrics are never served to the EHR")
        if self.workers < 0:
            problems.append(f"workers must be 0 (automatic) or more, not {self.workers}")
        if self.threads < 1:
            problems.append(f"threads must be at least 1, not {self.threads}")
        if self.worker_class not in ("sync", "gthread"):
            problems.append(f"worker_class must be sync or gthread, not {self.worker_class!r}")
        if self.demo_page not in ("auto", "on", "off"):
            problems.append(f"demo_page must be auto, on or off, not {self.demo_page!r}")
        if self.max_body_bytes < 1024:
            problems.append(f"max_body_bytes must be at least 1024, not {self.max_body_bytes}")
        if not 20 <= self.fhir_budget_ms <= 10_000:
            problems.append(f"fhir_budget_ms must be 20-10000, not {self.fhir_budget_ms}")
        if not 1 <= self.fhir_max_pages <= 1000:
            problems.append(f"fhir_max_pages must be 1-1000, not {self.fhir_max_pages}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {self.timezone!r} is not an IANA time zone")
        if not 1 <= self.audit_retention_days <= MAX_RETENTION_DAYS:
            problems.append(
                f"audit_retention_days must be 1-{MAX_RETENTION_DAYS}, not {self.audit_retention_days}"
            )
        if not 1 <= self.feedback_retention_days <= MAX_RETENTION_DAYS:
            problems.append(
                f"feedback_retention_days must be 1-{MAX_RETENTION_DAYS}, not {self.feedback_retention_days}"
            )
        elif self.feedback_retention_days < self.audit_retention_days:
            problems.append(
                f"feedback_retention_days ({self.feedback_retention_days}) must be at least "
                f"audit_retention_days ({self.audit_retention_days}): cards with feedback are kept longer"
            )
        if self.audit_secret and len(self.audit_secret.encode()) < 16:
            problems.append("audit_secret must be at least 16 bytes")
        if self.public_base_url and not self.public_base_url.startswith(("http://", "https://")):
            problems.append("public_base_url must start with http:// or https://")
        if self.trusted_issuers_file is not None and self.allow_unauthenticated:
            problems.append(
                f"{env_var('trusted_issuers_file')} and {env_var('allow_unauthenticated')} are both set: "
                "choose one (trusted issuers mean every call is authenticated)"
            )
        if self.trusted_issuers_file is not None and not self.public_base_url and not self.allowed_hosts:
            # Otherwise the URL a token's aud must equal would be built from the caller's own Host header,
            # and a token minted for another service could be replayed here with that service's Host.
            problems.append(
                f"{env_var('trusted_issuers_file')} is set, so the JWT audience must not come from the "
                f"request: set {env_var('public_base_url')} to the URL your EHR calls (for example "
                f"https://cds.hospital.org), or {env_var('allowed_hosts')} to the host names it may use"
            )
        if not self.cors_origins:
            problems.append("cors_origins must name at least one origin")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            problems.append(f"log_level {self.log_level!r} is not a logging level")
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def effective_workers(self) -> int:
        return self.workers or 2 * (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``NALTREXONE_CDS_*`` variables, then ``overrides`` (e.g. CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_var(f.name))
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(f.name, f.type, raw.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """The settings as they should appear in start-up logs (nothing secret lives here)."""
        described = dataclasses.asdict(self)
        described["workers"] = self.effective_workers
        described["rules_dir"] = str(self.rules_dir or default_rules_dir())
        described["policy_file"] = str(self.policy_file) if self.policy_file else "(none)"
        described["audit_secret"] = "(set)" if self.audit_secret else "(generated)"
        described["database_url"] = _without_password(self.database_url)
        described["trusted_issuers_file"] = str(self.trusted_issuers_file or "(bundled demo issuers)")
        return described


def _without_password(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{separator}{credentials.split(':', 1)[0]}:***@{host}"


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def documented_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting: the README table's source."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            shown = ",".join(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = "" if default is None else str(default)
        rows.append((env_var(f.name), shown, f.metadata["help"]))
    return rows


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{env_var(name)}={raw!r} is not true or false")


def _parse(name: str, declared: Any, raw: str) -> Any:
    kind = str(declared)
    try:
        if kind == "bool":
            return _boolean(name, raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind.startswith("Path"):
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{env_var(name)}={raw!r} is not a valid {kind}") from None
    return raw
