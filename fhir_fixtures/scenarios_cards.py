"""Scenarios about what a card shows: text from the record that tries to be markup stays text."""

from __future__ import annotations

from fhir_fixtures import clinical as c
from fhir_fixtures.catalogue import GUIDANCE, add, named, workup

HOSTILE_NAME = 'oxycodone 5 mg <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
HOSTILE_RESULT = "see [the full report](javascript:window.__xss=3) <b onmouseover=alert(4)>here</b>"


def build_cards() -> None:
    statement = c.statement(c.OXYCODONE, start=-30)
    statement["medicationCodeableConcept"] = {"text": HOSTILE_NAME}
    add(
        "record-text-that-looks-like-markup",
        "Record text that looks like markup",
        "A medication's name and a free-text result carry HTML and a javascript: link, as pasted text can: the "
        "card quotes them as text, and no page that shows the card runs them.",
        c.scenario(
            named(statement, "hostile-ms-1"),
            named(c.urine_opiates(HOSTILE_RESULT, when=-1), "hostile-uds-1"),
            *workup(uds=False),
        ),
        cards={"opioid-active": "critical", "result-unreadable": "warning"},
        absent=GUIDANCE,
    )
