"""The audit trail: cards issued, feedback on them, and the JWT ids seen (SQLite or PostgreSQL).

``repository.Store`` is the only code that speaks SQL; ``records`` are the values it reads and writes.
"""

from cds_service.store.records import (
    FeedbackItem,
    FeedbackRejected,
    FeedbackResult,
    InvalidFeedback,
    Issuance,
    IssuedCard,
    OverrideReason,
    ReasonCount,
    ReportRow,
    StoreError,
    StoreUnavailable,
    UnknownCard,
    UnknownSuggestion,
    WrongService,
)
from cds_service.store.repository import Store, sqlite_url

__all__ = [
    "FeedbackItem",
    "FeedbackRejected",
    "FeedbackResult",
    "InvalidFeedback",
    "Issuance",
    "IssuedCard",
    "OverrideReason",
    "ReasonCount",
    "ReportRow",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnknownCard",
    "UnknownSuggestion",
    "WrongService",
    "sqlite_url",
]
