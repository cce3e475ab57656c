"""CDS Hooks feedback: what the clinician did with a card, recorded against the card that was issued.

Feedback is committed before the answer: a 200 means it is in the database. Feedback about a card this
service never issued (or another service issued) is refused by name; repeats are acknowledged without
being stored twice; a database outage is a 503 the client can retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from cds_service import contract, metrics
from cds_service.errors import BadRequest, NotFound, SchemaViolation, ServiceUnavailable
from cds_service.knowledge.services import ServiceDefinition
from cds_service.store import (
    FeedbackItem,
    FeedbackRejected,
    InvalidFeedback,
    Store,
    StoreUnavailable,
    UnknownCard,
    WrongService,
)
from cds_service.store.records import OUTCOMES, Outcome, OverrideReason, short


def receive_feedback(store: Store, service: ServiceDefinition, body: Any) -> dict[str, Any]:
    error = contract.first_error("FeedbackRequest", body)
    if error is not None:
        path = contract.json_path(error)
        raise SchemaViolation(f"{path}: {error.message[:200]}", expression=None if path == "(body)" else path)
    items = [_item(entry) for entry in body["feedback"]]
    try:
        result = store.record_feedback(service.id, items)
    except StoreUnavailable:
        raise ServiceUnavailable(
            "feedback could not be recorded now (database unavailable); retry later"
        ) from None
    except (UnknownCard, WrongService) as rejected:
        raise NotFound(str(rejected)) from None
    except FeedbackRejected as rejected:
        raise BadRequest(str(rejected)) from None
    for item, outcome in zip(items, result.outcomes, strict=True):
        if outcome == "recorded":
            metrics.count_feedback(service.id, item.outcome)
    return {"recorded": result.recorded, "duplicates": result.duplicates}


def _item(entry: Mapping[str, Any]) -> FeedbackItem:
    try:
        return feedback_item(entry)
    except InvalidFeedback as invalid:
        raise BadRequest(str(invalid)) from None


def feedback_item(item: Mapping[str, Any]) -> FeedbackItem:
    """Build an item from the JSON of ``feedback[i]``; ``InvalidFeedback`` says what is wrong."""
    card = item.get("card")
    if not isinstance(card, str) or not card:
        raise InvalidFeedback("feedback item without a card uuid (`card`)", "")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidFeedback(f"card {short(card)}: `outcome` must be accepted or overridden", card)
    stamp = item.get("outcomeTimestamp")
    try:
        timestamp = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        timestamp = None
    if timestamp is None or timestamp.tzinfo is None:
        raise InvalidFeedback(
            f"card {short(card)}: `outcomeTimestamp` must be an RFC 3339 date-time with offset", card
        )
    accepted = item.get("acceptedSuggestions") or []
    if not isinstance(accepted, list) or not all(
        isinstance(s, Mapping) and isinstance(s.get("id"), str) for s in accepted
    ):
        raise InvalidFeedback(f"card {short(card)}: `acceptedSuggestions` must be [{{'id': uuid}}]", card)
    override = item.get("overrideReason") or {}
    reason = override.get("reason") if isinstance(override, Mapping) else None
    comment = override.get("userComment") if isinstance(override, Mapping) else None
    if not isinstance(override, Mapping) or not isinstance(reason, Mapping | None):
        raise InvalidFeedback(f"card {short(card)}: `overrideReason` must be an object", card)
    coding = None
    if reason is not None:
        fields = [reason.get(k) for k in ("system", "code", "display")]
        if not all(isinstance(f, str | None) for f in fields):
            raise InvalidFeedback(f"card {short(card)}: `overrideReason.reason` must be a Coding", card)
        coding = OverrideReason(*cast(list[str | None], fields))
    if not isinstance(comment, str | None):
        raise InvalidFeedback(f"card {short(card)}: `overrideReason.userComment` must be text", card)
    return FeedbackItem(
        card_uuid=card,
        outcome=cast(Outcome, outcome),
        outcome_timestamp=timestamp,
        accepted_suggestions=tuple(s["id"] for s in accepted),
        override_reason=coding,
        user_comment=comment,
    )
