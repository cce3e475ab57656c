"""Feedback and the audit trail end to end: the real server (gunicorn, two workers) over HTTP, writing to
a SQLite file and to the real PostgreSQL server alike (the ``backend`` fixture runs each test on both)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.feedback import feedback_item
from cds_service.store import FeedbackItem, InvalidFeedback, OverrideReason, Store
from fhir_fixtures import as_of_today as scenario
from tests.support import assert_operation_outcome, assert_valid
from tests.support.databases import Backend, dump, raw_text
from tests.support.feedback import SANDBOX_REASON_SYSTEM, accepted, overridden
from tests.support.live import LiveServer, clean_environ

pytestmark = pytest.mark.live

SECRET = "feedback-test-secret-0123456789"
SELECT = "naltrexone-order-select"
SIGN = "naltrexone-order-sign"
FORK = multiprocessing.get_context("fork")


class AuditedServer:
    """The real server writing its audit trail to a database of its own."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.database_url = database_url
        self.env = {"NALTREXONE_CDS_DATABASE_URL": database_url, "NALTREXONE_CDS_AUDIT_SECRET": SECRET}
        self.server = LiveServer(log_path, env=self.env, workers=2)

    def cards(self, name: str, service: str = SELECT, **ids: str) -> list[dict[str, Any]]:
        with self.server.client() as http:
            response = http.post(f"/cds-services/{service}", json=scenario(name, **ids))
        assert response.status_code == 200, response.text
        cards: list[dict[str, Any]] = response.json()["cards"]
        assert cards, f"{name} gave no cards"
        return cards

    def feedback(self, service: str, *items: dict[str, Any]) -> httpx.Response:
        with self.server.client() as http:
            return http.post(f"/cds-services/{service}/feedback", json={"feedback": list(items)})

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def audited(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedServer]:
    server = AuditedServer(backend.new_url(), tmp_path_factory.mktemp("feedback") / "server.log")
    yield server
    server.stop()


def rows(server: AuditedServer, table: str, **where: Any) -> list[dict[str, Any]]:
    return [
        row
        for row in dump(server.database_url)[table]
        if all(row[key] == value for key, value in where.items())
    ]


# --------------------------------------------------------------------------------------------- audit


def test_every_card_issued_is_audited_with_its_suggestions(audited: AuditedServer) -> None:
    body = scenario("test-dose")
    with audited.server.client() as http:
        answer = http.post(f"/cds-services/{SELECT}", json=body).json()
        rules_version = http.get("/health").json()["rules"]
    issued = rows(audited, "issued_card", hook_instance=body["hookInstance"])
    assert {row["card_uuid"] for row in issued} == {card["uuid"] for card in answer["cards"]}
    for card in answer["cards"]:
        (row,) = (row for row in issued if row["card_uuid"] == card["uuid"])
        assert row["rule_id"] == card["source"]["topic"]["code"]
        assert row["indicator"] == card["indicator"]
        assert (row["hook"], row["service_id"], row["rules_version"]) == (
            "order-select",
            SELECT,
            rules_version,
        )
        suggestions = {
            s["suggestion_uuid"] for s in rows(audited, "issued_suggestion", card_uuid=card["uuid"])
        }
        assert suggestions == {s["uuid"] for s in card.get("suggestions", ())}


def test_no_patient_or_user_identifier_is_stored_in_clear(audited: AuditedServer) -> None:
    patient_id = f"patient-{uuid.uuid4().hex}"
    user_id = f"Practitioner/clinician-{uuid.uuid4().hex}"
    cards = audited.cards("test-dose", patient_id=patient_id, user_id=user_id)
    assert audited.feedback(SELECT, accepted(cards[0])).status_code == 200

    stored = raw_text(audited.database_url)
    assert cards[0]["uuid"] in stored  # the search below reads what the database really holds
    for identifier in (patient_id, user_id, user_id.split("/")[1]):
        assert identifier not in stored
    # ...only its keyed hash, the same one the service would compute for the same id (linkable, not readable)
    store = Store(audited.database_url, secret=SECRET)
    try:
        (row,) = rows(audited, "issued_card", card_uuid=cards[0]["uuid"])
        assert row["patient_hash"] == store.pseudonym("patient", patient_id)
        assert row["user_hash"] == store.pseudonym("user", user_id)
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ feedback


def test_sandbox_shaped_accepted_and_overridden_feedback_is_recorded(audited: AuditedServer) -> None:
    (card,) = audited.cards("test-dose")
    (lft,) = [c for c in audited.cards("lft-needed") if c["source"]["topic"]["code"] == "lft-needed"]
    response = audited.feedback(
        SELECT, accepted(card), overridden(lft, "no-lft", "LFTs drawn at outside lab")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 2, "duplicates": 0}
    assert_valid("FeedbackResponse", response.json())

    (taken,) = rows(audited, "card_feedback", card_uuid=card["uuid"])
    assert taken["outcome"] == "accepted"
    assert taken["accepted_suggestions"] == [card["suggestions"][0]["uuid"]]
    (declined,) = rows(audited, "card_feedback", card_uuid=lft["uuid"])
    assert (declined["outcome"], declined["override_system"], declined["override_code"]) == (
        "overridden",
        SANDBOX_REASON_SYSTEM,
        "no-lft",
    )
    assert declined["user_comment"] == "LFTs drawn at outside lab"


def test_a_repeated_feedback_is_acknowledged_and_stored_once(audited: AuditedServer) -> None:
    (card,) = audited.cards("test-dose")
    item = accepted(card)
    first, again = audited.feedback(SELECT, item), audited.feedback(SELECT, item)
    assert first.json() == {"recorded": 1, "duplicates": 0}
    assert again.status_code == 200
    assert again.json() == {"recorded": 0, "duplicates": 1}
    assert len(rows(audited, "card_feedback", card_uuid=card["uuid"])) == 1


def test_a_later_change_of_mind_is_recorded_beside_the_first(audited: AuditedServer) -> None:
    (card,) = audited.cards("test-dose")
    assert audited.feedback(SELECT, accepted(card)).json()["recorded"] == 1
    assert audited.feedback(SELECT, overridden(card, "patient-declined")).json()["recorded"] == 1
    outcomes = sorted(row["outcome"] for row in rows(audited, "card_feedback", card_uuid=card["uuid"]))
    assert outcomes == ["accepted", "overridden"]


def test_feedback_on_an_unknown_card_is_refused_by_name_and_nothing_is_recorded(
    audited: AuditedServer,
) -> None:
    (card,) = audited.cards("test-dose")
    stranger = str(uuid.uuid4())
    response = audited.feedback(SELECT, accepted(card), {**overridden(card, "x"), "card": stranger})
    assert_operation_outcome(response, 404, stranger[:8])
    assert rows(audited, "card_feedback", card_uuid=card["uuid"]) == []  # the batch is all or nothing


def test_feedback_sent_to_the_other_service_is_refused(audited: AuditedServer) -> None:
    (card,) = audited.cards("test-dose")
    assert_operation_outcome(audited.feedback(SIGN, accepted(card)), 404, card["uuid"][:8])
    assert audited.feedback(SELECT, accepted(card)).status_code == 200


def test_accepting_a_suggestion_the_card_never_offered_is_refused(audited: AuditedServer) -> None:
    (card,) = audited.cards("test-dose")
    forged = {**accepted(card), "acceptedSuggestions": [{"id": str(uuid.uuid4())}]}
    assert_operation_outcome(audited.feedback(SELECT, forged), 400, "suggestion")
    assert rows(audited, "card_feedback", card_uuid=card["uuid"]) == []


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [{"card": "c", "outcome": "accepted"}]}, "outcomeTimestamp"),
        (
            {"feedback": [{"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-11-22T01:35:08Z"}]},
            "outcome",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
            "outcomeTimestamp",
        ),
        ({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-11-22T01:35:08Z"}]}, "card"),
    ],
)
def test_invalid_feedback_is_a_400_naming_the_field(audited: AuditedServer, body: Any, names: str) -> None:
    with audited.server.client() as http:
        response = http.post(f"/cds-services/{SELECT}/feedback", json=body)
    assert_operation_outcome(response, 400, names)


def test_feedback_transport_errors_and_cors_match_the_hook_endpoints(audited: AuditedServer) -> None:
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    with audited.server.client() as http:
        wrong_type = http.post(
            f"/cds-services/{SELECT}/feedback",
            content=b"{}",
            headers={"Content-Type": "text/plain", **origin},
        )
        malformed = http.post(
            f"/cds-services/{SELECT}/feedback",
            content=b'{"feedback": [',
            headers={"Content-Type": "application/json", **origin},
        )
        no_service = http.post("/cds-services/no-such-service/feedback", json={"feedback": []})
        preflight = http.options(
            f"/cds-services/{SELECT}/feedback",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    assert_operation_outcome(wrong_type, 415, "application/json")
    assert_operation_outcome(malformed, 400)
    assert_operation_outcome(no_service, 404, "no-such-service")
    assert preflight.status_code == 200
    for response in (wrong_type, malformed, preflight):
        assert response.headers["Access-Control-Allow-Origin"] in ("*", origin["Origin"])


def _send_feedback_for_every_card(url: str, cards: list[dict[str, Any]], outbox: Any) -> None:
    counts = Counter[str]()
    with httpx.Client(base_url=url, timeout=30) as http:
        for card in cards:
            response = http.post(f"/cds-services/{SELECT}/feedback", json={"feedback": [card]})
            counts[str(response.status_code)] += 1
            if response.status_code == 200:
                counts.update({key: value for key, value in response.json().items()})
    outbox.put(dict(counts))


def test_concurrent_feedback_from_several_processes_loses_nothing_and_doubles_nothing(
    audited: AuditedServer,
) -> None:
    cards = [card for _ in range(12) for card in audited.cards("test-dose")]
    items = [accepted(card) for card in cards]  # every process reports the same clicks, as retries would
    outbox = FORK.Queue()
    senders = [
        FORK.Process(target=_send_feedback_for_every_card, args=(audited.server.url, items, outbox))
        for _ in range(4)
    ]
    for sender in senders:
        sender.start()
    totals = Counter[str]()
    for _ in senders:
        totals.update(outbox.get(timeout=120))
    for sender in senders:
        sender.join(timeout=30)
        assert sender.exitcode == 0

    assert totals["200"] == 4 * len(items), totals  # no 5xx, no lock timeouts
    assert (totals["recorded"], totals["duplicates"]) == (len(items), 3 * len(items))
    recorded = Counter(
        row["card_uuid"]
        for row in dump(audited.database_url)["card_feedback"]
        if row["card_uuid"] in {card["uuid"] for card in cards}
    )
    assert recorded == Counter({card["uuid"]: 1 for card in cards})


# -------------------------------------------------------------------------------------------- report


def test_the_report_counts_a_known_history(backend: Backend, tmp_path: Path) -> None:
    server = AuditedServer(backend.new_url(), tmp_path / "server.log")
    try:
        select_cards = [
            card for name in ["test-dose"] * 5 + ["lft-needed"] * 2 for card in server.cards(name)
        ]
        sign_cards = server.cards("order-sign-start", service=SIGN)
        test_doses = [card for card in select_cards if card["source"]["topic"]["code"] == "test-dose"]
        lft_card = next(card for card in select_cards if card["source"]["topic"]["code"] == "lft-needed")
        assert server.feedback(SELECT, *(accepted(card) for card in test_doses[:2])).status_code == 200
        assert server.feedback(SELECT, overridden(test_doses[2], "already-tolerated")).status_code == 200
        assert server.feedback(SELECT, overridden(test_doses[3], "already-tolerated")).status_code == 200
        assert server.feedback(SELECT, overridden(test_doses[4], "patient-declined")).status_code == 200
        assert server.feedback(SELECT, overridden(lft_card, "no-lft")).status_code == 200
    finally:
        server.stop()
    issued = Counter(card["source"]["topic"]["code"] for card in select_cards)
    assert issued["test-dose"] > 5 and issued["lft-needed"] == 2  # lft-needed's patient is also a new start

    def report(*options: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).with_name("naltrexone-cds")), "report", *options]
        return subprocess.run(
            command, env={**clean_environ(), **server.env}, capture_output=True, text=True, check=True
        )

    by_rule = {row["rule_id"]: row for row in json.loads(report("--service", SELECT, "--json").stdout)}
    assert {rule: row["issued"] for rule, row in by_rule.items()} == dict(issued)
    dose = by_rule["test-dose"]
    assert (dose["accepted"], dose["overridden"], dose["no_feedback"]) == (2, 3, issued["test-dose"] - 5)
    assert [(r["code"], r["count"]) for r in dose["top_override_reasons"]] == [
        ("already-tolerated", 2),
        ("patient-declined", 1),
    ]
    lft = by_rule["lft-needed"]
    assert (lft["accepted"], lft["overridden"], lft["no_feedback"]) == (0, 1, 1)
    assert [(r["system"], r["code"]) for r in lft["top_override_reasons"]] == [
        (SANDBOX_REASON_SYSTEM, "no-lft")
    ]

    everything = {row["rule_id"]: row["issued"] for row in json.loads(report("--json").stdout)}
    assert Counter(everything) == issued + Counter(card["source"]["topic"]["code"] for card in sign_cards)

    table = report("--service", SELECT).stdout
    assert "test-dose" in table and "already-tolerated" in table
    csv_lines = report("--service", SELECT, "--csv").stdout.splitlines()
    assert csv_lines[0].startswith("rule_id,issued,accepted,overridden")
    assert f"test-dose,{issued['test-dose']},2,3," in "\n".join(csv_lines)

    future = report("--service", SELECT, "--from", "2100-01-01", "--to", "2100-01-31").stdout
    assert "No cards were issued" in future


# ------------------------------------------------------------------------------------ database down


def test_with_the_database_down_advice_continues_feedback_is_503_and_gaps_are_counted(
    backend: Backend, tmp_path: Path
) -> None:
    server = AuditedServer(backend.down_url(), tmp_path / "server.log")
    try:
        patient_id = f"patient-{uuid.uuid4().hex}"
        answers = [server.cards("test-dose", patient_id=patient_id) for _ in range(5)]
        assert all(card["source"]["topic"]["code"] == "test-dose" for cards in answers for card in cards)
        with server.server.client() as http:
            health = [http.get("/health").json() for _ in range(4)]  # whichever worker answers
        assert {h["database"] for h in health} == {"unavailable"}
        assert {h["audit_gaps"] for h in health} == {5}

        response = server.feedback(SELECT, accepted(answers[0][0]))
        assert_operation_outcome(response, 503, "retry")
        assert int(response.headers["Retry-After"]) > 0
        logs = server.server.logs()
    finally:
        server.stop()
    gap_lines = [line for line in logs.splitlines() if "audit gap" in line]
    assert len(gap_lines) == 5
    assert patient_id not in logs


def test_feedback_items_are_read_from_cds_hooks_json() -> None:
    t0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    override_system = "http://naltrexone-cds.org/fhir/CodeSystem/override-reason"
    spec_accepted = {
        "card": "card-1",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "sugg-1"}],
        "outcomeTimestamp": "2026-11-22T12:00:00Z",
    }
    sandbox_overridden = {
        "card": "card-2",
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": "opioid-stopped", "system": override_system},
            "userComment": "ok",
        },
        "outcomeTimestamp": "2026-11-22T13:00:00.5+01:00",
    }
    assert feedback_item(spec_accepted) == FeedbackItem("card-1", "accepted", t0, ("sugg-1",))
    item = feedback_item(sandbox_overridden)
    assert item.override_reason == OverrideReason(override_system, "opioid-stopped", None)
    assert item.user_comment == "ok" and item.outcome_timestamp == t0 + timedelta(microseconds=500000)
    bad: list[tuple[dict[str, Any], str]] = [
        ({**spec_accepted, "card": ""}, "without a card uuid"),
        ({**spec_accepted, "outcome": "ignored"}, "accepted or overridden"),
        ({**spec_accepted, "outcomeTimestamp": "2026-11-22T12:00:00"}, "outcomeTimestamp"),
        ({**spec_accepted, "outcomeTimestamp": "yesterday"}, "outcomeTimestamp"),
        ({**spec_accepted, "acceptedSuggestions": ["sugg-1"]}, "acceptedSuggestions"),
        ({**sandbox_overridden, "overrideReason": {"reason": "stopped"}}, "overrideReason"),
        ({**sandbox_overridden, "acceptedSuggestions": [{"id": "s"}]}, "cannot have accepted suggestions"),
    ]
    for body, message in bad:
        with pytest.raises(InvalidFeedback, match=message):
            feedback_item(body)
