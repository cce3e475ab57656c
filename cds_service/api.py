"""The HTTP layer: authenticate, parse, hand to the pipeline, answer JSON. Nothing clinical happens here."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.utils import host_is_trusted

from cds_service.audit import CardAudit
from cds_service.auth import WWW_AUTHENTICATE
from cds_service.errors import BadRequest, CdsError, Unauthorized, UnsupportedMediaType, operation_outcome
from cds_service.feedback import receive_feedback
from cds_service.logs import log_fields
from cds_service.pipeline import Pipeline
from cds_service.security import Authenticator
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

# werkzeug's HTTP errors, as FHIR issue codes
_ISSUE_CODES = {
    400: "invalid",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


@dataclass(frozen=True)
class ServiceState:
    settings: Settings
    pipeline: Pipeline
    authenticator: Authenticator
    audit: CardAudit


def _state() -> ServiceState:
    from cds_service import STATE_KEY

    state: ServiceState = current_app.extensions[STATE_KEY]
    return state


@blueprint.get("/cds-services", strict_slashes=False)
def discovery() -> Response:
    services = _state().pipeline.services.values()
    return jsonify({"services": [service.discovery_entry() for service in services]})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    pipeline = _state().pipeline
    service = pipeline.service(service_id)
    body = _json_body()
    g.hook_instance = _loggable_id(body.get("hookInstance") if isinstance(body, dict) else None)
    response = pipeline.run(service, body, fhir_servers=g.get("fhir_servers"))
    g.rule_ids = [card["source"]["topic"]["code"] for card in response["cards"]]
    return jsonify(response)


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    state = _state()
    service = state.pipeline.service(service_id)
    return jsonify(receive_feedback(state.audit.store, service, _json_body()))


@blueprint.get("/health")
def health() -> Response:
    from cds_service import __version__

    state = _state()
    try:
        state.audit.store.check()
        database = "ok"
    except StoreError:
        database = "unavailable"
    return jsonify(
        {
            "status": "ok",
            "version": __version__,
            "rules": state.pipeline.knowledge.version,
            "services": list(state.pipeline.services),
            "database": database,
            "audit_gaps": state.audit.gaps,
            "authentication": "required" if state.authenticator.policy.required else "off",
        }
    )


def _authenticate() -> None:
    if request.method == "OPTIONS" or request.endpoint not in _AUTHENTICATED_ENDPOINTS:
        return  # CORS preflights carry no token; /health is for load balancers (any Host)
    state = _state()
    host = request.headers.get("Host", "")
    if state.settings.allowed_hosts and not host_is_trusted(host, list(state.settings.allowed_hosts)):
        # the Host names the URL a token's aud must equal: only the configured names may do so
        raise BadRequest(f"this service does not answer to the host {host[:100]!r}", expression="Host")
    claims = state.authenticator.authenticate(
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


def _error_response(status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(outcome)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _on_cds_error(error: CdsError) -> Response:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if isinstance(error, Unauthorized) else None
    if error.status == 503:
        headers = {"Retry-After": "30"}
    return _error_response(error.status, error.to_operation_outcome(), headers)


def _on_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = {
        404: f"no such endpoint: {request.method} {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: f"the body is larger than the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes",
    }.get(status, error.description or error.name)
    headers = {}
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    outcome = operation_outcome(message, code=_ISSUE_CODES.get(status, "exception"))
    return _error_response(status, outcome, headers)


def _on_unexpected(error: Exception) -> Response:
    incident = str(uuid.uuid4())
    log.error("unhandled error", exc_info=error, extra=log_fields(incident=incident))
    outcome = operation_outcome(f"internal error; reported as incident {incident}", code="exception")
    return _error_response(500, outcome)


def _start_timer() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    started = g.get("started")
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
            issuer=g.get("issuer"),
        ),
    )
    return response


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
    app.register_error_handler(CdsError, _on_cds_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)
    app.before_request(_start_timer)
    app.before_request(_authenticate)
    app.after_request(_finish)
