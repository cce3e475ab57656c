"""Each error a client can cause has its status and a valid FHIR OperationOutcome (tests/api: over HTTP)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from cds_service import errors
from cds_service.errors import CdsError

EXPECTED = {
    errors.BadRequest: (400, "invalid"),
    errors.MalformedJson: (400, "structure"),
    errors.SchemaViolation: (400, "invalid"),
    errors.HookMismatch: (400, "invalid"),
    errors.Unauthorized: (401, "login"),
    errors.NotFound: (404, "not-found"),
    errors.MethodNotAllowed: (405, "not-supported"),
    errors.PreconditionFailed: (412, "processing"),
    errors.PayloadTooLarge: (413, "too-costly"),
    errors.UnsupportedMediaType: (415, "not-supported"),
    errors.ServiceUnavailable: (503, "transient"),
}


def test_every_error_class_is_listed() -> None:
    declared = {getattr(errors, name) for name in errors.__all__} - {CdsError, errors.operation_outcome}
    assert declared == set(EXPECTED)


@pytest.mark.parametrize(("error", "expected"), EXPECTED.items(), ids=lambda e: getattr(e, "__name__", ""))
def test_status_and_a_valid_operation_outcome(error: type[CdsError], expected: tuple[int, str]) -> None:
    raised = error("context.patientId is required", expression="context.patientId")
    outcome = raised.to_operation_outcome()
    OperationOutcome.model_validate(outcome)
    assert (raised.status, outcome["issue"][0]["code"]) == expected
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["diagnostics"] == "context.patientId is required"
    assert outcome["issue"][0]["expression"] == ["context.patientId"]


def test_without_a_location_no_expression_is_sent() -> None:
    assert "expression" not in errors.NotFound("no such service").to_operation_outcome()["issue"][0]
