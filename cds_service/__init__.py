"""naltrexone-cds: a CDS Hooks service that reviews naltrexone and opioid orders."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from zoneinfo import ZoneInfo

from flask import Flask, Response
from flask_cors import CORS

from cds_service.audit import CardAudit, open_store
from cds_service.auth import Authenticator, AuthPolicy, DatabaseReplayGuard
from cds_service.clock import Calendar, Clock, utc_now
from cds_service.pipeline import Pipeline
from cds_service.settings import Settings

STATE_KEY = "naltrexone_cds"
"""Where the app keeps its ``api.ServiceState`` (``app.extensions[STATE_KEY]``)."""

try:
    __version__ = version("naltrexone-cds")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> Flask:
    """The WSGI application. Everything slow (rule files, schemas) is loaded here, once."""
    from cds_service import api, web

    settings = settings or Settings.from_env()
    store = open_store(settings.database_url, settings.audit_secret)
    audit = CardAudit(store)
    calendar = Calendar(ZoneInfo(settings.timezone), clock)
    pipeline = Pipeline.from_settings(settings, calendar=calendar, audit=audit)
    authenticator = Authenticator(AuthPolicy.from_settings(settings), DatabaseReplayGuard(store))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[STATE_KEY] = api.ServiceState(
        settings=settings, pipeline=pipeline, authenticator=authenticator, audit=audit
    )
    CORS(
        app,
        origins=list(settings.cors_origins),
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
        send_wildcard="*" in settings.cors_origins,
        vary_header=True,
    )
    if "*" not in settings.cors_origins:
        # The CORS headers depend on the caller's Origin, so shared caches must key on it.
        app.after_request(_vary_on_origin)
    api.register(app)
    web.register(app)
    return app


def _vary_on_origin(response: Response) -> Response:
    response.vary.add("Origin")
    return response
