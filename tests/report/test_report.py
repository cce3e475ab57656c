"""The report as text table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cds_service.report import render_report
from cds_service.store import ReasonCount, ReportRow


def test_an_empty_report_renders_in_every_format() -> None:
    assert render_report([], "table") == "No cards were issued in this period.\n"
    assert json.loads(render_report([], "json")) == []
    assert render_report([], "csv").splitlines() == [
        "rule_id,issued,accepted,overridden,no_feedback,top_override_reasons"
    ]
    with pytest.raises(ValueError, match="unknown report format"):
        render_report([], "xml")  # type: ignore[arg-type]


OVERRIDE_SYSTEM = "http://naltrexone-cds.org/fhir/CodeSystem/override-reason"


def test_a_report_in_every_format() -> None:
    stopped = ReasonCount(OVERRIDE_SYSTEM, "opioid-stopped", "stopped", 2)
    out_of_date = ReasonCount(OVERRIDE_SYSTEM, "record-out-of-date", "out of date", 1)
    no_reason = ReasonCount(None, None, None, 1)
    induction = ReasonCount(OVERRIDE_SYSTEM, "supervised-induction", "supervised induction", 1)
    rows = [
        ReportRow("opioid-active", 6, 2, 4, 0, (stopped, out_of_date, no_reason)),
        ReportRow("test-dose", 3, 0, 1, 2, (induction,)),
    ]
    table = render_report(rows, "table")
    lines = table.splitlines()
    assert lines[0].startswith("rule") and lines[0].endswith("no feedback  top override reasons")
    assert lines[2].split()[:5] == ["opioid-active", "6", "2", "4", "0"]
    assert "opioid-stopped (2), record-out-of-date (1), (no reason given) (1)" in lines[2]
    assert lines[-1].split() == ["total", "9", "2", "5", "2"]
    as_json = json.loads(render_report(rows, "json"))
    assert as_json[1] == {
        "rule_id": "test-dose",
        "issued": 3,
        "accepted": 0,
        "overridden": 1,
        "no_feedback": 2,
        "top_override_reasons": [
            {"system": OVERRIDE_SYSTEM, "code": "supervised-induction", "display": "supervised induction"}
            | {"count": 1}
        ],
    }
    as_csv = list(csv.DictReader(io.StringIO(render_report(rows, "csv"))))
    assert as_csv[0] == {
        "rule_id": "opioid-active",
        "issued": "6",
        "accepted": "2",
        "overridden": "4",
        "no_feedback": "0",
        "top_override_reasons": "opioid-stopped=2; record-out-of-date=1; =1",
    }
