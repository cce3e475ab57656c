"""The one place where an error becomes an HTTP answer: status, OperationOutcome body and headers.

The service's own errors (``cds_service.errors``) carry their status and issue code; werkzeug's HTTP
errors (404 path, 405 method, 413 body) and anything unexpected are given the same shape, so no client
ever sees an HTML page or a stack trace.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from cds_service.errors import CdsError, operation_outcome
from cds_service.logs import log_fields

log = logging.getLogger("naltrexone_cds.http")

WWW_AUTHENTICATE = 'Bearer realm="cds-services"'
"""The challenge sent with every 401: no ``error`` or description, as the CDS Hooks best practices ask."""
RETRY_AFTER_SECONDS = "30"
# werkzeug's HTTP errors, as FHIR issue codes
_ISSUE_CODES = {
    400: "invalid",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


def _answer(status: int, outcome: dict[str, object], allow: str | None = None) -> Response:
    response = jsonify(outcome)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    if allow:
        response.headers["Allow"] = allow
    return response


def _on_cds_error(error: CdsError) -> Response:
    return _answer(error.status, error.to_operation_outcome())


def _on_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = {
        404: f"no such endpoint: {request.method} {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: f"the body is larger than the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes",
    }.get(status, error.description or error.name)
    allow = error.get_response().headers.get("Allow") if status == 405 else None
    return _answer(status, operation_outcome(message, code=_ISSUE_CODES.get(status, "exception")), allow)


def _on_unexpected(error: Exception) -> Response:
    incident = str(uuid.uuid4())
    log.error("unhandled error", exc_info=error, extra=log_fields(incident=incident))
    return _answer(
        500, operation_outcome(f"internal error; reported as incident {incident}", code="exception")
    )


def register(app: Flask) -> None:
    app.register_error_handler(CdsError, _on_cds_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)
