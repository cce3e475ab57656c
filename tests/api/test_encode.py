"""Cards become CDS Hooks JSON only here: absent optional fields are left out, never null or empty."""

from __future__ import annotations

import uuid

from cds_service.api.encode import card_json, response_json
from cds_service.cdshooks import Action, Card, CdsResponse, Coding, Link, Source, Suggestion
from tests.support import assert_no_empty_values, assert_valid

TOPIC = Coding("http://naltrexone-cds.org/fhir/CodeSystem/rule", "opioid-active", "Opioid active")


def test_a_bare_card_has_only_what_it_was_given() -> None:
    card = Card(uuid="c-1", summary="Stop", indicator="critical", source=Source("FDA label"))
    assert card_json(card) == {
        "uuid": "c-1",
        "summary": "Stop",
        "indicator": "critical",
        "source": {"label": "FDA label"},
    }
    assert card.rule_id == "" and card.selection_behavior is None


def test_a_full_card_is_valid_cds_hooks_with_selection_behaviour_for_its_suggestions() -> None:
    cancel = Action(type="delete", description="Remove the draft", resource_id="MedicationRequest/draft-1")
    keep = Action(type="update", description="Keep", resource={"resourceType": "MedicationRequest"})
    card = Card(
        uuid=str(uuid.uuid4()),
        summary="Opioid active: do not start naltrexone",
        indicator="critical",
        source=Source("FDA label", "https://example.org/label", TOPIC),
        detail="Oxycodone supplied until 2026-11-30.",
        suggestions=(
            Suggestion("Cancel", str(uuid.uuid4()), (cancel,), is_recommended=True),
            Suggestion("Keep", str(uuid.uuid4()), (keep,)),
        ),
        override_reasons=(Coding("http://example.org/reasons", "aware", "Clinician aware"),),
        links=(Link("Rule page", "https://example.org/rules/opioid-active"),),
    )
    body = response_json(CdsResponse((card,)))
    assert_valid("CdsResponse", body)
    assert_no_empty_values(body)
    (encoded,) = body["cards"]
    assert encoded["selectionBehavior"] == "at-most-one"
    assert encoded["source"]["topic"]["code"] == card.rule_id == "opioid-active"
    first, second = encoded["suggestions"]
    assert first["isRecommended"] is True and "isRecommended" not in second
    assert first["actions"] == [
        {"type": "delete", "description": "Remove the draft", "resourceId": "MedicationRequest/draft-1"}
    ]
    assert second["actions"] == [
        {"type": "update", "description": "Keep", "resource": {"resourceType": "MedicationRequest"}}
    ]
    assert encoded["links"] == [
        {"label": "Rule page", "url": "https://example.org/rules/opioid-active", "type": "absolute"}
    ]


def test_no_cards_is_an_empty_list() -> None:
    assert response_json(CdsResponse()) == {"cards": []}
