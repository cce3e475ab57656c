"""What the audit store keeps and answers: issued cards, feedback items and results, report rows, and the
errors it raises. Plain values: the repository (``repository.py``) reads and writes them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cds_service.cdshooks import Hook, Indicator

Outcome = Literal["accepted", "overridden"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "overridden")
IdentifierKind = Literal["patient", "user"]

MIN_SECRET_BYTES = 16
_MAX_NAMED = 5


# --------------------------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of the errors raised by the store."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now (connection refused, timeout, file not writable,
    schema missing).  Nothing of the operation was recorded; the HTTP layer answers 503."""


class FeedbackRejected(StoreError):
    """Feedback the store will not record (the client's fault: a 4xx).  Nothing of the batch was recorded."""

    def __init__(self, message: str, card_uuid: str) -> None:
        super().__init__(message)
        self.card_uuid = card_uuid


class InvalidFeedback(FeedbackRejected):
    """A feedback item that is malformed or contradicts itself."""


class UnknownCard(FeedbackRejected):
    """Feedback names a card uuid this service never issued (or whose audit record was never written)."""

    def __init__(self, card_uuids: Sequence[str]) -> None:
        super().__init__(f"unknown card uuid: {_names(card_uuids)}", card_uuids[0])
        self.card_uuids = tuple(card_uuids)


class WrongService(FeedbackRejected):
    """Feedback sent to one service about a card issued by another."""

    def __init__(self, card_uuid: str, service_id: str, issued_by: str) -> None:
        super().__init__(
            f"card {short(card_uuid)} was issued by service {issued_by!r}, not {service_id!r}", card_uuid
        )
        self.service_id = service_id
        self.issued_by = issued_by


class UnknownSuggestion(FeedbackRejected):
    """An accepted suggestion id that the card did not offer."""

    def __init__(self, card_uuid: str, suggestion_id: str) -> None:
        super().__init__(
            f"card {short(card_uuid)} offered no suggestion with uuid {short(suggestion_id)}", card_uuid
        )
        self.suggestion_id = suggestion_id


def short(value: str, limit: int = 100) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _names(values: Sequence[str]) -> str:
    shown = ", ".join(short(v) for v in values[:_MAX_NAMED])
    return shown + (f" and {len(values) - _MAX_NAMED} more" if len(values) > _MAX_NAMED else "")


# ---------------------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card as returned to the client: what the audit keeps of it."""

    uuid: str
    rule_id: str
    indicator: Indicator
    suggestion_uuids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Issuance:
    """One hook call's answer.  ``patient_id``/``user_id`` are hashed before they reach the database."""

    hook: Hook
    service_id: str
    hook_instance: str
    patient_id: str | None
    user_id: str | None
    rules_version: str
    cards: tuple[IssuedCard, ...]
    issued_at: datetime | None = None  # default: the store's clock


@dataclass(frozen=True, slots=True)
class OverrideReason:
    """The coded override reason (``overrideReason.reason``)."""

    system: str | None = None
    code: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """One item of a CDS Hooks 2.0.1 feedback request."""

    card_uuid: str
    outcome: Outcome
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason: OverrideReason | None = None
    user_comment: str | None = None

    def __post_init__(self) -> None:
        if not self.card_uuid:
            raise InvalidFeedback("feedback item without a card uuid", "")
        if self.outcome not in OUTCOMES:
            raise InvalidFeedback(
                f"card {short(self.card_uuid)}: outcome must be accepted or overridden, not "
                f"{short(str(self.outcome))!r}",
                self.card_uuid,
            )
        if self.outcome_timestamp.tzinfo is None:
            raise InvalidFeedback(
                f"card {short(self.card_uuid)}: outcomeTimestamp has no UTC offset", self.card_uuid
            )
        if self.outcome == "overridden" and self.accepted_suggestions:
            raise InvalidFeedback(
                f"card {short(self.card_uuid)}: an overridden card cannot have accepted suggestions",
                self.card_uuid,
            )

    @property
    def fingerprint(self) -> str:
        """What makes two items "the same" (the card uuid aside): see the module docstring."""
        reason = self.override_reason or OverrideReason()
        canonical = [
            self.outcome,
            self.outcome_timestamp.astimezone(UTC).isoformat(timespec="microseconds"),
            sorted(set(self.accepted_suggestions)),
            reason.system,
            reason.code,
            self.user_comment,
        ]
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """Per item, in request order: ``recorded`` (new) or ``duplicate`` (already held, not stored again)."""

    outcomes: tuple[Literal["recorded", "duplicate"], ...]

    @property
    def recorded(self) -> int:
        return self.outcomes.count("recorded")

    @property
    def duplicates(self) -> int:
        return self.outcomes.count("duplicate")


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """How many cards of a rule were (last) overridden with this reason; no code: none was given."""

    system: str | None
    code: str | None
    display: str | None
    count: int

    @property
    def label(self) -> str:
        return self.code or "(no reason given)"


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One rule over the report's period.  ``issued == accepted + overridden + no_feedback``: a card is
    counted by its latest outcome (by outcome timestamp)."""

    rule_id: str
    issued: int
    accepted: int
    overridden: int
    no_feedback: int
    top_override_reasons: tuple[ReasonCount, ...]
