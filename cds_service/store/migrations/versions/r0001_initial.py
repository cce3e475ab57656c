"""Audit trail: issued cards and suggestions, card feedback, seen JWT ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(100), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hook", sa.Text(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("hook_instance", sa.Text(), nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("indicator", sa.Text(), nullable=False),
        sa.Column("rules_version", sa.Text(), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=True),
        sa.Column("user_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("card_uuid", name="pk_issued_card"),
    )
    op.create_index("ix_issued_card_issued_at", "issued_card", ["issued_at"])
    op.create_index("ix_issued_card_patient_hash", "issued_card", ["patient_hash"])

    op.create_table(
        "issued_suggestion",
        sa.Column("card_uuid", sa.String(100), nullable=False),
        sa.Column("suggestion_uuid", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_uuid"],
            ["issued_card.card_uuid"],
            name="fk_issued_suggestion_card_uuid_issued_card",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("card_uuid", "suggestion_uuid", name="pk_issued_suggestion"),
    )

    op.create_table(
        "card_feedback",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("card_uuid", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_system", sa.Text(), nullable=True),
        sa.Column("override_code", sa.Text(), nullable=True),
        sa.Column("override_display", sa.Text(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name=op.f("ck_card_feedback_outcome")),
        sa.ForeignKeyConstraint(
            ["card_uuid"],
            ["issued_card.card_uuid"],
            name="fk_card_feedback_card_uuid_issued_card",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_card_feedback"),
        sa.UniqueConstraint("card_uuid", "fingerprint", name="uq_card_feedback_card_uuid_fingerprint"),
    )

    op.create_table(
        "seen_jwt_id",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name="pk_seen_jwt_id"),
    )
    op.create_index("ix_seen_jwt_id_expires_at", "seen_jwt_id", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_jwt_id_expires_at", table_name="seen_jwt_id")
    op.drop_table("seen_jwt_id")
    op.drop_table("card_feedback")
    op.drop_table("issued_suggestion")
    op.drop_index("ix_issued_card_patient_hash", table_name="issued_card")
    op.drop_index("ix_issued_card_issued_at", table_name="issued_card")
    op.drop_table("issued_card")
