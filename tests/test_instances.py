"""Two instances of the real server (gunicorn) behind one PostgreSQL database, as behind a load balancer:
whatever one instance did, the other knows through the database alone — the cards issued, the JWT ids
seen — and the report counts both. Calls carry demo-client JWTs whose audience is the URL the load
balancer's clients call (``NALTREXONE_CDS_PUBLIC_BASE_URL``, the same for both instances)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.demo_client import demo_token
from fhir_fixtures import as_of_today as scenario
from fhir_fixtures.requests import service_path
from tests.support import assert_operation_outcome
from tests.support.databases import Backend, dump
from tests.support.feedback import accepted, overridden
from tests.support.live import LiveServer, clean_environ

pytestmark = pytest.mark.live

SECRET = "instances-test-secret-0123456789"
PUBLIC_BASE = "http://cds.hospital.test"  # the load balancer's address, in front of both instances
SELECT = service_path("order-select")


@dataclass
class Pair:
    database_url: str
    env: dict[str, str]
    a: LiveServer
    b: LiveServer

    def call(
        self, server: LiveServer, path: str, body: dict[str, Any], token: str | None = None
    ) -> httpx.Response:
        bearer = token or demo_token(PUBLIC_BASE + path)
        with server.client() as http:
            return http.post(path, json=body, headers={"Authorization": f"Bearer {bearer}"})

    def cards(self, server: LiveServer, name: str) -> list[dict[str, Any]]:
        response = self.call(server, SELECT, scenario(name))
        assert response.status_code == 200, response.text
        cards: list[dict[str, Any]] = response.json()["cards"]
        assert cards, f"{name} gave no cards"
        return cards


@pytest.fixture
def pair(postgres: Backend, tmp_path: Path) -> Iterator[Pair]:
    url = postgres.new_url()
    env = {
        **clean_environ(),
        "NALTREXONE_CDS_DATABASE_URL": url,
        "NALTREXONE_CDS_AUDIT_SECRET": SECRET,
        "NALTREXONE_CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
    }
    a = LiveServer(tmp_path / "a.log", env=env, authenticated=True)
    try:
        b = LiveServer(tmp_path / "b.log", env=env, authenticated=True)
    except BaseException:
        a.stop()
        raise
    yield Pair(url, env, a, b)
    b.stop()
    a.stop()


def test_a_card_issued_by_one_instance_gets_feedback_through_the_other(pair: Pair) -> None:
    (card, *_) = pair.cards(pair.a, "test-dose")
    pair.a.stop()  # nothing of A is needed any more: what it issued is in the database

    item = accepted(card)
    response = pair.call(pair.b, SELECT + "/feedback", {"feedback": [item]})

    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "duplicates": 0}
    (row,) = dump(pair.database_url)["card_feedback"]
    assert (row["card_uuid"], row["outcome"]) == (card["uuid"], "accepted")
    again = pair.call(pair.b, SELECT + "/feedback", {"feedback": [item]})  # a client's retry
    assert again.json() == {"recorded": 0, "duplicates": 1}


@pytest.mark.parametrize("direction", ["a-then-b", "b-then-a"])
def test_a_token_used_at_one_instance_is_refused_at_the_other(pair: Pair, direction: str) -> None:
    first, second = (pair.a, pair.b) if direction == "a-then-b" else (pair.b, pair.a)
    token = demo_token(PUBLIC_BASE + SELECT)

    used = pair.call(first, SELECT, scenario("test-dose"), token)
    replayed = pair.call(second, SELECT, scenario("test-dose"), token)
    fresh = pair.call(second, SELECT, scenario("test-dose"))  # same audience, new jti: accepted

    assert used.status_code == 200, used.text
    assert_operation_outcome(replayed, 401)
    assert replayed.headers["WWW-Authenticate"].startswith("Bearer")
    assert fresh.status_code == 200, fresh.text
    assert "jti replayed" in second.logs()


def test_the_report_counts_the_cards_of_both_instances(pair: Pair) -> None:
    from_a = [card for _ in range(3) for card in pair.cards(pair.a, "test-dose")]
    from_b = [card for _ in range(2) for card in pair.cards(pair.b, "lft-needed")]
    lft_card = next(card for card in from_b if card["source"]["topic"]["code"] == "lft-needed")
    assert pair.call(pair.b, SELECT + "/feedback", {"feedback": [accepted(from_a[0])]}).status_code == 200
    response = pair.call(pair.a, SELECT + "/feedback", {"feedback": [overridden(lft_card, "no-lft")]})
    assert response.status_code == 200

    command = [str(Path(sys.executable).with_name("naltrexone-cds")), "report", "--json"]
    result = subprocess.run(command, env=pair.env, capture_output=True, text=True, timeout=60, check=True)

    rows = {row["rule_id"]: row for row in json.loads(result.stdout)}
    issued = Counter(card["source"]["topic"]["code"] for card in from_a + from_b)
    assert {rule: row["issued"] for rule, row in rows.items()} == dict(issued)
    assert sum(row["accepted"] for row in rows.values()) == 1
    assert (rows["lft-needed"]["overridden"], rows["lft-needed"]["top_override_reasons"][0]["code"]) == (
        1,
        "no-lft",
    )
