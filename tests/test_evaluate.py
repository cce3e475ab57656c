"""The ``naltrexone-cds evaluate`` command, as a rule author or integrator uses it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cds_service.cli import main
from fhir_fixtures import FIXTURES
from tests.support import assert_valid


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_evaluate_prints_cards_for_a_person() -> None:
    code, printed, _ = run(
        "evaluate", str(FIXTURES / "opioid-recent-dispense" / "request.json"), "--today", "2026-11-22"
    )
    out = " ".join(printed.split())  # lines are wrapped for the terminal
    assert code == 0
    assert "CRITICAL opioid-recent" in out
    assert "Do not start naltrexone before 28 Nov 2026" in out
    assert "MedicationDispense/oxycodone-md-1" in out  # the facts behind the card
    assert "update MedicationRequest/draft-1: Set the order's start date to 28 Nov 2026" in out
    assert "Source: FDA label, naltrexone hydrochloride tablets" in out
    assert out.endswith("1 card(s): 1 critical, 0 warning, 0 info.")


def test_evaluate_json_is_the_raw_response() -> None:
    code, out, _ = run(
        "evaluate", str(FIXTURES / "test-dose" / "request.json"), "--today", "2026-11-22", "--json"
    )
    assert code == 0
    response = json.loads(out)
    assert_valid("CdsResponse", response)
    assert [card["source"]["topic"]["code"] for card in response["cards"]] == ["test-dose"]


def test_evaluate_reads_standard_input_and_reports_no_cards() -> None:
    request = (FIXTURES / "sandbox-no-medication-yet" / "request.json").read_text()
    code, out, _ = run("evaluate", "-", stdin=request)
    assert code == 0
    assert "No cards" in out


def test_a_refused_request_exits_1_with_the_reason() -> None:
    code, _, err = run("evaluate", "-", stdin='{"hook": "order-select"}')
    assert code == 1
    assert "HTTP 400" in err and "hookInstance" in err


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run("evaluate", str(tmp_path / "nope.json"))
    assert code != 0
    assert "nope.json" in err
