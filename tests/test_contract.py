"""The two validators of the contract (cds_service/contract.py) must agree on what is valid.

jsonschema-rs decides on every request; python-jsonschema only words the error. If they disagreed, a valid
request could be refused, or an invalid one could reach the fact readers unexplained: every fixture, and
thousands of mutations of the request shapes, are put to both.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cds_service import contract
from fhir_fixtures import FIXTURES
from tests.support.mutations import WRONG_VALUES, paths, replaced

SCHEMA_FOR_HOOK = {"order-select": "OrderSelectRequest", "order-sign": "OrderSignRequest"}
REQUESTS = sorted(FIXTURES.glob("*/request.json"))


def agree(schema: str, body: Any) -> bool:
    fast = contract.fast_validator(schema).is_valid(body)
    reference = next(contract.errors(schema, body), None) is None
    return bool(fast == reference)


def mutated_bodies(body: dict[str, Any], count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    every = [path for path in paths(body) if path]
    bodies: list[Any] = []
    for path in rng.sample(every, min(count, len(every))):
        bodies.append(replaced(body, path, rng.choice(WRONG_VALUES)))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict):  # and the same member removed
            removed = json.loads(json.dumps(body))
            target = removed
            for step in path[:-1]:
                target = target[step]
            del target[path[-1]]
            bodies.append(removed)
    return bodies


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.parent.name)
def test_the_validators_agree_on_a_fixture_and_its_mutations(request_file: Path) -> None:
    body = json.loads(request_file.read_text(encoding="utf-8"))
    schema = SCHEMA_FOR_HOOK.get(body.get("hook"), "OrderSelectRequest")
    assert agree(schema, body)
    other = "OrderSignRequest" if schema == "OrderSelectRequest" else "OrderSelectRequest"
    assert agree(other, body)
    disagreements = [
        b for b in mutated_bodies(body, 25, seed=len(request_file.parent.name)) if not agree(schema, b)
    ]
    assert not disagreements, json.dumps(disagreements[0])[:2000]


@pytest.mark.parametrize(
    "body",
    [
        {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-22T01:35:08.669Z"}]},
        {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-22 01:35:08"}]},
        {"feedback": [{"card": "", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T01:35:08Z"}]},
        {
            "feedback": [
                {
                    "card": "c",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-22T01:35:08+05:30",
                    "overrideReason": {"reason": {"code": 3}},
                }
            ]
        },
        {"feedback": []},
        {"feedback": "no"},
        [],
        None,
    ],
)
def test_the_validators_agree_on_feedback(body: Any) -> None:
    assert agree("FeedbackRequest", body)
