"""Escalation state, alert-group timeline and on-call overrides.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from schema.py: a migration is fixed history.
_binary_text = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
_row_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alerting_escalations",
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("group_key", _binary_text, nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=True),
        sa.Column("priority", sa.Text(), nullable=True),
        sa.Column("group_labels", _json(), nullable=False),
        _ts("started_at"),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("loop", sa.Integer(), nullable=False),
        _ts("next_at", True),
        _ts("respond_by", True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("acked_by", sa.Text(), nullable=True),
        _ts("acked_at", True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        _ts("resolved_at", True),
        sa.Column("fingerprints", _json(), nullable=False),
        sa.Column("recovery", sa.Text(), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("tenant", "group_key", name="pk_alerting_escalations"),
    )
    op.create_table(
        "alerting_timeline",
        sa.Column("id", _row_id, nullable=False, autoincrement=True),
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("group_key", _binary_text, nullable=False),
        _ts("at"),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("receiver", sa.Text(), nullable=True),
        sa.Column("integration", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerting_timeline"),
    )
    op.create_index(
        "ix_alerting_timeline_tenant_group_key_id",
        "alerting_timeline",
        ["tenant", "group_key", "id"],
    )
    op.create_index("ix_alerting_timeline_at", "alerting_timeline", ["at"])
    op.create_table(
        "oncall_overrides",
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("id", _binary_text, nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        _ts("starts_at"),
        _ts("ends_at"),
        sa.Column("created_by", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_oncall_overrides"),
    )


def downgrade() -> None:
    op.drop_table("oncall_overrides")
    op.drop_index("ix_alerting_timeline_at", table_name="alerting_timeline")
    op.drop_index("ix_alerting_timeline_tenant_group_key_id", table_name="alerting_timeline")
    op.drop_table("alerting_timeline")
    op.drop_table("alerting_escalations")
