"""The service's answers as CDS Hooks JSON: optional fields without a value are left out, never null."""

from __future__ import annotations

import json
from typing import Any

import orjson

from cds_service.cdshooks import Action, Card, CdsResponse, Coding, Link, Source, Suggestion


def response_json(response: CdsResponse) -> dict[str, Any]:
    return {"cards": [card_json(card) for card in response.cards]}


def response_bytes(response: CdsResponse) -> bytes:
    """The answer as UTF-8 JSON. orjson writes it several times faster than the standard encoder; a
    suggestion that echoes a draft order with an integer beyond 64 bits (which orjson refuses) is
    written by the standard encoder, exactly as sent."""
    document = response_json(response)
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":")).encode()


def card_json(card: Card) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": card.uuid,
        "summary": card.summary,
        "detail": card.detail,
        "indicator": card.indicator,
        "source": _source(card.source),
        "suggestions": [_suggestion(s) for s in card.suggestions],
        "selectionBehavior": card.selection_behavior,
        "overrideReasons": [_coding(c) for c in card.override_reasons],
        "links": [_link(link) for link in card.links],
    }
    return _present(body)


def _source(source: Source) -> dict[str, Any]:
    return _present(
        {"label": source.label, "url": source.url, "topic": _coding(source.topic) if source.topic else None}
    )


def _coding(coding: Coding) -> dict[str, Any]:
    return _present({"system": coding.system, "code": coding.code, "display": coding.display})


def _suggestion(suggestion: Suggestion) -> dict[str, Any]:
    return _present(
        {
            "label": suggestion.label,
            "uuid": suggestion.uuid,
            "actions": [_action(a) for a in suggestion.actions],
            "isRecommended": suggestion.is_recommended or None,
        }
    )


def _action(action: Action) -> dict[str, Any]:
    return _present(
        {
            "type": action.type,
            "description": action.description,
            "resource": action.resource,
            "resourceId": action.resource_id,
        }
    )


def _link(link: Link) -> dict[str, Any]:
    return {"label": link.label, "url": link.url, "type": link.type}


def _present(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None and value != [] and value != ""}
