"""Bad data never crashes the service: every field of a realistic request, replaced by a wrong value.

Prefetched resources are not schema-checked one by one (see cds_service/facts/fhir.py), so the facts
code must read them defensively. A crash would be worse than a wrong answer: CDS Hooks clients drop a
failed call, and with it every card, critical ones included.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask import Flask

from fhir_fixtures import clinical as c
from fhir_fixtures.requests import service_path
from tests.support import body_of
from tests.support.mutations import BODY, DRAFT_PATHS, PREFETCH_PATHS, WRONG_VALUES, replaced


def mutations(all_paths: list[tuple[Any, ...]], count: int, seed: int) -> list[tuple[tuple[Any, ...], Any]]:
    rng = random.Random(seed)
    every = [(path, value) for path in all_paths for value in WRONG_VALUES]
    return rng.sample(every, min(count, len(every)))


@pytest.mark.parametrize("chunk", range(6))
def test_wrong_values_in_prefetched_resources_never_crash(app: Flask, chunk: int) -> None:
    client = app.test_client()
    for path, value in mutations(PREFETCH_PATHS, 1800, seed=7)[chunk * 300 : (chunk + 1) * 300]:
        response = client.post(service_path("order-select"), json=replaced(BODY, path, value))
        assert response.status_code in (200, 400), (path, value, response.json)


def test_wrong_values_in_the_draft_order_are_200_or_a_clear_400(app: Flask) -> None:
    client = app.test_client()
    for path, value in mutations(DRAFT_PATHS, 400, seed=11):
        response = client.post(service_path("order-select"), json=replaced(BODY, path, value))
        assert response.status_code in (200, 400), (path, value, response.json)
        if response.status_code == 400:
            assert body_of(response)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"daysSupply": {"value": "30", "unit": "days"}}, "opioid-active"),  # a numeric string is read
        ({"whenHandedOver": "20261119"}, None),  # not a FHIR date: no exposure date, no guess
    ],
)
def test_odd_but_readable_values(app: Flask, shape: dict[str, Any], expected: str | None) -> None:
    dispense = c.dispense(c.OXYCODONE, handed=-12, days_supply=30) | shape
    response = app.test_client().post(service_path("order-select"), json=c.scenario(dispense))
    assert response.status_code == 200
    codes = {card["source"]["topic"]["code"] for card in body_of(response)["cards"]}
    if expected:
        assert expected in codes
    else:
        assert "opioid-active" not in codes
