"""The request bodies the benchmark sends: the project's fixture scenarios, and long records built on them.

* ``request_mix()``: a realistic mix of ``fhir_fixtures/`` scenarios, order-select and order-sign, a few
  KB each (two are real client captures of 15 and 37 KB), every one a full clinical evaluation;
* ``scaling_body(n)``: the typical request (the ``test-dose`` scenario) whose prefetch is padded to ``n``
  resources with the irrelevant history of a long-lived patient (old lab results, other medications,
  other problems), built with the test suite's clinical builders.

Fixture requests are dated as of their ``reference_date``; like ``tests/test_fixtures.py``, every date is
moved forward by the days since then, so that each scenario keeps its clinical meaning against the
server's real clock. The builders' anchor (``tests.clinical.TODAY``) is moved to today the same way.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fhir_fixtures import FIXTURES, shifted
from fhir_fixtures import clinical as c
from fhir_fixtures.requests import service_path

TYPICAL = "test-dose"

# (fixture, hook it is sent as): the hook differs from the fixture's for the order-sign variants, the
# same orders signed after being selected (order-sign reviews every draft order; no selections).
MIX: tuple[tuple[str, str], ...] = (
    (TYPICAL, "order-select"),  # OUD start, worked up: naloxone, urine screen, ALT, challenge on record
    ("ldn-too-fast", "order-select"),  # low-dose naltrexone stepped up too soon
    ("near-miss-xr-standard", "order-select"),  # extended-release 380 mg IM every 4 weeks
    ("opioid-blockade", "order-select"),  # oxycodone for a patient on extended-release naltrexone
    ("uds-positive", "order-select"),
    ("lft-elevated-warning", "order-select"),
    ("opioid-active-prescription", "order-select"),
    # (not sandbox-order-select-pat1: it names a fhirServer the service would try to fetch from, so its
    # cost would be the fetch budget's, not the service's)
    ("hepatic-impairment", "order-select"),  # decompensated cirrhosis
    ("hl7-example-pat1", "order-select"),  # the HL7 R4 example patient's real medication history (37 KB)
    ("order-sign-start", "order-sign"),
    ("order-sign-two-orders", "order-sign"),
    (TYPICAL, "order-sign"),
    ("ldn-too-fast", "order-sign"),
    ("near-miss-xr-standard", "order-sign"),
    ("opioid-blockade", "order-sign"),
    ("uds-positive", "order-sign"),
)

# Other medicines a long-lived patient has on record (RxNorm SCD codes; none is in a project value set).
OTHER_MEDICATIONS: tuple[tuple[str, str], ...] = (
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("617312", "atorvastatin 10 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("310965", "ibuprofen 200 MG Oral Tablet"),
    ("313782", "acetaminophen 325 MG Oral Tablet"),
    ("312961", "simvastatin 20 MG Oral Tablet"),
    ("966222", "levothyroxine sodium 0.05 MG Oral Tablet"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    ("198211", "simvastatin 40 MG Oral Tablet"),
    ("308136", "amlodipine 2.5 MG Oral Tablet"),
    ("197884", "lisinopril 40 MG Oral Tablet"),
)

# Routine laboratory tests (LOINC) that no rule reads: (code, display, unit, low, high).
ROUTINE_LABS: tuple[tuple[str, str, str, float, float], ...] = (
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 140),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 133, 147),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.3, 5.3),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.4),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11, 17),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 11),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 140, 420),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 120, 260),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 9),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.3, 5),
)

OTHER_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("M54.50", "Low back pain, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("F41.1", "Generalized anxiety disorder"),
    ("E03.9", "Hypothyroidism, unspecified"),
)

SCALING_SIZES = (10, 100, 1_000, 10_000)


@dataclass(frozen=True)
class BenchRequest:
    """One request of the benchmark: what it is, where it goes, and its JSON body (the exact bytes sent)."""

    name: str
    hook: str
    body: bytes
    expected_cards: tuple[str, ...] | None = None
    """Rule ids the scenario's expected.json says must appear (None: a variant with no expectations)."""

    @property
    def path(self) -> str:
        return service_path(self.hook)

    @property
    def method(self) -> str:
        return "POST"


def today_utc() -> date:
    return datetime.now(UTC).date()


def rebase_today(today: date | None = None) -> None:
    """Date the clinical builders' resources relative to the real today (see the module docstring)."""
    c.TODAY = today or today_utc()


def fixture(name: str, today: date | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A scenario's request, dated as of ``today`` (default: the real today), and its expectations."""
    folder = FIXTURES / name
    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    reference = date.fromisoformat(expected["reference_date"])
    return shifted(request, ((today or today_utc()) - reference).days), expected


def as_order_sign(body: dict[str, Any]) -> dict[str, Any]:
    """The same draft orders, being signed: order-sign reviews every draft order and has no selections."""
    signed: dict[str, Any] = json.loads(json.dumps(body))
    signed["hook"] = "order-sign"
    signed["context"].pop("selections", None)
    return signed


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON, as EHRs send it (the fixture files are pretty-printed)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request_mix(today: date | None = None) -> list[BenchRequest]:
    requests = []
    for name, hook in MIX:
        body, expected = fixture(name, today)
        cards: tuple[str, ...] | None = tuple(expected.get("cards", {}))
        if hook != expected["hook"]:
            body, cards = as_order_sign(body), None
        short = hook.removeprefix("order-")
        requests.append(BenchRequest(f"{short}: {name}", hook, encode(body), cards))
    return requests


def scaling_body(resources: int, *, seed: int = 7, today: date | None = None) -> dict[str, Any]:
    """The typical request with its prefetch padded to ``resources`` resources of irrelevant history.

    The typical scenario's own resources (and its Patient) count towards ``resources``; the rest, spread
    over ten years: about 55% routine lab results, 30% other medications (requests, dispenses,
    statements), 10% other problems, 5% administrations of other drugs in clinic.
    """
    rebase_today(today)
    body, _ = fixture(TYPICAL, today)
    body["hookInstance"] = f"bench-scaling-{resources}"
    rng = random.Random(seed)
    prefetch = body["prefetch"]
    for _ in range(max(0, resources - count_prefetch_resources(body))):
        resource = _filler(rng)
        key = c.PREFETCH_FOR_TYPE[resource["resourceType"]]
        bundle = prefetch[key]
        bundle.setdefault("entry", []).append({"resource": resource, "search": {"mode": "match"}})
        bundle["total"] = len(bundle["entry"])
    return body


def _filler(rng: random.Random) -> dict[str, Any]:
    draw = rng.random()
    when = -rng.randint(30, 3650)
    if draw < 0.55:
        code, display, unit, _low, high = rng.choice(ROUTINE_LABS)
        value = round(rng.uniform(_low * 0.9, high * 1.05), 1)
        return c.lab_value(code, display, value, unit, when=when, high=high)
    if draw < 0.85:
        product = rng.choice(OTHER_MEDICATIONS)
        shape = rng.random()
        if shape < 0.5:
            return c.medication_request(product, status="completed", authored=when, supply_days=90)
        if shape < 0.85:
            return c.dispense(product, handed=when, days_supply=90)
        return c.statement(product, status="completed", start=when, end=when + 180)
    if draw < 0.95:
        code, display = rng.choice(OTHER_PROBLEMS)
        return c.condition("http://hl7.org/fhir/sid/icd-10-cm", code, display, clinical="active", onset=when)
    return c.administration(rng.choice(OTHER_MEDICATIONS), given=when)


def count_prefetch_resources(body: dict[str, Any]) -> int:
    total = 0
    for value in (body.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            total += len(value.get("entry", []))
        elif isinstance(value, dict):
            total += 1
    return total


def scaling_requests(sizes: tuple[int, ...] = SCALING_SIZES, today: date | None = None) -> list[BenchRequest]:
    return [
        BenchRequest(f"{n:,} resources", "order-select", encode(scaling_body(n, today=today))) for n in sizes
    ]
