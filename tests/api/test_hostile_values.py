"""The hostile values that once gave a 500 (issue 16), each sent to the real server (gunicorn, two workers):
read safely or refused with a 400 naming the field, the server still serving, no traceback in its log.
And text from the record reaching a card: no control or direction-changing characters, bounded."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order, service_path
from tests.support import assert_valid
from tests.support.live import LiveServer, untroubled_server
from tests.support.mutations import BODY, replaced

DRAFT = ("context", "draftOrders", "entry", 0, "resource")
DOSE = (*DRAFT, "dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value")
REQUEST = ("prefetch", "medicationRequests", "entry", 0, "resource")
LAB = ("prefetch", "labResults", "entry", 1, "resource")
HUGE = 10**400


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with untroubled_server(tmp_path_factory.mktemp("hostile")) as started:
        yield started


def post(server: LiveServer, body: Any, path: str = service_path("order-select")) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.url + path, content=raw, headers={"Content-Type": "application/json"}, timeout=60
    )


def assert_cards(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text[:300]
    assert_valid("CdsResponse", response.json())
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


@pytest.mark.parametrize(
    "path",
    [
        DOSE,
        (*LAB, "valueQuantity", "value"),
        (*LAB, "referenceRange", 0, "high", "value"),
        (*REQUEST, "dispenseRequest", "expectedSupplyDuration", "value"),
        ("prefetch", "medicationDispenses", "entry", 0, "resource", "daysSupply", "value"),
        (*REQUEST, "dispenseRequest", "numberOfRepeatsAllowed"),
    ],
    ids=["dose", "lab value", "reference range", "supply duration", "days supply", "refills"],
)
def test_a_number_past_any_float_is_no_reading_not_a_crash(server: LiveServer, path: tuple[Any, ...]) -> None:
    assert_cards(post(server, replaced(BODY, path, HUGE)))


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
@pytest.mark.parametrize(
    "path",
    [
        (*DRAFT, "authoredOn"),
        (*REQUEST, "authoredOn"),
        (*LAB, "effectiveDateTime"),
        ("prefetch", "medicationDispenses", "entry", 0, "resource", "whenHandedOver"),
    ],
    ids=["draft authoredOn", "prescription authoredOn", "lab effective", "dispense handed over"],
)
def test_a_moment_at_the_edge_of_the_calendar_is_read_safely(
    server: LiveServer, path: tuple[Any, ...], moment: str
) -> None:
    assert_cards(post(server, replaced(BODY, path, moment)))


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (("hookInstance",), "hookInstance"),
        (("context", "patientId"), "context.patientId"),
        (("context", "userId"), "context.userId"),
        (("context", "selections", 0), "context.selections[0]"),
    ],
)
def test_a_lone_surrogate_is_400_naming_the_field(
    server: LiveServer, path: tuple[Any, ...], named: str
) -> None:
    response = post(server, replaced(BODY, path, "\ud800"))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [named]


def test_a_lone_surrogate_in_a_prefetch_key_or_a_feedback_card_id_is_400(server: LiveServer) -> None:
    body = copy.deepcopy(BODY)
    body["prefetch"]["\udc00"] = None
    response = post(server, body)
    assert response.status_code == 400 and "prefetch" in response.json()["issue"][0]["diagnostics"]
    feedback = {
        "feedback": [{"card": "\ud800", "outcome": "accepted", "outcomeTimestamp": "2026-11-22T12:00:00Z"}]
    }
    response = post(server, feedback, service_path("order-select") + "/feedback")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["feedback[0].card"]


def test_a_surrogate_pair_is_a_character_and_is_read(server: LiveServer) -> None:
    body = replaced(BODY, (*DRAFT, "note"), [{"text": "\ud83d\ude00 take with food"}])
    assert_cards(post(server, body))


def test_an_integer_of_more_than_4300_digits_is_400(server: LiveServer) -> None:
    raw = json.dumps(BODY).replace('"hookInstance"', '"x": ' + "7" * 5000 + ', "hookInstance"', 1)
    response = post(server, raw.encode())
    assert response.status_code == 400
    assert "number too long" in response.json()["issue"][0]["diagnostics"]


def test_a_number_past_the_largest_float_in_a_draft_is_400_naming_it(server: LiveServer) -> None:
    """1e400 reads as infinity: a suggestion could not carry the order back, so the order is refused
    with its field named; the same number in the patient's record is a value that cannot be read."""
    raw = json.dumps(replaced(BODY, DOSE, 12345.678)).replace("12345.678", "1e400").encode()
    response = post(server, raw)
    assert response.status_code == 400, response.text[:300]
    where = "context.draftOrders.entry[0].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value"
    assert response.json()["issue"][0]["expression"] == [where]
    assert "too large" in response.json()["issue"][0]["diagnostics"]
    in_record = (*LAB, "valueQuantity", "value")
    assert_cards(
        post(server, json.dumps(replaced(BODY, in_record, 12345.678)).replace("12345.678", "1e400").encode())
    )


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 123456789012345678901234567890, 10**300],
    ids=["2^64", "below int64", "30 digits", "300 digits"],
)
def test_an_integer_beyond_64_bits_is_echoed_exactly_in_the_suggested_order(
    server: LiveServer, value: int
) -> None:
    """The fast JSON codec reads such integers as floats and refuses to write them: the service must
    still read and echo them digit for digit (a draft's extension, copied into the test-dose order)."""
    extension = [{"url": "http://example.org/fhir/StructureDefinition/site-counter", "valueInteger": value}]
    body = c.scenario(c.oud(), c.alt(30), c.ast(28), order=naltrexone_order(extension=extension))
    cards = assert_cards(post(server, body))
    echoed = [
        action["resource"]
        for card in cards
        for suggestion in card.get("suggestions", [])
        for action in suggestion["actions"]
        if action.get("resource", {})
        .get("medicationCodeableConcept", {})
        .get("text", "")
        .startswith("naltrexone")
    ]
    assert len(echoed) == 2, "the test-dose card: the draft as a 25 mg first dose, then 50 mg daily"
    assert all(resource["extension"] == extension for resource in echoed)


@pytest.mark.parametrize("levels", [100, 300, 480])
def test_an_extension_nested_hundreds_deep_in_a_draft_is_400_naming_the_draft(
    server: LiveServer, levels: int
) -> None:
    extension = '{"url": "http://x.org/e", "valueString": "x"}'
    for _ in range(levels):
        extension = '{"url": "http://x.org/e", "extension": [' + extension + "]}"
    text = json.dumps(BODY)
    raw = text.replace('"status": "draft"', '"extension": [' + extension + '], "status": "draft"', 1)
    response = post(server, raw.encode())
    assert response.status_code == 400
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "nested" in diagnostics


def test_record_text_reaches_a_card_clean_and_bounded(server: LiveServer) -> None:
    said = (
        "see note \u202egm 05\u202c <b>bold</b> [link](javascript:alert(1)) \x07\x1b\u200b"
        + "\U000e0049\U000e0047"  # Unicode tag characters: invisible text
        + "A" * 8_000_000
    )
    screen = c.urine_opiates("negative", when=-1)
    screen.pop("valueCodeableConcept", None)
    screen["valueString"] = said
    response = post(server, c.scenario(screen))
    cards = assert_cards(response)
    assert len(response.content) < 20_000  # the 8 MB text is not echoed
    text = " ".join(card["summary"] + card.get("detail", "") for card in cards)
    assert "see note" in text  # what the record says is shown...
    assert not re.search(
        "[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u200b\U000e0000-\U000e007f]", text
    )  # ...nor what hides it
    # markup stays text: escaped, so no renderer makes it a tag or a link
    assert not re.search(r"(?<!\\)<b", text) and not re.search(r"(?<!\\)\]\(javascript", text)


def test_the_server_still_answers_after_all_of_it(server: LiveServer) -> None:
    body = copy.deepcopy(BODY)
    body["hookInstance"] = str(uuid.uuid4())
    assert_cards(post(server, body))
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_the_log_holds_no_traceback(server: LiveServer) -> None:
    assert "Traceback" not in server.logs()
    assert "unhandled error" not in server.logs()


@pytest.mark.parametrize(
    "issue",
    [{"severity": {}, "code": ["x"]}, {"severity": "error", "code": "x", "details": "x"}, 5],
    ids=["unhashable severity and code", "details as a string", "issue not an object"],
)
def test_an_odd_operation_outcome_in_a_searchset_is_read_not_a_crash(server: LiveServer, issue: Any) -> None:
    body = copy.deepcopy(BODY)
    outcome = {"resourceType": "OperationOutcome", "issue": issue if issue == 5 else [issue]}
    body["prefetch"]["conditions"]["entry"].append({"resource": outcome, "search": {"mode": "outcome"}})
    assert_cards(post(server, body))


@pytest.mark.parametrize("entries", [5, True, "x", {"a": 1}])
def test_a_nested_bundle_whose_entries_are_not_a_list_is_answered_or_refused(
    server: LiveServer, entries: Any
) -> None:
    nested = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    in_prefetch = copy.deepcopy(BODY)
    in_prefetch["prefetch"]["conditions"]["entry"].append({"resource": nested})
    assert_cards(post(server, in_prefetch))
    in_drafts = copy.deepcopy(BODY)
    in_drafts["context"]["draftOrders"]["entry"].append({"resource": nested})
    response = post(server, in_drafts)
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        assert response.json()["issue"][0]["diagnostics"]
