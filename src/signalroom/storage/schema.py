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
