"""The HTTP endpoints: authenticate, parse, hand to the pipeline, answer JSON. Nothing clinical here."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.sansio.utils import host_is_trusted

from cds_service import STATE_KEY, metrics
from cds_service.api.encode import response_bytes
from cds_service.audit import CardAudit
from cds_service.auth import Authenticator
from cds_service.errors import BadRequest, UnsupportedMediaType
from cds_service.feedback import receive_feedback
from cds_service.logs import log_fields
from cds_service.pipeline import Pipeline
from cds_service.settings import Settings
from cds_service.store import StoreError
from cds_service.validate import decode_json

log = logging.getLogger("naltrexone_cds.http")

blueprint = Blueprint("cds", __name__)

_ID_SHAPE = re.compile(r"[A-Za-z0-9._:-]{1,80}")
_AUTHENTICATED_ENDPOINTS = frozenset({"cds.discovery", "cds.call_service", "cds.feedback"})
# A JSON API: nothing to sniff, frame, cache or refer.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ServiceState:
    settings: Settings
    pipeline: Pipeline
    authenticator: Authenticator
    audit: CardAudit


def state() -> ServiceState:
    found: ServiceState = current_app.extensions[STATE_KEY]
    return found


@blueprint.get("/cds-services", strict_slashes=False)
def discovery() -> Response:
    services = state().pipeline.services.values()
    return jsonify({"services": [service.discovery_entry() for service in services]})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    pipeline = state().pipeline
    service = pipeline.service(service_id)
    body = _json_body()
    g.hook_instance = _loggable_id(body.get("hookInstance") if isinstance(body, dict) else None)
    response = pipeline.run(service, body, fhir_servers=g.get("fhir_servers"), rules_url=rules_url())
    g.rule_ids = [card.rule_id for card in response.cards]
    g.deviations = list(response.deviations) or None
    metrics.count_cards(service.id, ((card.rule_id, card.indicator) for card in response.cards))
    metrics.count_deviations(service.id, response.deviations)
    return current_app.response_class(response_bytes(response), mimetype="application/json")


def rules_url() -> str:
    """Where the rule pages are, for the cards' links: the configured public URL, else the one called."""
    base = state().settings.public_base_url or request.url_root
    return base.rstrip("/") + "/rules"


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    current = state()
    service = current.pipeline.service(service_id)
    return jsonify(receive_feedback(current.audit.store, service, _json_body()))


@blueprint.get("/health")
def health() -> Response:
    from cds_service import __version__

    current = state()
    try:
        current.audit.store.check()
        database = "ok"
    except StoreError:
        database = "unavailable"
    return jsonify(
        {
            "status": "ok",
            "version": __version__,
            "rules": current.pipeline.knowledge.version,
            "services": list(current.pipeline.services),
            "database": database,
            "audit_gaps": current.audit.gaps,
            "authentication": "required" if current.authenticator.policy.required else "off",
        }
    )


@blueprint.get("/health/ready")
def ready() -> tuple[Response, int]:
    """Readiness: may this instance be sent traffic? The rules it advises with, named by content hash."""
    current = state()
    knowledge = current.pipeline.knowledge
    try:
        current.audit.store.check()
        database = "ok"
    except StoreError:
        database = "unavailable"
    waiting_for = ["database"] if database != "ok" and current.settings.ready_requires_database else []
    body = {
        "status": "not ready" if waiting_for else "ready",
        "waiting_for": waiting_for or None,
        "database": database,
        "rules": knowledge.rulebook.version,
        "content_hash": knowledge.fingerprint,
        "rule_count": len(knowledge.rulebook.rules),
        "services": list(current.pipeline.services),
    }
    return jsonify(
        {key: value for key, value in body.items() if value is not None}
    ), 503 if waiting_for else 200


def _authenticate() -> None:
    if request.method == "OPTIONS" or request.endpoint not in _AUTHENTICATED_ENDPOINTS:
        return  # CORS preflights carry no token; /health is for load balancers (any Host)
    current = state()
    host = request.headers.get("Host", "")
    if current.settings.allowed_hosts and not host_is_trusted(host, list(current.settings.allowed_hosts)):
        # the Host names the URL a token's aud must equal: only the configured names may do so
        raise BadRequest(f"this service does not answer to the host {host[:100]!r}", expression="Host")
    claims = current.authenticator.authenticate(
        request.headers.get("Authorization"), request.host_url, request.path
    )
    if claims is not None:
        g.issuer = claims.issuer
        g.fhir_servers = claims.fhir_servers


def _loggable_id(value: Any) -> str | None:
    """hookInstance is logged to correlate with the EHR, but only when it looks like the id it should be."""
    if isinstance(value, str) and _ID_SHAPE.fullmatch(value):
        return value
    return None if value is None else "(not an id)"


def _json_body() -> Any:
    if not request.mimetype or not (
        request.mimetype == "application/json" or request.mimetype.endswith("+json")
    ):
        shown = request.mimetype or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {shown}")
    return decode_json(request.get_data(cache=False))


def _start_timer() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    started = g.get("started")
    if started is not None:
        endpoint, service = _metric_labels()
        metrics.observe_request(endpoint, service, response.status_code, time.perf_counter() - started)
    # Fields are chosen, never copied from the request: no body, no Authorization, no patient id.
    log.info(
        "request",
        extra=log_fields(
            method=request.method,
            path=request.path,
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 2) if started else None,
            hook_instance=g.get("hook_instance"),
            rule_ids=g.get("rule_ids"),
            deviations=g.get("deviations"),
            issuer=g.get("issuer"),
        ),
    )
    return response


def _metric_labels() -> tuple[str, str]:
    """A few fixed label values, never one per URL a caller invents."""
    endpoint = request.endpoint or ""
    if endpoint in ("cds.call_service", "cds.feedback"):
        service_id = str((request.view_args or {}).get("service_id", ""))
        known = service_id if service_id in state().pipeline.services else "unknown"
        return ("hook" if endpoint == "cds.call_service" else "feedback"), known
    if endpoint == "cds.discovery":
        return "discovery", ""
    if endpoint in ("cds.health", "cds.ready"):
        return "health", ""
    if endpoint.startswith(("pages.", "demo.")):
        return "pages", ""
    return "other", ""


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
    app.before_request(_start_timer)
    app.before_request(_authenticate)
    app.after_request(_finish)
