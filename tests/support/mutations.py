"""Wrong values put into valid requests, field by field: what the robustness and contract tests send."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fhir_fixtures import clinical as c

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


def rich_request() -> dict[str, Any]:
    """One request touching every reader: medications of each kind, results, conditions, allergies."""
    oxy_ref = c.medication_request({"text": "x"}, authored=-2)
    del oxy_ref["medicationCodeableConcept"]
    oxy_ref["medicationReference"] = {"reference": "#m1"}
    oxy_ref["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": c.rx(*c.OXYCODONE),
            "ingredient": [
                {
                    "itemCodeableConcept": c.rx("7804", "oxycodone"),
                    "strength": {
                        "numerator": {"value": 5, "unit": "mg"},
                        "denominator": {"value": 1, "unit": "tablet"},
                    },
                }
            ],
        }
    ]
    oxy_ref["dosageInstruction"] = [
        {
            "sequence": 1,
            "timing": {
                "repeat": {
                    "frequency": 2,
                    "period": 1,
                    "periodUnit": "d",
                    "when": ["HS"],
                    "boundsPeriod": {"end": c.day(5)},
                }
            },
            "route": {"coding": [{"code": "26643006"}]},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
        }
    ]
    oxy_ref["dispenseRequest"] = {
        "numberOfRepeatsAllowed": 1,
        "quantity": {"value": 20},
        "expectedSupplyDuration": {"value": 10, "code": "d"},
    }
    return c.scenario(
        oxy_ref,
        c.dispense(c.METHADONE, handed=-10, days_supply=7),
        c.statement(c.BUPRENORPHINE_NALOXONE, status="completed", end=-20),
        c.administration(c.VIVITROL, given=-40),
        c.oud(),
        c.condition(c.ICD10, "K74.60", "Cirrhosis") | {"abatementDateTime": c.day(-3)},
        c.allergy(c.rx("7243", "naltrexone")),
        c.urine_opiates("positive", when=-2)
        | {
            "interpretation": [{"coding": [{"code": "POS"}]}],
            "component": [{"code": c.rx("x", "Fentanyl"), "valueString": "negative"}],
        },
        c.naloxone_challenge("passed", when=-1),
        c.alt(130),
        c.bilirubin(2.0),
        c.observation(
            "82810-3",
            "Pregnancy status",
            when=-3,
            valueCodeableConcept={"coding": [{"system": c.LOINC, "code": "LA15173-0"}]},
        ),
        order=c.ldn_order(3),
    )


BODY = rich_request()
PREFETCH_PATHS = [p for p in paths(BODY["prefetch"], ("prefetch",)) if len(p) > 3]  # inside resources
DRAFT_PATHS = [p for p in paths(BODY["context"]["draftOrders"], ("context", "draftOrders")) if len(p) > 4]
