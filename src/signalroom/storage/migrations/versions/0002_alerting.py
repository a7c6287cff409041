"""Alertmanager state: alerts, silences, notification log.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from schema.py: a migration is fixed history.
_binary_text = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alerting_alerts",
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("fingerprint", _binary_text, nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("annotations", _json(), nullable=False),
        _ts("starts_at", True),
        _ts("ends_at", True),
        _ts("updated_at", True),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column("timeout", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "fingerprint", name="pk_alerting_alerts"),
    )
    op.create_table(
        "alerting_silences",
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("id", _binary_text, nullable=False),
        sa.Column("matchers", _json(), nullable=False),
        _ts("starts_at"),
        _ts("ends_at"),
        _ts("updated_at"),
        _ts("expires_at"),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_alerting_silences"),
    )
    op.create_table(
        "alerting_nflog",
        sa.Column("tenant", _binary_text, nullable=False),
        sa.Column("group_key", _binary_text, nullable=False),
        sa.Column("receiver", _binary_text, nullable=False),
        sa.Column("firing", _json(), nullable=False),
        sa.Column("resolved", _json(), nullable=False),
        _ts("timestamp"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("tenant", "group_key", "receiver", name="pk_alerting_nflog"),
    )


def downgrade() -> None:
    op.drop_table("alerting_nflog")
    op.drop_table("alerting_silences")
    op.drop_table("alerting_alerts")
