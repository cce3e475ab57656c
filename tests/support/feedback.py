"""Feedback bodies shaped exactly like the CDS Hooks sandbox's (captured requests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SANDBOX_REASON_SYSTEM = "http://example.org/reasons"  # what the sandbox sent in the captured requests


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accepted(card: dict[str, Any]) -> dict[str, Any]:
    """Feedback shaped exactly like the CDS Hooks sandbox's (captured requests)."""
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": stamp(),
    }


def overridden(card: dict[str, Any], code: str, comment: str | None = None) -> dict[str, Any]:
    reason: dict[str, Any] = {"reason": {"code": code, "system": SANDBOX_REASON_SYSTEM}}
    if comment:
        reason["userComment"] = comment
    return {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": reason,
        "outcomeTimestamp": stamp(),
    }
