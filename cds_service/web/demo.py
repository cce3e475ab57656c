"""The demo page: a scenario patient from ``fhir_fixtures/``, an order and a hook, sent to the real service
endpoint from the browser; the cards shown as an EHR shows them; accepting a suggestion or overriding a
card sends real feedback, and the page shows the override report line that changed.

On by default only in the demo configuration (the bundled demo issuers, trusted on a loopback address
only); off with a trusted-issuers file unless ``demo_page`` is ``on``. The page never sees patient data
other than the scenarios': it composes requests from them, and the service answers them like any EHR's.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from cds_service import STATE_KEY
from cds_service.api.views import ServiceState
from cds_service.auth.verify import audience_url
from cds_service.errors import BadRequest, NotFound
from cds_service.fhir import shifted
from cds_service.resources import scenarios_dir
from cds_service.settings import Settings
from cds_service.validate import decode_json
from cds_service.web.headers import page_headers

blueprint = Blueprint("demo", __name__, template_folder="templates")
blueprint.after_request(page_headers)

_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class DemoOrder:
    label: str
    medication: dict[str, Any]
    dose: float
    unit: str
    timing: dict[str, Any]
    route: str | None = None


ORDERS: dict[str, DemoOrder] = {
    "naltrexone-50": DemoOrder(
        "naltrexone 50 mg daily",
        {
            "coding": [
                {
                    "system": _RXNORM,
                    "code": "1483744",
                    "display": "naltrexone hydrochloride 50 MG Oral Tablet",
                }
            ]
        },
        50,
        "mg",
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    ),
    "naltrexone-25-once": DemoOrder(
        "naltrexone 25 mg once (test dose)",
        {
            "coding": [
                {
                    "system": _RXNORM,
                    "code": "1483744",
                    "display": "naltrexone hydrochloride 50 MG Oral Tablet",
                }
            ]
        },
        25,
        "mg",
        {"repeat": {"count": 1}},
    ),
    "ldn-1.5": DemoOrder(
        "low-dose naltrexone 1.5 mg at bedtime",
        {"text": "naltrexone 1.5 mg capsule (compounded, immediate-release)"},
        1.5,
        "mg",
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]}},
    ),
    "xr-380": DemoOrder(
        "extended-release naltrexone 380 mg IM every 4 weeks",
        {"coding": [{"system": _RXNORM, "code": "637213", "display": "naltrexone 380 MG Injection"}]},
        380,
        "mg",
        {"repeat": {"frequency": 1, "period": 4, "periodUnit": "wk"}},
        route="78421000",
    ),
    "oxycodone": DemoOrder(
        "oxycodone 5 mg every 6 hours (an opioid for a patient on naltrexone)",
        {
            "coding": [
                {"system": _RXNORM, "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}
            ]
        },
        5,
        "mg",
        {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
    ),
}
SCENARIO_ORDER = "scenario"
"""Keep the scenario's own draft orders."""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    story: str
    reference_date: date


def enabled(settings: Settings) -> bool:
    if settings.demo_page == "auto":
        return settings.trusted_issuers_file is None
    return settings.demo_page == "on"


@cache
def scenarios(folder: Path) -> tuple[Scenario, ...]:
    found = []
    for expected_file in sorted(folder.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        if expected.get("status") == 200:
            found.append(
                Scenario(
                    expected_file.parent.name,
                    expected["title"],
                    expected["story"],
                    date.fromisoformat(expected["reference_date"]),
                )
            )
    return tuple(found)


def _scenario(name: str) -> Scenario:
    found = next((s for s in scenarios(scenarios_dir()) if s.name == name), None)
    if found is None:
        raise NotFound(f"no demo scenario {name[:80]!r}")
    return found


def compose(name: str, order: str, hook: str, today: date) -> dict[str, Any]:
    """The CDS Hooks request the demo sends: the scenario as of today, with the chosen order and hook."""
    if hook not in ("order-select", "order-sign"):
        raise BadRequest("hook must be order-select or order-sign", expression="hook")
    if order != SCENARIO_ORDER and order not in ORDERS:
        raise BadRequest(f"order must be one of {[SCENARIO_ORDER, *ORDERS]}", expression="order")
    scenario = _scenario(name)
    raw = json.loads((scenarios_dir() / name / "request.json").read_text(encoding="utf-8"))
    body: dict[str, Any] = shifted(raw, (today - scenario.reference_date).days)
    body["hook"] = hook
    body["hookInstance"] = str(uuid.uuid4())
    context = body["context"]
    if order != SCENARIO_ORDER:
        draft = _draft(ORDERS[order], context["patientId"], today)
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        }
        context["selections"] = [f"MedicationRequest/{draft['id']}"]
    if hook == "order-sign":
        context.pop("selections", None)
    elif "selections" not in context:
        drafts = [e.get("resource", {}) for e in context["draftOrders"].get("entry", [])]
        context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts[:1] if "id" in d]
    return body


def _draft(order: DemoOrder, patient_id: str, today: date) -> dict[str, Any]:
    dosage: dict[str, Any] = {
        "timing": order.timing,
        "doseAndRate": [
            {"doseQuantity": {"value": order.dose, "unit": order.unit, "system": _UCUM, "code": order.unit}}
        ],
    }
    if order.route:
        dosage["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": order.route}]}
    return {
        "resourceType": "MedicationRequest",
        "id": "demo-order-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": today.isoformat(),
        "medicationCodeableConcept": order.medication,
        "dosageInstruction": [dosage],
    }


def _state() -> ServiceState:
    found: ServiceState = current_app.extensions[STATE_KEY]
    return found


@blueprint.get("/demo")
def demo() -> str:
    from cds_service.web.pages import catalogue

    return render_template(
        "demo.html",
        catalogue=catalogue(),
        scenarios=scenarios(scenarios_dir()),
        orders=ORDERS,
        scenario_order=SCENARIO_ORDER,
        services=_state().pipeline.services.values(),
    )


@blueprint.get("/demo/request")
def demo_request() -> Response:
    args = request.args
    today = _state().pipeline.calendar.today()
    return jsonify(
        compose(args.get("scenario", ""), args.get("order", SCENARIO_ORDER), args.get("hook", ""), today)
    )


@blueprint.post("/demo/token")
def demo_token() -> Response:
    """A bearer JWT from the bundled demo client for a path of this service, when the deployment needs one
    and trusts that client (the demo configuration); ``null`` when calls need no token."""
    state = _state()
    if not state.authenticator.policy.required:
        return jsonify({"token": None})
    if state.settings.trusted_issuers_file is not None:
        raise BadRequest("this deployment does not trust the demo client: the demo page cannot sign calls")
    from cds_service.demo_client import demo_token as sign

    body = decode_json(request.get_data(cache=False))
    path = body.get("path") if isinstance(body, dict) else None
    if not isinstance(path, str) or not path.startswith("/cds-services/"):
        raise BadRequest("path must be a /cds-services/ path of this service", expression="path")
    base = state.settings.public_base_url or request.host_url
    return jsonify({"token": sign(audience_url(base.rstrip("/"), path))})


@blueprint.post("/demo/cards")
def demo_cards() -> str:
    """The cards of a CDS Hooks response as an EHR shows them (an HTML fragment for the page)."""
    from cds_service.web.pages import catalogue

    body = decode_json(request.get_data(cache=False))
    cards = body.get("cards") if isinstance(body, dict) else None
    if not isinstance(cards, list):
        raise BadRequest("send a CDS Hooks response: an object with cards", expression="cards")
    return render_template("demo_cards.html", cards=cards, catalogue=catalogue())


@blueprint.get("/demo/report")
def demo_report() -> Response:
    """Today's override report (the ``report`` command's rows), to show the line feedback changed."""
    now = datetime.now(UTC)
    rows = _state().audit.store.report(now - timedelta(days=1), now + timedelta(minutes=1))
    return jsonify(
        {
            "rows": [
                {
                    "rule": row.rule_id,
                    "issued": row.issued,
                    "accepted": row.accepted,
                    "overridden": row.overridden,
                    "no_feedback": row.no_feedback,
                }
                for row in rows
            ]
        }
    )
