"""The audit tables: cards issued, their suggestions, feedback received, and JWT ids already seen.

No column holds a name, a resource, a token or a clear patient or user identifier: patients and users
appear only as keyed hashes (see ``Store.pseudonym``).  Timestamps are UTC on every backend.

The schema itself is created by the Alembic revisions in ``migrations/versions``; these models must
match them (``tests/test_store.py`` compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UUID_LENGTH = 100
HASH_LENGTH = 64

# Stable constraint names, so later migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; SQLite (which keeps no offset) gets naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given where a UTC instant is needed")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class IssuedCardRow(Base):
    """One row per card returned by a hook call."""

    __tablename__ = "issued_card"
    __table_args__ = (
        Index("ix_issued_card_issued_at", "issued_at"),
        Index("ix_issued_card_patient_hash", "patient_hash"),
    )

    card_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hook: Mapped[str] = mapped_column(Text)
    service_id: Mapped[str] = mapped_column(Text)
    hook_instance: Mapped[str] = mapped_column(Text)
    rule_id: Mapped[str] = mapped_column(Text)
    indicator: Mapped[str] = mapped_column(Text)
    rules_version: Mapped[str] = mapped_column(Text)
    patient_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    user_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))


class IssuedSuggestionRow(Base):
    """A suggestion offered on an issued card."""

    __tablename__ = "issued_suggestion"

    card_uuid: Mapped[str] = mapped_column(
        String(UUID_LENGTH), ForeignKey("issued_card.card_uuid", ondelete="CASCADE"), primary_key=True
    )
    suggestion_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)


class FeedbackRow(Base):
    """One distinct feedback statement about a card (see ``feedback_fingerprint`` for "distinct")."""

    __tablename__ = "card_feedback"
    __table_args__ = (
        UniqueConstraint("card_uuid", "fingerprint"),
        CheckConstraint("outcome IN ('accepted', 'overridden')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    card_uuid: Mapped[str] = mapped_column(
        String(UUID_LENGTH), ForeignKey("issued_card.card_uuid", ondelete="CASCADE")
    )
    fingerprint: Mapped[str] = mapped_column(String(HASH_LENGTH))
    outcome: Mapped[str] = mapped_column(String(20))
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON)
    override_system: Mapped[str | None] = mapped_column(Text)
    override_code: Mapped[str | None] = mapped_column(Text)
    override_display: Mapped[str | None] = mapped_column(Text)
    user_comment: Mapped[str | None] = mapped_column(Text)
    outcome_timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SeenJwtIdRow(Base):
    """A JWT ``jti`` already accepted from an issuer, kept until the token expires (replay cache)."""

    __tablename__ = "seen_jwt_id"
    __table_args__ = (Index("ix_seen_jwt_id_expires_at", "expires_at"),)

    issuer: Mapped[str] = mapped_column(Text, primary_key=True)
    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
