"""Wrong values put into valid requests, field by field: what the robustness and contract tests send."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

WRONG_VALUES: list[Any] = [
    None, 0, -1, 1e308, "30", "x", "9999-12-31", "20261119", "", [], {}, ["x"], [1], [None], True,
    {"value": "x"}, [{"coding": 5}],
]  # fmt: skip


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(body)
    target: Any = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return mutated
