"""The rule pages: one per rule, generated at start-up from rules/, with the policy in force."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.pipeline import default_knowledge
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import service_path
from tests.support import assert_operation_outcome, body_of, open_settings

RULES = default_knowledge().rulebook.rules


def html(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    text: str = response.get_data(as_text=True)
    return text


def test_the_index_lists_every_rule_with_its_page(client: FlaskClient) -> None:
    page = html(client, "/rules")
    for rule in RULES:
        assert f'href="/rules/{rule.id}"' in page and rule.fires[:40] in page.replace("&#39;", "'")


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_every_rule_has_a_page_with_what_a_committee_reviews(client: FlaskClient, rule: object) -> None:
    page = html(client, f"/rules/{rule.id}")  # type: ignore[attr-defined]
    for heading in ("When it fires", "What the card says", "Condition", "Override reasons", "Sources"):
        assert f"<h2>{heading}</h2>" in page
    assert "None" not in page and "{" not in page.split("<main>")[1]


def test_the_long_content_cards_link_to_is_on_the_rule_page(client: FlaskClient) -> None:
    challenge = html(client, "/rules/naloxone-challenge-needed")
    assert "inject 0.2 mg and watch 30 seconds" in challenge and "260385009" in challenge
    schedule = html(client, "/rules/ldn-titration")
    assert "<table>" in schedule and "4.5 mg" in schedule


def test_a_local_policy_file_shows_on_the_pages_and_in_the_cards(tmp_path: Path) -> None:
    override = tmp_path / "local-policy.yaml"
    override.write_text("washout_days_short_acting: 7\n")
    client = create_app(open_settings(policy_file=override)).test_client()
    page = html(client, "/rules/opioid-recent")
    assert "<td><code>washout_days_short_acting</code></td><td>7 <em>local</em></td><td>10</td>" in page
    assert "Naltrexone needs 7 opioid-free days" in page


def test_rules_json_for_tools(client: FlaskClient) -> None:
    body = body_of(client.get("/rules.json"))
    assert [rule["id"] for rule in body["rules"]] == [rule.id for rule in RULES]
    recent = next(rule for rule in body["rules"] if rule["id"] == "opioid-recent")
    assert {"name": "washout_days_short_acting", "value": "10", "default": "10"} in recent["policy"]
    assert set(recent["indicators"]) == {"critical", "warning"}
    assert recent["suggestions"][0]["name"] == "move-start"


def test_an_unknown_rule_is_a_404_operation_outcome(client: FlaskClient) -> None:
    assert_operation_outcome(client.get("/rules/no-such-rule"), 404, "no rule")


def test_every_card_links_to_a_page_that_exists(client: FlaskClient) -> None:
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-8, days_supply=3), c.oud())
    cards = body_of(client.post(service_path("order-select"), json=body))["cards"]
    assert cards
    for card in cards:
        (link,) = card["links"]
        assert link["url"] == f"http://localhost/rules/{card['source']['topic']['code']}"
        assert client.get(link["url"].removeprefix("http://localhost")).status_code == 200


def test_the_public_url_is_used_for_links_when_configured() -> None:
    client = create_app(open_settings(public_base_url="https://cds.example.org/naltrexone")).test_client()
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-8, days_supply=3), c.oud())
    (card, *_) = body_of(client.post(service_path("order-select"), json=body))["cards"]
    assert card["links"][0]["url"].startswith("https://cds.example.org/naltrexone/rules/")
