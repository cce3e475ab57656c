"""CDS Hooks feedback: what the clinician did with a card, recorded against the card that was issued.

Feedback is committed before the answer: a 200 means it is in the database. Feedback about a card this
service never issued (or another service issued) is refused by name; repeats are acknowledged without
being stored twice; a database outage is a 503 the client can retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service import contract
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
    return {"recorded": result.recorded, "duplicates": result.duplicates}


def _item(entry: Mapping[str, Any]) -> FeedbackItem:
    try:
        return FeedbackItem.from_json(entry)
    except InvalidFeedback as invalid:
        raise BadRequest(str(invalid)) from None
