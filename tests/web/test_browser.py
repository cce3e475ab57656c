"""The pages in a real browser: Debian's Chromium driven by Playwright (the system executable; nothing is
downloaded), against the real server in its demo configuration (bundled demo issuers, JWTs required).

Screenshots go to the test's temporary directory; with NALTREXONE_CDS_UPDATE_SCREENSHOTS=1 they also
replace the ones in docs/images/ that the README shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fhir_fixtures import load
from fhir_fixtures.scenarios_cards import HOSTILE_NAME
from tests.support.live import LiveServer, clean_environ

pytestmark = pytest.mark.live

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: apt-get install -y chromium (.ci/run does it)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("demo")
    database = f"sqlite:///{folder / 'audit.sqlite3'}"
    live = LiveServer(
        folder / "server.log",
        env={**clean_environ(), "NALTREXONE_CDS_DATABASE_URL": database},
        authenticated=True,  # the demo configuration: the page's calls carry real demo-client JWTs
    )
    live.database_url = database  # type: ignore[attr-defined]
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = context.new_page()
    opened.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    yield opened
    context.close()


def screenshot(page: Page, tmp_path: Path, name: str, selector: str | None = None) -> None:
    target = tmp_path / name
    if selector:
        page.locator(selector).first.screenshot(path=str(target))
    else:
        page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 1000
    if os.environ.get("NALTREXONE_CDS_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, DOCS_IMAGES / name)


def send(
    page: Page, server: LiveServer, scenario: str, order: str = "scenario", hook: str = "order-select"
) -> None:
    page.goto(f"{server.url}/demo")
    page.select_option("#scenario", scenario)
    page.select_option("#order", order)
    page.select_option("#hook", hook)
    page.click("#send")
    expect(page.locator("#cards[data-loaded]")).to_be_attached()
    expect(page.locator("#error")).to_be_hidden()


def shown_rules(page: Page) -> dict[str, str]:
    cards = page.locator("#cards article.card")
    return {
        cards.nth(i).get_attribute("data-rule") or "": (cards.nth(i).get_attribute("class") or "").split()[-1]
        for i in range(cards.count())
    }


@pytest.mark.parametrize(
    ("scenario", "order", "hook"),
    [
        ("opioid-recent-dispense", "scenario", "order-select"),
        ("test-dose", "scenario", "order-select"),
        ("surgery-booked-in-21-days-injection", "scenario", "order-sign"),
        ("opioid-blockade", "scenario", "order-select"),
    ],
)
def test_scenarios_give_their_cards_in_the_browser(
    page: Page, server: LiveServer, tmp_path: Path, scenario: str, order: str, hook: str
) -> None:
    send(page, server, scenario, order, hook)
    expected = load(scenario)[1]
    shown = shown_rules(page)
    for rule_id, indicator in expected["cards"].items():
        assert shown.get(rule_id) == indicator, f"{rule_id}: {shown}"
    for rule_id in expected["absent"]:
        assert rule_id not in shown
    assert json.loads(page.locator("#request").inner_text())["hook"] == hook
    assert json.loads(page.locator("#response").inner_text())["cards"]
    if scenario == "opioid-recent-dispense":
        screenshot(page, tmp_path, "demo.png")
        screenshot(page, tmp_path, "card.png", "#cards article.card")


def test_accepting_a_suggestion_is_real_feedback_that_the_report_counts(
    page: Page, server: LiveServer, tmp_path: Path
) -> None:
    send(page, server, "test-dose")
    card = page.locator('#cards article.card[data-rule="test-dose"]')
    card.locator("button.accept").first.click()
    line = page.locator('.report-line[data-rule="test-dose"]')
    expect(line).to_contain_text("accepted")
    counts = re.search(r"accepted (\d+) \(was (\d+)\)", line.inner_text())
    assert counts and int(counts.group(1)) == int(counts.group(2)) + 1
    expect(card.locator(".done")).to_contain_text("Accepted: ")
    # the same count through the report command, on the server's own database
    report = subprocess.run(
        [str(Path(sys.executable).with_name("naltrexone-cds")), "report", "--json"],
        env={**clean_environ(), "NALTREXONE_CDS_DATABASE_URL": server.database_url},  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {row["rule_id"]: row for row in json.loads(report.stdout)}
    assert rows["test-dose"]["accepted"] == int(counts.group(1))


def test_overriding_a_card_sends_the_reason(page: Page, server: LiveServer) -> None:
    send(page, server, "opioid-active-prescription")
    card = page.locator('#cards article.card[data-rule="opioid-active"]')
    card.locator("select.reason").select_option("record-out-of-date")
    card.locator("button.override").click()
    expect(card.locator(".done")).to_contain_text("Overridden: Medication or problem list is out of date")
    expect(page.locator('.report-line[data-rule="opioid-active"]')).to_contain_text("overridden")


def test_a_card_links_to_its_rule_page(page: Page, server: LiveServer, tmp_path: Path) -> None:
    send(page, server, "naloxone-challenge-failed")
    card = page.locator('#cards article.card[data-rule="naloxone-challenge-failed"]')
    card.locator("a.rule-link").click()
    expect(page).to_have_url(f"{server.url}/rules/naloxone-challenge-failed")
    expect(page.locator("h1")).to_have_text("Failed naloxone challenge")
    page.goto(f"{server.url}/rules/naloxone-challenge-needed")
    expect(page.locator(".procedure")).to_contain_text("inject 0.2 mg and watch 30 seconds")
    screenshot(page, tmp_path, "rule-page.png")


def test_record_text_that_looks_like_markup_stays_text(page: Page, server: LiveServer) -> None:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if message.type == "error" else None)
    send(page, server, "record-text-that-looks-like-markup")
    assert page.evaluate("window.__xss") is None
    cards = page.locator("#cards")
    assert cards.locator("script, img, b").count() == 0
    shown = cards.inner_text()
    assert "[the full report](javascript:window.__xss=3) <b onmouseover=alert(4)>" in shown  # quoted as text
    for i in range(cards.locator("a").count()):
        href = cards.locator("a").nth(i).get_attribute("href") or ""
        assert href.startswith("http"), href
    assert HOSTILE_NAME[:9] in page.locator("#request").inner_text()
    assert not any("Content Security Policy" in v for v in violations), violations
