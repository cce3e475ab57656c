"""Errors a client can cause, each with its HTTP status and FHIR OperationOutcome.

    CdsError                      500  exception   (base; only unexpected faults keep this status)
    ├── BadRequest                400  invalid
    │   ├── MalformedJson         400  structure
    │   ├── SchemaViolation       400  invalid     (names the offending field)
    │   └── HookMismatch          400  invalid
    ├── Unauthorized              401  login
    ├── NotFound                  404  not-found
    ├── MethodNotAllowed          405  not-supported
    ├── PreconditionFailed        412  processing  (prefetch data missing and not fetchable)
    ├── PayloadTooLarge           413  too-costly
    ├── UnsupportedMediaType      415  not-supported
    └── ServiceUnavailable        503  transient   (the audit database is down: retry)

Every non-2xx response of the service is one of these rendered by ``operation_outcome``; the Flask
layer maps werkzeug's own HTTP errors onto the same shape, so no client ever sees an HTML page.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "CdsError",
    "HookMismatch",
    "MalformedJson",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "SchemaViolation",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "operation_outcome",
]


class CdsError(Exception):
    status = 500
    issue_code = "exception"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression

    def to_operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.message, code=self.issue_code, expression=self.expression)


class BadRequest(CdsError):
    status = 400
    issue_code = "invalid"


class MalformedJson(BadRequest):
    issue_code = "structure"


class SchemaViolation(BadRequest):
    """The body is JSON but not a valid CDS Hooks request; ``expression`` is the JSON path."""


class HookMismatch(BadRequest):
    pass


class Unauthorized(CdsError):
    status = 401
    issue_code = "login"


class NotFound(CdsError):
    status = 404
    issue_code = "not-found"


class MethodNotAllowed(CdsError):
    status = 405
    issue_code = "not-supported"


class PreconditionFailed(CdsError):
    status = 412
    issue_code = "processing"


class PayloadTooLarge(CdsError):
    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(CdsError):
    status = 415
    issue_code = "not-supported"


class ServiceUnavailable(CdsError):
    status = 503
    issue_code = "transient"


def operation_outcome(message: str, *, code: str, expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
