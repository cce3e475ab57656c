"""The audit report as a clinician or pharmacist reads it: per rule, cards issued, accepted, overridden, no
feedback, and the top override reasons; as a text table, JSON or CSV (``naltrexone-cds report``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Literal

from cds_service.store.records import ReportRow

ReportFormat = Literal["table", "json", "csv"]

_COLUMNS = ("rule", "issued", "accepted", "overridden", "no feedback", "top override reasons")


def _reasons_text(row: ReportRow) -> str:
    return ", ".join(f"{reason.label} ({reason.count})" for reason in row.top_override_reasons)


def render_report(rows: Sequence[ReportRow], fmt: ReportFormat = "table") -> str:
    """The report as a text table (with a total line), as JSON (a list of objects) or as CSV."""
    if fmt == "json":
        return json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["rule_id", "issued", "accepted", "overridden", "no_feedback", "top_override_reasons"]
        )
        for row in rows:
            reasons = "; ".join(f"{r.code or ''}={r.count}" for r in row.top_override_reasons)
            writer.writerow([row.rule_id, row.issued, row.accepted, row.overridden, row.no_feedback, reasons])
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown report format {fmt!r}: table, json or csv")
    if not rows:
        return "No cards were issued in this period.\n"
    body = [
        [row.rule_id, str(row.issued), str(row.accepted), str(row.overridden), str(row.no_feedback), reasons]
        for row in rows
        for reasons in [_reasons_text(row)]
    ]
    total = [sum(getattr(row, name) for row in rows) for name in ("issued", "accepted", "overridden")]
    no_feedback = sum(row.no_feedback for row in rows)
    body.append(["total", *(str(n) for n in total), str(no_feedback), ""])
    widths = [max(len(line[i]) for line in [list(_COLUMNS), *body]) for i in range(len(_COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        numbers = [cell.rjust(width) for cell, width in zip(cells[1:5], widths[1:5], strict=True)]
        return "  ".join([first, *numbers, cells[5]]).rstrip()

    rule = "  ".join("-" * w for w in widths[:5]) + "  " + "-" * widths[5]
    return (
        "\n".join([line(_COLUMNS), rule, *(line(cells) for cells in body[:-1]), rule, line(body[-1])]) + "\n"
    )
