"""SQLAlchemy Core tables of signalroom's relational state.

This module describes the schema as the code sees it *after* the newest migration. Migrations in
``migrations/versions/`` are the history that gets a database there; they do not import this
module, so an old migration keeps meaning what it meant. ``tests/unit/storage/test_state.py``
checks that the two agree (autogenerate finds no difference).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Fixed names for constraints and indexes, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Text compared by code point on every backend: SQLite's default BINARY collation does that, and
# PostgreSQL needs "C" (a database's default collation may be locale-aware). Key order and prefix
# ranges must not depend on the server's locale.
BinaryText = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("namespace", BinaryText, nullable=False),
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("key", BinaryText, nullable=False),
    sa.Column("value", JSONDocument, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("namespace", "tenant", "key"),
)
"""JSON documents by (namespace, tenant, key) with an optimistic version (1 on insert)."""

# --- alerting (migration 0002) -------------------------------------------------------------

alerting_alerts = sa.Table(
    "alerting_alerts",
    metadata,
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("fingerprint", BinaryText, nullable=False),
    sa.Column("labels", JSONDocument, nullable=False),
    sa.Column("annotations", JSONDocument, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("generator_url", sa.Text, nullable=False),
    sa.Column("timeout", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "fingerprint"),
)
"""Alerts received by the Alertmanager, so a restart keeps pending notifications."""

alerting_silences = sa.Table(
    "alerting_silences",
    metadata,
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("id", BinaryText, nullable=False),
    sa.Column("matchers", JSONDocument, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "id"),
)
"""Silences; a row is deleted once ``expires_at`` (ends_at + retention) has passed."""

alerting_nflog = sa.Table(
    "alerting_nflog",
    metadata,
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("group_key", BinaryText, nullable=False),
    sa.Column("receiver", BinaryText, nullable=False),
    sa.Column("firing", JSONDocument, nullable=False),
    sa.Column("resolved", JSONDocument, nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "group_key", "receiver"),
)
"""The notification log: last notification per (group key, receiver/integration/index)."""

# --- escalation, acknowledgement, on-call (migration 0003) ----------------------------------

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

alerting_escalations = sa.Table(
    "alerting_escalations",
    metadata,
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("group_key", BinaryText, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("policy", sa.Text, nullable=True),
    sa.Column("severity", sa.Text, nullable=True),
    sa.Column("priority", sa.Text, nullable=True),
    sa.Column("group_labels", JSONDocument, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("loop", sa.Integer, nullable=False),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("respond_by", sa.DateTime(timezone=True), nullable=True),
    sa.Column("overdue", sa.Boolean, nullable=False),
    sa.Column("acked_by", sa.Text, nullable=True),
    sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("resolved_by", sa.Text, nullable=True),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fingerprints", JSONDocument, nullable=False),
    sa.Column("recovery", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "group_key"),
)
"""Escalation state of each alert group: policy, level, acknowledgement, resolution."""

alerting_timeline = sa.Table(
    "alerting_timeline",
    metadata,
    sa.Column("id", RowId, nullable=False, autoincrement=True),
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("group_key", BinaryText, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("level", sa.Integer, nullable=True),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("receiver", sa.Text, nullable=True),
    sa.Column("integration", sa.Text, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("detail", JSONDocument, nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index(None, "tenant", "group_key", "id"),
    sa.Index(None, "at"),
)
"""What happened to each alert group: notified whom, when, via what, with what outcome."""

oncall_overrides = sa.Table(
    "oncall_overrides",
    metadata,
    sa.Column("tenant", BinaryText, nullable=False),
    sa.Column("id", BinaryText, nullable=False),
    sa.Column("schedule", sa.Text, nullable=False),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "id"),
)
"""On-call overrides made through the API (configured ones live in the config file)."""
