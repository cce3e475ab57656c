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
from tests.support.mutations import WRONG_VALUES, paths, replaced


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
