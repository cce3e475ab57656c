"""Hostile FHIR below the schema (issue 16): property-based.

Hypothesis puts edge values into realistic requests — numbers past any float, dates at the calendar's
edges and invalid ones, control and direction-changing characters, lone surrogates, huge strings, wrong
types, references of every shape, deleted fields — and the service must answer 200 with cards that keep
the card contract, or a 4xx OperationOutcome that says what is wrong. Never a 500.

Examples per test: ``HYPOTHESIS_PROFILE=ci`` (the default, bounded for the suite) or ``deep`` (by hand, see
docs/reliability.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_fixtures.requests import service_path
from tests.support import assert_valid
from tests.support.live import LiveServer, untroubled_server
from tests.support.mutations import BODY, DRAFT_PATHS, PREFETCH_PATHS, replaced

RAW = "\u0000raw:"
"""A string starting with this is put into the body as the raw JSON text after it (long numbers)."""

EDGE_DATES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01",
    "9999-12-31",
    "2026",
    "2026-11",
    "2026-02-30",
    "2026-13-01",
    "2026-11-22T25:00:00Z",
    "2026-11-22T10:00:00+24:00",
    "2026-11-22T10:00:00.123456789+05:45",
    "2026-11-22T10:00:00",
    "20261122",
    "-2026-01-01",
    "--",
]
REFERENCES = [
    "Patient/",
    "/",
    "#",
    "#missing",
    "urn:uuid:",
    "urn:uuid:not-a-uuid",
    "Medication/../../etc/passwd",
    "a/b/c/d/e",
    "https://",
    "http://[::1",
    "Medication/" + "x" * 5000,
]
SNEAKY_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            *"aZ0 -/.,:;#*_[]<>|`\\\"'",
            *["\u0000", "\u0007", "\n", "\r", "\t", "\u007f", "\u0085"],
            *["\u202e", "\u202d", "\u2066", "\u2069", "\u200b", "\u200f", "\ufeff", "\u2028"],
            *["é", "ß", "中", "🙂", "\U0001d7d8", "\u0301"],
        ]
    ),
    max_size=300,
)
HUGE_NUMBERS = [
    RAW + "1" + "0" * 400,
    RAW + "-" + "9" * 350,
    RAW + "1e308",
    RAW + "-1e308",
    RAW + "1e-400",
    RAW + "-0",
    RAW + "-0.0",
    RAW + "0." + "1" * 5000,
    RAW + "1" * 4400,
    RAW + "123456789012345678901234567890.5",
]

HOSTILE = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_DATES),
    st.sampled_from(REFERENCES).map(lambda r: {"reference": r}),
    st.sampled_from(REFERENCES),
    SNEAKY_TEXT,
    st.sampled_from(["\ud800", "a\udfffb", "x" * 200_000]),
    st.none(),
    st.booleans(),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.just([]),
    st.just({}),
    st.dictionaries(
        st.sampled_from(["value", "unit", "code", "system", "reference"]), SNEAKY_TEXT, max_size=3
    ),
    st.lists(st.dictionaries(st.sampled_from(["coding", "text"]), st.none() | SNEAKY_TEXT), max_size=3),
)
_CONTROL_OR_DIRECTION = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]"
)


def encoded(body: Any) -> bytes:
    """JSON text of ``body``, with RAW strings written as the number literal they carry."""
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        if isinstance(value, str) and value.startswith(RAW):
            raws.append(value.removeprefix(RAW))
            return f"@@raw{len(raws) - 1}@@"
        return value

    text = json.dumps(mark(body))
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@raw{index}@@"', raw, 1)
    return text.encode("utf-8")


def deleted(body: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    copy = replaced(body, path, None)
    target: Any = copy
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, dict):
        del target[path[-1]]
    return copy


def assert_answered_or_refused_clearly(response: Any, sent: str) -> None:
    assert response.status_code in (200, 400), (sent, response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    if response.status_code == 400:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"], sent
        return
    assert_valid("CdsResponse", body)
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert not _CONTROL_OR_DIRECTION.search(card["summary"]), card["summary"]
        assert not _CONTROL_OR_DIRECTION.search(card.get("detail", "").replace("\n", " ")), card["detail"]
        assert len(card.get("detail", "")) < 6000, sent


_DATE_LIKE = re.compile(r"^\d{4}(-\d{2})?(-\d{2})?(T.*)?$")


def at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def hostile_like(original: Any) -> st.SearchStrategy[Any]:
    """Mostly values that pass for the kind of value found there (so the readers get past their type
    checks), sometimes anything."""
    if isinstance(original, (int, float)) and not isinstance(original, bool):
        alike: st.SearchStrategy[Any] = (
            st.sampled_from(HUGE_NUMBERS) | st.floats(allow_nan=False) | st.integers()
        )
    elif isinstance(original, str) and _DATE_LIKE.match(original):
        alike = st.sampled_from(EDGE_DATES)
    elif isinstance(original, str) and "/" in original:
        alike = st.sampled_from(REFERENCES)
    elif isinstance(original, str):
        alike = SNEAKY_TEXT | st.sampled_from(["\ud800", "x" * 200_000])
    else:
        return HOSTILE
    return st.one_of(alike, alike, alike, HOSTILE)


def _kind(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "container"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    if isinstance(value, str) and _DATE_LIKE.match(value):
        return "date"
    if isinstance(value, str) and "/" in value:
        return "reference"
    return "other"


PATHS_BY_KIND: dict[str, list[tuple[Any, ...]]] = {}
for _path in DRAFT_PATHS + PREFETCH_PATHS:
    PATHS_BY_KIND.setdefault(_kind(at(BODY, _path)), []).append(_path)
"""Each kind of place (numbers, dates, references, other values, containers) drawn equally often: the
record has far more strings than numbers, and the numbers are where floats overflow."""


@given(data=st.data())
def test_a_hostile_value_anywhere_the_facts_read_is_answered_or_refused_by_name(
    app: Flask, data: st.DataObject
) -> None:
    path = data.draw(st.one_of(*(st.sampled_from(paths) for paths in PATHS_BY_KIND.values())), label="path")
    value = data.draw(hostile_like(at(BODY, path)), label="value")
    raw = encoded(replaced(BODY, path, value))
    response = app.test_client().post(service_path("order-select"), data=raw, content_type="application/json")
    assert_answered_or_refused_clearly(response, f"{path} = {str(value)[:80]!r}")


@given(
    path=st.sampled_from(DRAFT_PATHS + PREFETCH_PATHS), hook=st.sampled_from(["order-select", "order-sign"])
)
def test_a_missing_field_anywhere_is_answered_or_refused_by_name(
    app: Flask, path: tuple[Any, ...], hook: str
) -> None:
    body = deleted(BODY, path)
    body["hook"] = hook
    if hook == "order-sign":
        body["context"].pop("selections", None)
    response = app.test_client().post(service_path(hook), data=encoded(body), content_type="application/json")
    assert_answered_or_refused_clearly(response, f"deleted {path}")


@given(
    field=st.sampled_from(["card", "outcome", "outcomeTimestamp", "acceptedSuggestions", "overrideReason"]),
    value=HOSTILE,
)
def test_hostile_feedback_is_refused_by_name_never_a_crash(app: Flask, field: str, value: Any) -> None:
    item: dict[str, Any] = {
        "card": "0d3b5d5e-9a43-4a4b-bf33-3c2f6c6f8a10",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-22T12:00:00Z",
        "overrideReason": {"reason": {"code": "x", "system": "y"}},
    }
    item[field] = value
    response = app.test_client().post(
        service_path("order-select") + "/feedback",
        data=encoded({"feedback": [item]}),
        content_type="application/json",
    )
    assert response.status_code in (400, 404), (field, value, response.get_data(as_text=True))
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_the_examples_are_bounded_for_ci() -> None:
    """The suite's profile stays small; the deep one is for runs by hand."""
    assert settings.get_profile("ci").max_examples <= 200
    assert settings.get_profile("deep").max_examples >= 5000


@pytest.mark.parametrize("value", HUGE_NUMBERS)
def test_every_long_number_is_read_or_refused(app: Flask, value: str) -> None:
    for path in [p for p in DRAFT_PATHS + PREFETCH_PATHS if p[-1] in ("value", "numberOfRepeatsAllowed")]:
        response = app.test_client().post(
            service_path("order-select"),
            data=encoded(replaced(BODY, path, value)),
            content_type="application/json",
        )
        assert_answered_or_refused_clearly(response, f"{path} = {value[:40]}")


# --- the same properties over real HTTP, against gunicorn (fewer examples: each is a network round trip)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with untroubled_server(tmp_path_factory.mktemp("hostile-live")) as started:
        yield started


class _HttpAnswer:
    """An httpx response seen through the Flask test client's names, for the shared assertion."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self._response = response

    def get_json(self) -> Any:
        return self._response.json()

    def get_data(self, as_text: bool = False) -> str:
        return self._response.text


@settings(max_examples=40)
@given(data=st.data())
def test_hostile_values_over_http_to_gunicorn(live: LiveServer, data: st.DataObject) -> None:
    path = data.draw(st.one_of(*(st.sampled_from(paths) for paths in PATHS_BY_KIND.values())), label="path")
    value = data.draw(hostile_like(at(BODY, path)), label="value")
    hook = data.draw(st.sampled_from(["order-select", "order-sign"]), label="hook")
    body = replaced(BODY, path, value)
    body["hook"] = hook
    if hook == "order-sign":
        body["context"].pop("selections", None)
    response = httpx.post(
        live.url + service_path(hook),
        content=encoded(body),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert_answered_or_refused_clearly(_HttpAnswer(response), f"{path} = {str(value)[:80]!r}")
