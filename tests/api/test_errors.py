"""Every class of bad input gets a precise 4xx with a JSON OperationOutcome, never a 500 or HTML."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from fhir_fixtures.requests import hook_request, service_path
from tests.support import assert_operation_outcome, open_settings

SELECT = service_path("order-select")


def post_raw(client: FlaskClient, body: bytes | str, content_type: str | None = "application/json") -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(SELECT, data=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"", "body is empty"),
        (b"   \n", "body is empty"),
        (b'{"hook": "order-select",}', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": Infinity}', "Infinity is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"order-select"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
        (b"42", "must be a JSON object, not a number"),
    ],
)
def test_malformed_bodies_are_400(client: FlaskClient, body: bytes, fragment: str) -> None:
    outcome = assert_operation_outcome(post_raw(client, body), 400, fragment)
    assert outcome["issue"][0]["code"] in ("structure", "invalid")


@pytest.mark.parametrize("where", ["extension", "prefetch", "draft", "feedback"])
@pytest.mark.parametrize("levels", [400, 900, 2000])
def test_deep_nesting_is_answered_never_a_crash(client: FlaskClient, where: str, levels: int) -> None:
    """Past the parser's bound (~990 levels) a 400; below it, nothing downstream recurses into it."""
    body: dict[str, Any] = copy.deepcopy(hook_request())
    path = SELECT
    if where == "extension":
        body["extension"] = "@deep@"
    elif where == "prefetch":
        body["prefetch"]["patient"]["extension"] = [{"url": "urn:x", "valueString": "x", "z": "@deep@"}]
    elif where == "draft":
        body["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [{"text": "x", "z": "@deep@"}]
    else:
        item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T01:00:00Z"}
        body = {"feedback": [{**item, "x": "@deep@"}]}
        path = SELECT + "/feedback"
    nested = '{"a":[' * (levels // 2) + '"x"' + "]}" * (levels // 2)
    response = client.post(
        path, data=json.dumps(body).replace('"@deep@"', nested), headers={"Content-Type": "application/json"}
    )
    if levels > 1000:
        assert_operation_outcome(response, 400, "nested too deeply")
    elif where == "draft":
        # a draft order is copied into its suggestions: bounded far below the parser, and named
        outcome = assert_operation_outcome(response, 400, "nested more than 64 levels")
        assert outcome["issue"][0]["expression"] == ["context.draftOrders.entry[0].resource"]
    else:
        assert response.status_code == (404 if where == "feedback" else 200), response.json


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    response = post_raw(client, json.dumps(hook_request()), content_type)
    assert_operation_outcome(response, 415, "Content-Type must be application/json")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/fhir+json"])
def test_json_content_types_are_accepted(client: FlaskClient, content_type: str) -> None:
    response = post_raw(client, json.dumps(hook_request()), content_type)
    assert response.status_code == 200, response.json


def test_unknown_service_is_404_naming_the_services(client: FlaskClient) -> None:
    response = client.post("/cds-services/naltrexone-order-review", json=hook_request())
    assert_operation_outcome(response, 404, "'naltrexone-order-review'", "naltrexone-order-select")


def test_unknown_path_is_404_json(client: FlaskClient) -> None:
    assert_operation_outcome(client.get("/cds-service"), 404, "no such endpoint")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", SELECT), ("PUT", SELECT), ("DELETE", SELECT), ("POST", "/cds-services"), ("POST", "/health")],
)
def test_wrong_method_is_405_with_allow(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert_operation_outcome(response, 405, f"{method} is not allowed")
    assert "Allow" in response.headers


def test_hook_not_matching_the_service_is_400(client: FlaskClient) -> None:
    body = hook_request("order-sign")
    outcome = assert_operation_outcome(
        client.post(SELECT, json=body), 400, "answers the 'order-select' hook", "'order-sign'"
    )
    assert outcome["issue"][0]["expression"] == ["hook"]


def _without(path: Sequence[str | int]) -> dict[str, Any]:
    body = hook_request()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return body


def _with(path: Sequence[str | int], value: Any) -> dict[str, Any]:
    body = hook_request()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


ORDER: list[str | int] = ["context", "draftOrders", "entry", 0, "resource"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (_without(["hookInstance"]), None, "'hookInstance' is a required property"),
        (_without(["hook"]), None, "'hook' is a required property"),
        (_without(["context"]), None, "'context' is a required property"),
        (_without(["context", "patientId"]), "context", "'patientId' is a required property"),
        (_without(["context", "selections"]), "context", "'selections' is a required property"),
        (_without(["context", "draftOrders"]), "context", "'draftOrders' is a required property"),
        (_with(["hookInstance"], ""), "hookInstance", "must not be empty"),
        (_with(["hook"], 7), "hook", "type string"),
        (_with(["context", "patientId"], 123), "context.patientId", "type string"),
        (_with(["context", "selections"], "MedicationRequest/draft-1"), "context.selections", "type array"),
        (
            _with(["context", "draftOrders"], {"resourceType": "Patient"}),
            "context.draftOrders",
            "a single MedicationRequest",
        ),
        (_with(["context", "draftOrders", "entry"], {}), "context.draftOrders.entry", "type array"),
        (
            _with(["context", "draftOrders", "entry", 0], {"fullUrl": "x"}),
            "context.draftOrders.entry[0]",
            "'resource'",
        ),
        (
            _with([*ORDER, "dosageInstruction"], {"text": "daily"}),
            "context.draftOrders.entry[0].resource.dosageInstruction",
            "type array",
        ),
        (
            _with([*ORDER, "authoredOn"], "22/11/2026"),
            "context.draftOrders.entry[0].resource.authoredOn",
            "FHIR R4 date",
        ),
        (
            _with([*ORDER, "medicationCodeableConcept", "coding", 0, "code"], 1483744),
            "coding[0].code",
            "type string",
        ),
        (
            _with([*ORDER, "dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"], "50"),
            "doseQuantity.value",
            "type number",
        ),
        (_with(["fhirServer"], "ftp://ehr.example.org"), "fhirServer", "invalid value"),
        (_with(["fhirAuthorization"], {"access_token": "t", "token_type": "Bearer"}), None, "fhirServer"),
        (
            _with(["fhirServer"], "https://ehr.example.org/fhir")
            | {"fhirAuthorization": {"token_type": "Bearer"}},
            "fhirAuthorization",
            "'access_token'",
        ),
        (_with(["prefetch", "medicationRequests"], []), "prefetch.medicationRequests", "JSON type"),
        (
            _with(["prefetch", "conditions"], {"entry": []}),
            "prefetch.conditions",
            "'resourceType' is a required",
        ),
        (_with(["extension"], "not-an-object"), "extension", "type object"),
    ],
)
def test_schema_violations_are_400_naming_the_field(
    client: FlaskClient, body: dict[str, Any], field: str | None, fragment: str
) -> None:
    outcome = assert_operation_outcome(client.post(SELECT, json=body), 400, fragment)
    if field:
        assert field in outcome["issue"][0]["diagnostics"]


def test_selection_naming_no_draft_order_is_400(client: FlaskClient) -> None:
    body = hook_request(selections=["MedicationRequest/does-not-exist"])
    outcome = assert_operation_outcome(
        client.post(SELECT, json=body), 400, "names no resource in context.draftOrders"
    )
    assert outcome["issue"][0]["expression"] == ["context.selections[0]"]


def test_prefetch_bundle_entry_without_resource_type_is_400(client: FlaskClient) -> None:
    body = hook_request()
    body["prefetch"]["medicationRequests"]["entry"] = [{"resource": {"id": "x"}}]
    assert_operation_outcome(
        client.post(SELECT, json=body),
        400,
        "prefetch.medicationRequests.entry[0].resource must be a FHIR resource",
    )


def test_body_over_the_limit_is_413() -> None:
    app = create_app(open_settings(max_body_bytes=4096))
    body = hook_request()
    body["prefetch"]["labResults"]["note"] = "x" * 5000
    response = app.test_client().post(SELECT, json=body)
    assert_operation_outcome(response, 413, "larger than the limit of 4096 bytes")


def test_an_unexpected_fault_is_a_json_500_without_details(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = app.extensions["naltrexone_cds"].pipeline

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(type(pipeline), "run", broken)
    response = app.test_client().post(SELECT, json=hook_request())
    outcome = assert_operation_outcome(response, 500, "internal error")
    assert "secret" not in json.dumps(outcome)


def test_the_service_keeps_answering_after_bad_input(client: FlaskClient) -> None:
    for body in (b"{", b"[]", json.dumps(_without(["context"])).encode()):
        post_raw(client, body)
    assert client.post(SELECT, json=hook_request()).status_code == 200


def test_error_messages_do_not_echo_submitted_values(client: FlaskClient) -> None:
    body = copy.deepcopy(hook_request())
    body["context"]["patientId"] = {"name": "Jane Q Patient"}
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert "Jane" not in response.get_data(as_text=True)
