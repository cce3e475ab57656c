"""The leniency policy (cds_service/leniency.py): each tolerated shape gives the cards the 2.0.1 shape gives,
and is named; what cannot be read is refused with the field named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.leniency import DEVIATIONS
from cds_service.pipeline import Pipeline
from fhir_fixtures import load
from fhir_fixtures.requests import hook_request, naltrexone_order, service_path
from tests.support import RULES_URL, assert_operation_outcome, assert_valid, by_rule
from tests.support.rule_contract import ADDITIONS, CONTRACT

Body = dict[str, Any]


def scenario(name: str = "opioid-active-prescription") -> Body:
    return load(name)[0]


def run(pipeline: Pipeline, body: Body, hook: str | None = None) -> tuple[dict[str, str], set[str]]:
    """(rule id -> indicator, deviations named) for ``body`` sent to the service of ``hook``."""
    response = pipeline.run(pipeline.service_for_hook(hook or body["hook"]), body, rules_url=RULES_URL)
    return {card.rule_id: card.indicator for card in response.cards}, set(response.deviations)


def _context(body: Body) -> Body:
    context: Body = body["context"]
    return context


def user_at_top_level(body: Body) -> Body:
    body["user"] = _context(body).pop("userId")
    return body


def user_id_at_top_level(body: Body) -> Body:
    body["userId"] = _context(body).pop("userId")
    return body


def patient_at_top_level(body: Body) -> Body:
    body["patient"] = _context(body).pop("patientId")
    return body


def typed_context_ids(body: Body) -> Body:
    _context(body)["patientId"] = "Patient/" + _context(body)["patientId"]
    _context(body)["encounterId"] = "Encounter/enc-1"
    return body


def draft_not_a_bundle(body: Body) -> Body:
    (entry,) = _context(body)["draftOrders"]["entry"]
    _context(body)["draftOrders"] = entry["resource"]
    return body


def bare_bundle_entries(body: Body) -> Body:
    drafts = _context(body)["draftOrders"]
    drafts["entry"] = [entry["resource"] for entry in drafts["entry"]]
    return body


def prefetch_batch_entries(body: Body) -> Body:
    body["prefetch"] = {
        key: {"response": {"status": "200 OK"}, "resource": value} for key, value in body["prefetch"].items()
    }
    return body


def unknown_fields(body: Body) -> Body:
    body["applyCql"] = "true"
    _context(body)["tenant"] = "north"
    return body


def prefetch_in_context(body: Body) -> Body:
    _context(body)["prefetch"] = body.pop("prefetch")
    return body


def nested_draft_bundle(body: Body) -> Body:
    drafts = _context(body)["draftOrders"]
    _context(body)["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": drafts}],
    }
    return body


def batch_response_prefetch(body: Body) -> Body:
    """Each prefetch key answered as a whole batch-response Bundle holding the searchset."""
    body["prefetch"] = {
        key: {
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"resource": value, "response": {"status": "200 OK"}}],
        }
        for key, value in body["prefetch"].items()
    }
    return body


def url_patient_id(body: Body) -> Body:
    _context(body)["patientId"] = "https://ehr.example.org/fhir/Patient/" + _context(body)["patientId"]
    return body


SHAPES: dict[str, tuple[Callable[[Body], Body], set[str]]] = {
    "prefetch in context": (prefetch_in_context, {"prefetch-in-context"}),
    "nested draft Bundle": (nested_draft_bundle, {"nested-bundles"}),
    "batch-response prefetch": (batch_response_prefetch, {"nested-bundles"}),
    "URL patientId": (url_patient_id, {"typed-context-ids"}),
    "user": (user_at_top_level, {"user-at-top-level"}),
    "userId": (user_id_at_top_level, {"user-at-top-level"}),
    "patient": (patient_at_top_level, {"patient-at-top-level"}),
    "typed ids": (typed_context_ids, {"typed-context-ids"}),
    "one resource": (draft_not_a_bundle, {"draft-not-a-bundle"}),
    "bare entries": (bare_bundle_entries, {"bare-bundle-entries"}),
    "batch entries": (prefetch_batch_entries, {"prefetch-batch-entries"}),
    "unknown fields": (unknown_fields, {"unknown-fields"}),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_each_tolerated_shape_gives_the_same_cards_and_is_named(
    pipeline: Pipeline, shape: str, hook: str
) -> None:
    canonical = scenario()
    canonical["hook"] = hook
    if hook == "order-sign":
        del canonical["context"]["selections"]
    expected, none = run(pipeline, copy.deepcopy(canonical))
    assert expected["opioid-active"] == "critical" and none == set()
    change, named = SHAPES[shape]
    assert run(pipeline, change(copy.deepcopy(canonical))) == (expected, named)


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ({"response": {"status": "500 Internal Server Error"}}, "query failed with status 500"),
        ({"response": {"status": "403"}, "resource": "Bundle"}, "query failed with status 403"),
        ({"response": {"status": "[see](javascript:alert(1))"}}, "query result unreadable"),
    ],
)
def test_a_batch_entry_without_a_resource_is_a_failed_query_said_on_a_card(
    pipeline: Pipeline, entry: Body, shown: str
) -> None:
    body = scenario()
    body["prefetch"]["conditions"] = entry
    response = pipeline.run(pipeline.service_for_hook("order-select"), body, rules_url=RULES_URL)
    cards = {card.rule_id: card for card in response.cards}
    assert cards["opioid-active"].indicator == "critical"
    assert f"conditions: the EHR reported an error ({shown})" in str(cards["patient-data-unverified"].detail)
    assert set(response.deviations) == {"prefetch-batch-entries", "unreadable-prefetch-item"}


def test_a_failed_entry_of_a_batch_response_bundle_is_said_and_the_others_read(pipeline: Pipeline) -> None:
    body = scenario()
    searchset = body["prefetch"]["medicationRequests"]
    body["prefetch"]["medicationRequests"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": searchset, "response": {"status": "200"}}, {"response": {"status": "500"}}],
    }
    response = pipeline.run(pipeline.service_for_hook("order-select"), body, rules_url=RULES_URL)
    cards = {card.rule_id: card for card in response.cards}
    assert cards["opioid-active"].indicator == "critical"  # the opioid in the readable entry still counts
    assert "opioid-history-unverified" in cards
    assert {"nested-bundles", "unreadable-prefetch-item"} <= set(response.deviations)


def test_a_failed_entry_with_a_null_resource_type_is_a_failed_query_not_no_data(pipeline: Pipeline) -> None:
    body = scenario()
    body["prefetch"]["medicationRequests"] = {"response": {"status": "500"}, "resourceType": None}
    cards, named = run(pipeline, body)
    assert "opioid-history-unverified" in cards
    assert "unreadable-prefetch-item" in named


def test_a_search_cut_short_even_as_a_warning_is_unverified_data(pipeline: Pipeline) -> None:
    body = scenario()
    body["prefetch"]["medicationRequests"]["entry"].append(
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": "results truncated"}],
            },
            "search": {"mode": "outcome"},
        }
    )
    cards, _ = run(pipeline, body)
    assert cards["opioid-active"] == "critical" and "opioid-history-unverified" in cards


def test_a_draft_entry_with_both_shapes_is_checked_where_it_is_read(client: FlaskClient) -> None:
    body = scenario()
    entry = body["context"]["draftOrders"]["entry"][0]
    entry["resourceType"] = "MedicationRequest"
    entry["resource"]["dosageInstruction"] = ["50 mg daily"]
    assert_operation_outcome(client.post(service_path("order-select"), json=body), 400, "dosageInstruction")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda body: body.update(hookInstance="call-17"), "hook-instance-not-uuid"),
        (
            lambda body: body["context"].update(
                selections=[s.split("/")[-1] for s in body["context"]["selections"]]
            ),
            "untyped-selections",
        ),
        (lambda body: body["context"]["draftOrders"].pop("type"), "bundle-without-type"),
    ],
    ids=["hookInstance", "selections", "Bundle.type"],
)
def test_other_deviations_are_named(pipeline: Pipeline, change: Callable[[Body], Any], named: str) -> None:
    body = scenario()
    expected, _ = run(pipeline, copy.deepcopy(body))
    change(body)
    cards, found = run(pipeline, body)
    assert cards == expected and named in found


def test_the_request_is_never_modified(pipeline: Pipeline) -> None:
    body = nested_draft_bundle(prefetch_in_context(batch_response_prefetch(user_at_top_level(scenario()))))
    sent = copy.deepcopy(body)
    run(pipeline, body)
    assert body == sent


def test_a_successful_batch_entry_without_a_resource_is_not_read_as_no_data(pipeline: Pipeline) -> None:
    body = scenario()
    body["prefetch"]["conditions"] = {"response": {"status": "200 OK"}}
    response = pipeline.run(pipeline.service_for_hook("order-select"), body, rules_url=RULES_URL)
    cards = {card.rule_id: card for card in response.cards}
    assert "query answered 200 without a result" in str(cards["patient-data-unverified"].detail)
    assert {"prefetch-batch-entries", "unreadable-prefetch-item"} <= set(response.deviations)


def test_a_bundle_nested_too_deep_is_a_failed_query_in_prefetch_and_a_400_in_drafts(
    pipeline: Pipeline, client: FlaskClient
) -> None:
    body = scenario()
    deep: Body = body["prefetch"]["conditions"]
    for _ in range(6):
        deep = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": deep}]}
    body["prefetch"]["conditions"] = deep
    cards, named = run(pipeline, body)
    assert "patient-data-unverified" in cards and "unreadable-prefetch-item" in named
    drafts = scenario()
    nested: Body = drafts["context"]["draftOrders"]
    for _ in range(6):
        nested = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": nested}]}
    drafts["context"]["draftOrders"] = nested
    assert_operation_outcome(client.post(service_path("order-select"), json=drafts), 400, "cannot be read")


def test_epic_length_ids_are_read_and_echoed_in_suggestions(client: FlaskClient) -> None:
    """Epic's draft order ids run to about 200 characters; FHIR allows 64."""
    long_id = "eIdRHpjeEzbLS3ZcGmRmVZ8bbravWOED29hdNLJSFBrBdzDWOqd1a5MMIjQ874tKP8pBlftzNEoXvBp." * 2
    body = scenario()
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = long_id
    body["context"]["selections"] = [f"MedicationRequest/{long_id}"]
    response = client.post(service_path("order-select"), json=body)
    assert response.status_code == 200
    assert_valid("CdsResponse", response.get_json())
    cancel = by_rule(response.get_json()["cards"])["opioid-active"]["suggestions"]
    deletes = [a for s in cancel for a in s["actions"] if a["type"] == "delete"]
    assert deletes and deletes[0]["resourceId"] == f"MedicationRequest/{long_id}"


def test_every_deviation_has_words(pipeline: Pipeline) -> None:
    named = set().union(*(deviations for _, deviations in SHAPES.values()))
    assert named <= set(DEVIATIONS) and all(DEVIATIONS[name].strip() for name in DEVIATIONS)


def test_a_request_without_a_user_is_answered(pipeline: Pipeline) -> None:
    body = scenario()
    del body["context"]["userId"]
    cards, named = run(pipeline, body)
    assert cards["opioid-active"] == "critical" and named == {"no-user"}


def test_stu3_statuses_are_read(pipeline: Pipeline) -> None:
    """STU3 Condition.clinicalStatus is a plain code ("active"), R4's a CodeableConcept."""
    body = scenario("hepatic-contraindication")
    for entry in body["prefetch"]["conditions"]["entry"]:
        condition = entry["resource"]
        condition["clinicalStatus"] = condition["clinicalStatus"]["coding"][0]["code"]
        condition.pop("verificationStatus", None)
    cards, named = run(pipeline, body)
    assert cards["hepatic-contraindication"] == "critical" and named == {"stu3-resources"}
    for entry in body["prefetch"]["conditions"]["entry"]:
        entry["resource"]["clinicalStatus"] = "resolved"  # an STU3 code that ends the condition
    cards, _ = run(pipeline, body)
    assert "hepatic-contraindication" not in cards


# ------------------------------------------------------------------------------- medication-prescribe


def medication_prescribe(body: Body, *, as_list: bool) -> Body:
    """``body`` as a client of the deprecated hook sends it: draft orders in context.medications."""
    context = _context(body)
    drafts = context.pop("draftOrders")
    context.pop("selections", None)
    context["medications"] = [entry["resource"] for entry in drafts["entry"]] if as_list else drafts
    body["hook"] = "medication-prescribe"
    return body


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "Bundle"])
def test_medication_prescribe_reviews_like_order_select(pipeline: Pipeline, as_list: bool) -> None:
    canonical = scenario("lft-needed")  # an information card: shown, as at order-select (not order-sign)
    expected, _ = run(pipeline, copy.deepcopy(canonical))
    assert "info" in expected.values()
    cards, named = run(pipeline, medication_prescribe(copy.deepcopy(canonical), as_list=as_list))
    assert cards == expected and named == {"medication-prescribe"}


def test_medication_prescribe_reads_prefetch_from_the_context(pipeline: Pipeline) -> None:
    canonical = scenario()
    expected, _ = run(pipeline, copy.deepcopy(canonical))
    body = medication_prescribe(copy.deepcopy(canonical), as_list=True)
    body["context"]["prefetch"] = body.pop("prefetch")
    cards, named = run(pipeline, body)
    assert cards == expected and named == {"medication-prescribe", "prefetch-in-context"}


def test_medication_prescribe_is_served_over_http(client: FlaskClient) -> None:
    body = medication_prescribe(scenario(), as_list=False)
    discovery = client.get("/cds-services").get_json()
    listed = {service["id"]: service["hook"] for service in discovery["services"]}
    assert listed["naltrexone-medication-prescribe"] == "medication-prescribe"
    response = client.post(service_path("medication-prescribe"), json=body)
    assert response.status_code == 200
    assert_valid("CdsResponse", response.get_json())
    assert by_rule(response.get_json()["cards"])["opioid-active"]["indicator"] == "critical"


def test_the_order_hooks_still_refuse_context_medications(client: FlaskClient) -> None:
    body = medication_prescribe(scenario(), as_list=True)
    body["hook"] = "order-sign"
    assert_operation_outcome(client.post(service_path("order-sign"), json=body), 400, "draftOrders")


# ------------------------------------------------------------------------------- what is refused


def test_a_request_without_any_patient_is_400_naming_the_field(client: FlaskClient) -> None:
    body = scenario()
    del body["context"]["patientId"]
    outcome = assert_operation_outcome(client.post(service_path("order-select"), json=body), 400, "patientId")
    assert outcome["issue"][0]["expression"] == ["context.patientId"]


def test_two_different_patients_are_400(client: FlaskClient) -> None:
    body = scenario()
    body["patient"] = "Patient/someone-else"
    outcome = assert_operation_outcome(
        client.post(service_path("order-select"), json=body), 400, "different patients"
    )
    assert outcome["issue"][0]["expression"] == ["patient"]


def test_the_same_patient_given_twice_is_read(pipeline: Pipeline) -> None:
    body = scenario()
    body["patient"] = "Patient/" + body["context"]["patientId"]
    cards, named = run(pipeline, body)
    assert cards["opioid-active"] == "critical" and named == {"patient-at-top-level"}


def test_a_dstu2_medication_order_is_400_naming_the_version(client: FlaskClient) -> None:
    """What the CDS Hooks sandbox sends when its FHIR server is DSTU2."""
    order = {
        "resourceType": "MedicationOrder",
        "id": "draft-1",
        "status": "draft",
        "patient": {"reference": "Patient/pat-tests-1"},
        "medicationCodeableConcept": naltrexone_order()["medicationCodeableConcept"],
    }
    body = hook_request(drafts=[order], selections=["MedicationOrder/draft-1"])
    assert_operation_outcome(
        client.post(service_path("order-select"), json=body), 400, "DSTU2 MedicationOrder", "R4"
    )


# ------------------------------------------------------------------------------- another patient's order


def test_an_order_for_another_patient_is_answered_with_a_critical_card_first(client: FlaskClient) -> None:
    body = scenario()
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    response = client.post(service_path("order-select"), json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert cards[0]["source"]["topic"]["code"] == "patient-mismatch" and cards[0]["indicator"] == "critical"
    assert "Patient/someone-else" in cards[0]["detail"] and "Patient/pat-tests-1" in cards[0]["detail"]
    # the chart's record is still checked, and said to be the chart's
    assert by_rule(cards)["opioid-active"]["indicator"] == "critical"
    assert "open chart" in cards[0]["detail"]
    assert all(card["indicator"] in (CONTRACT | ADDITIONS)[card["source"]["topic"]["code"]] for card in cards)


def test_an_order_naming_the_chart_patient_by_url_is_the_same_patient(pipeline: Pipeline) -> None:
    body = scenario()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/pat-tests-1"}
    cards, _ = run(pipeline, body)
    assert "patient-mismatch" not in cards


def test_stu3_dose_and_verification_status_are_named(pipeline: Pipeline) -> None:
    body = scenario()
    dosage = body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
    dosage["doseQuantity"] = dosage.pop("doseAndRate")[0]["doseQuantity"]
    expected, _ = run(pipeline, scenario())
    cards, named = run(pipeline, body)
    assert cards == expected and named == {"stu3-resources"}
