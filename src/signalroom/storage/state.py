"""Relational state of signalroom: SQLAlchemy Core on SQLite by default, PostgreSQL at scale.

Silences, the notification log, alert state, incidents, dashboards, users, tokens, schedules,
reports and pushgateway groups live here. The same code runs on both backends; the schema is
``schema.py`` and ``migrations/`` gets a database there (``StateStore.migrate()``, safe at every
start).

The first building block is ``KeyValueStore``: JSON documents by (namespace, tenant, key) with an
optimistic version, so concurrent writers can compare-and-set instead of losing updates.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn, TypeAlias

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from signalroom.storage.schema import kv as kv_table

__all__ = [
    "MIGRATIONS_DIR",
    "ConflictError",
    "Document",
    "JSONInput",
    "KeyValueStore",
    "MigrationError",
    "StateStore",
    "alembic_config",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
"""Alembic script directory shipped inside the package."""

SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
"""How long a SQLite writer waits for another writer's lock before failing."""

# One fixed key for pg_advisory_xact_lock, so concurrent migrate() calls queue up.
_MIGRATION_LOCK_ID: Final = zlib.crc32(b"signalroom.storage.state.migrate")

_SUPPORTED_BACKENDS: Final = ("sqlite", "postgresql")

JSONInput: TypeAlias = (
    bool | int | float | str | Sequence["JSONInput"] | Mapping[str, "JSONInput"] | None
)
"""A value ``KeyValueStore.put`` accepts: anything that is JSON (tuples become lists)."""

# PostgreSQL's jsonb cannot hold U+0000 in a string; refuse it on every backend so both behave
# the same. Matches an escaped NUL that is not itself an escaped backslash followed by "u0000".
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

_dump_json = partial(json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class ConflictError(Exception):
    """A compare-and-set write found another version than the one it expected."""

    def __init__(
        self, namespace: str, tenant: str, key: str, expected: int, actual: int | None
    ) -> None:
        self.namespace = namespace
        self.tenant = tenant
        self.key = key
        self.expected = expected
        self.actual = actual
        found = "no document" if actual is None else f"version {actual}"
        super().__init__(
            f"version conflict on {namespace}/{tenant}/{key!r}: expected version {expected}, "
            f"found {found}"
        )


class MigrationError(RuntimeError):
    """Migrating the state database failed; the database is left as it was."""


@dataclass(frozen=True, slots=True)
class Document:
    """One stored JSON document and the version that ``put`` gave it (1 when first created)."""

    namespace: str
    tenant: str
    key: str
    value: Any
    """Parsed JSON: dict, list, str, int, float, bool or None."""
    version: int
    updated_at: datetime
    """When this version was written, timezone-aware UTC."""


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config for the package's migrations, without any alembic.ini.

    With ``connection``, ``migrations/env.py`` runs on that connection (and in its transaction).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class StateStore:
    """Relational state of signalroom: SQLite file by default, PostgreSQL at scale.

    ``url`` is ``sqlite:///<path>`` (``sqlite://`` for a private in-memory database) or
    ``postgresql+psycopg://user@host:port/db`` (plain ``postgresql://`` means psycopg too).
    Construction does not connect; call ``migrate()`` before first use.
    """

    def __init__(self, url: str | sa.URL) -> None:
        parsed = sa.make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        backend = parsed.get_backend_name()
        if backend not in _SUPPORTED_BACKENDS:
            raise ValueError(
                f"unsupported state database {parsed.render_as_string(hide_password=True)!r}: "
                "use sqlite:///<path> or postgresql+psycopg://user@host:port/db"
            )
        self._url = parsed
        self._engine = _sqlite_engine(parsed) if backend == "sqlite" else _postgres_engine(parsed)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> StateStore:
        """The default store: ``<data_dir>/state.db`` (the directory is created if missing)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(sa.URL.create("sqlite", database=str((data_dir / "state.db").resolve())))

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, for tables that later features add next to ``kv``."""
        return self._engine

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def migrate(self) -> str:
        """Upgrade the database to the newest migration and return that revision.

        Safe at every start (a no-op when already at head) and from several processes at once:
        the whole upgrade runs in one transaction under a PostgreSQL advisory lock, or under
        SQLite's write lock (``BEGIN IMMEDIATE``), so the second caller waits and finds nothing
        left to do. A failing migration rolls back and raises ``MigrationError``.
        """
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if head is None:
            raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
        try:
            if self.backend == "postgresql":
                self._migrate_postgres()
            else:
                self._migrate_sqlite()
        except MigrationError:
            raise
        except Exception as exc:
            raise MigrationError(f"migrating {self!r} to {head} failed: {exc}") from exc
        return head

    def _migrate_postgres(self) -> None:
        with self._engine.connect() as connection, connection.begin():
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            command.upgrade(alembic_config(connection), "head")

    def _migrate_sqlite(self) -> None:
        with self._engine.connect() as connection:
            # Table rebuilds (batch migrations) drop and recreate tables, which must not cascade
            # or fail on foreign keys; SQLite only lets this pragma change outside a transaction.
            # Integrity is checked before commit instead.
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    command.upgrade(alembic_config(connection), "head")
                    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if violations:
                        raise MigrationError(
                            f"migration left rows that violate foreign keys: {violations[:5]}"
                        )
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    def current_revision(self) -> str | None:
        """The revision the database is at, or None before the first ``migrate()``."""
        with self._engine.connect() as connection:
            revision: str | None = MigrationContext.configure(connection).get_current_revision()
            return revision

    def kv(self, namespace: str) -> KeyValueStore:
        """The key-value documents of one namespace (``"silences"``, ``"dashboards"``, ...)."""
        return KeyValueStore(self._engine, namespace)

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self._url.render_as_string(hide_password=True)!r})"


class KeyValueStore:
    """JSON documents by (tenant, key) in one namespace, with optimistic versions.

    Every write bumps the document's version (1 on creation). ``put`` and ``delete`` take an
    ``expected_version`` for compare-and-set: the write happens only if the stored version is
    that one (0 means "must not exist yet"), otherwise ``ConflictError``. Keys are listed in
    code-point order on every backend.
    """

    def __init__(self, engine: sa.Engine, namespace: str) -> None:
        _check_name("namespace", namespace)
        self._engine = engine
        self._namespace = namespace
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @property
    def namespace(self) -> str:
        return self._namespace

    def get(self, key: str, *, tenant: str = "default") -> Document | None:
        """The document at ``key``, or None."""
        _check_name("key", key)
        _check_name("tenant", tenant)
        query = sa.select(kv_table.c.value, kv_table.c.version, kv_table.c.updated_at).where(
            *self._identity(tenant, key)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return self._document(tenant, key, row.value, row.version, row.updated_at)

    def put(
        self,
        key: str,
        value: JSONInput,
        *,
        tenant: str = "default",
        expected_version: int | None = None,
    ) -> Document:
        """Store ``value`` at ``key`` and return the new document (with its new version).

        Without ``expected_version`` the write always wins. With it, the write happens only if
        the stored version equals it (0: only if no document exists), else ``ConflictError``.
        ``ValueError`` if the value is not JSON PostgreSQL and SQLite can both store.
        """
        _check_name("key", key)
        _check_name("tenant", tenant)
        if expected_version is not None and expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {expected_version}")
        stored = _normalise_json(value)
        now = datetime.now(UTC)
        row_values = {
            "namespace": self._namespace,
            "tenant": tenant,
            "key": key,
            "value": stored,
            "updated_at": now,
        }
        with self._engine.begin() as connection:
            if expected_version is None:
                upsert = self._insert(kv_table).values(version=1, **row_values)
                upsert = upsert.on_conflict_do_update(
                    index_elements=[kv_table.c.namespace, kv_table.c.tenant, kv_table.c.key],
                    set_={
                        "value": upsert.excluded.value,
                        "version": kv_table.c.version + 1,
                        "updated_at": upsert.excluded.updated_at,
                    },
                )
                version = connection.execute(upsert.returning(kv_table.c.version)).scalar_one()
            elif expected_version == 0:
                create = (
                    self._insert(kv_table)
                    .values(version=1, **row_values)
                    .on_conflict_do_nothing(
                        index_elements=[kv_table.c.namespace, kv_table.c.tenant, kv_table.c.key]
                    )
                    .returning(kv_table.c.version)
                )
                version = connection.execute(create).scalar()
                if version is None:
                    self._conflict(connection, tenant, key, expected_version)
            else:
                update = (
                    sa.update(kv_table)
                    .where(*self._identity(tenant, key), kv_table.c.version == expected_version)
                    .values(value=stored, version=kv_table.c.version + 1, updated_at=now)
                    .returning(kv_table.c.version)
                )
                version = connection.execute(update).scalar()
                if version is None:
                    self._conflict(connection, tenant, key, expected_version)
        return Document(self._namespace, tenant, key, stored, int(version), now)

    def delete(
        self, key: str, *, tenant: str = "default", expected_version: int | None = None
    ) -> bool:
        """Remove ``key``; True if a document was removed.

        With ``expected_version``, remove only that version, else ``ConflictError`` (also when
        the document is already gone).
        """
        _check_name("key", key)
        _check_name("tenant", tenant)
        statement = sa.delete(kv_table).where(*self._identity(tenant, key))
        if expected_version is not None:
            statement = statement.where(kv_table.c.version == expected_version)
        with self._engine.begin() as connection:
            removed = connection.execute(statement).rowcount > 0
            if not removed and expected_version is not None:
                self._conflict(connection, tenant, key, expected_version)
        return removed

    def list(self, *, tenant: str = "default", prefix: str = "") -> list[Document]:
        """The tenant's documents whose key starts with ``prefix``, in key order."""
        _check_name("tenant", tenant)
        if prefix:
            _check_text("prefix", prefix)
        query = (
            sa.select(kv_table.c.key, kv_table.c.value, kv_table.c.version, kv_table.c.updated_at)
            .where(kv_table.c.namespace == self._namespace, kv_table.c.tenant == tenant)
            .order_by(kv_table.c.key)
        )
        if prefix:
            # A key range rather than LIKE: no wildcard escaping, no case folding (SQLite's LIKE
            # ignores ASCII case) and it walks the primary-key index on both backends.
            query = query.where(kv_table.c.key >= prefix)
            if ord(prefix[-1]) < 0x10FFFF:
                query = query.where(kv_table.c.key < prefix[:-1] + chr(ord(prefix[-1]) + 1))
            else:
                query = query.where(sa.func.substr(kv_table.c.key, 1, len(prefix)) == prefix)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [self._document(tenant, r.key, r.value, r.version, r.updated_at) for r in rows]

    def _identity(self, tenant: str, key: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            kv_table.c.namespace == self._namespace,
            kv_table.c.tenant == tenant,
            kv_table.c.key == key,
        )

    def _conflict(
        self, connection: sa.Connection, tenant: str, key: str, expected_version: int
    ) -> NoReturn:
        actual = connection.execute(
            sa.select(kv_table.c.version).where(*self._identity(tenant, key))
        ).scalar()
        raise ConflictError(self._namespace, tenant, key, expected_version, actual)

    def _document(
        self, tenant: str, key: str, value: Any, version: int, updated_at: datetime
    ) -> Document:
        # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones in the
        # session's zone. Normalise both to aware UTC.
        if updated_at.tzinfo is None:
            updated_at = updated_at.replace(tzinfo=UTC)
        else:
            updated_at = updated_at.astimezone(UTC)
        return Document(self._namespace, tenant, key, value, int(version), updated_at)


def _check_text(what: str, text: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    if "\x00" in text:
        raise ValueError(f"{what} must not contain NUL characters: {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate): {text!r}") from exc


def _check_name(what: str, name: str) -> None:
    _check_text(what, name)
    if not name:
        raise ValueError(f"{what} must not be empty")


def _normalise_json(value: object) -> Any:
    """Validate ``value`` as storable JSON and return it as it will read back (a fresh copy)."""
    try:
        text = _dump_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("value is not valid Unicode (contains a lone surrogate)") from exc
    if _ESCAPED_NUL.search(text):
        raise ValueError("value must not contain NUL characters (U+0000) in strings or keys")
    return json.loads(text)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = sa.create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=_dump_json,
        )
    else:
        engine = sa.create_engine(url, json_serializer=_dump_json)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below open transactions, not the sqlite3 module (which would
        # run DDL outside any transaction and never take the lock before a read).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL keeps every committed transaction across a process crash
            # (kill -9); only an OS crash or power loss can lose the newest ones. It makes a
            # commit ~3x cheaper, which the alert manager's per-request commits need.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"sqlite_begin must be DEFERRED, IMMEDIATE or EXCLUSIVE, got {mode}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgres_engine(url: sa.URL) -> sa.Engine:
    # pre_ping: a restarted or failed-over server must not surface as errors on stale sockets.
    return sa.create_engine(url, pool_pre_ping=True, json_serializer=_dump_json)
