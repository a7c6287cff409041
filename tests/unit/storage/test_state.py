"""StateStore and KeyValueStore, the same tests on SQLite and on a real PostgreSQL.

Marks are per backend rather than per module: the SQLite cases are ``unit``, the PostgreSQL
cases ``integration`` + ``postgres`` (they need the session's cluster), so ``-m unit`` never
starts a server.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from signalroom.storage.schema import metadata
from signalroom.storage.state import (
    ConflictError,
    Document,
    MigrationError,
    StateStore,
    alembic_config,
)
from tests.support.postgres import fresh_database

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.unit, id="sqlite"),
    pytest.param(
        "postgresql", marks=[pytest.mark.integration, pytest.mark.postgres], id="postgresql"
    ),
]

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh database on the session's cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    cluster_url: str = request.getfixturevalue("postgres_url")
    with fresh_database(cluster_url) as url:
        yield url


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    with StateStore(state_url) as migrated:
        migrated.migrate()
        yield migrated


def _table_names(store: StateStore) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


# --- migrations ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_there_is_a_head_revision() -> None:
    assert HEAD == "0003"


def test_migrate_from_empty_creates_kv_and_version_table(state_url: str) -> None:
    with StateStore(state_url) as store:
        assert store.current_revision() is None
        assert _table_names(store) == set()

        assert store.migrate() == HEAD

        assert store.current_revision() == HEAD
        assert _table_names(store) == set(metadata.tables) | {"alembic_version"}
        assert {"kv", "alerting_alerts", "alerting_silences", "alerting_nflog"} <= _table_names(
            store
        )
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("kv")}
        assert columns == {"namespace", "tenant", "key", "value", "version", "updated_at"}
        primary_key = sa.inspect(store.engine).get_pk_constraint("kv")
        assert primary_key["constrained_columns"] == ["namespace", "tenant", "key"]


def test_migrate_twice_is_a_no_op(state_url: str) -> None:
    with StateStore(state_url) as store:
        store.migrate()
        store.kv("dashboards").put("home", {"title": "Home"})

        assert store.migrate() == HEAD

        assert store.current_revision() == HEAD
        with store.engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(HEAD,)]
        document = store.kv("dashboards").get("home")
        assert document is not None
        assert (document.value, document.version) == ({"title": "Home"}, 1)


def test_schema_module_matches_the_migrations(store: StateStore) -> None:
    # schema.py (what the code uses) and versions/ (what migrate() builds) must not drift apart.
    with store.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
    assert differences == []


@pytest.mark.unit
def test_failing_migration_raises_migration_error(tmp_path: Path) -> None:
    # A database that already has a kv table Alembic does not know about: 0001 cannot run.
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore(url) as store:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE kv (x INTEGER)")
        with pytest.raises(MigrationError, match=r"migrating .* failed: .*table kv already exists"):
            store.migrate()
        # rolled back: still unmigrated, nothing half-done
        assert store.current_revision() is None
        assert _table_names(store) == {"kv"}


# --- key-value documents ------------------------------------------------------------------------

NESTED_UNICODE: dict[str, Any] = {
    "title": "Übersicht — 売上 📈",
    "panels": [
        {"id": 1, "expr": 'sum(rate(http_requests_total{job="shop"}[5m]))', "span": 0.5},
        {"id": 2, "tags": ["ß", "ñ", "e\u0301", "\u05d0\u05d1"], "hidden": False, "link": None},
    ],
    "depth": {"a": {"b": {"c": {"d": [[], {}, [1, [2, [3]]]]}}}},
    "numbers": {"big": 2**62, "negative": -17, "float": 1e-9, "one": 1.0},
    'quote"back\\slash': "tab\tnewline\n",
    "": "empty key",
}


@pytest.mark.parametrize("key", ["home", "dashboards/ops/Übersicht 📈", "a key with spaces"])
def test_put_and_get_roundtrip_unicode_nested_json(store: StateStore, key: str) -> None:
    documents = store.kv("dashboards")
    before = datetime.now(UTC)

    written = documents.put(key, NESTED_UNICODE)
    read = documents.get(key)

    assert read == written
    assert read.value == NESTED_UNICODE
    assert isinstance(read.value["numbers"]["one"], float)
    assert isinstance(read.value["numbers"]["big"], int)
    assert (read.namespace, read.tenant, read.key, read.version) == (
        "dashboards",
        "default",
        key,
        1,
    )
    assert read.updated_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= read.updated_at <= datetime.now(UTC)


@pytest.mark.parametrize("value", [None, True, 0, -1.5, "just a string", [], {}, [1, "x", None]])
def test_scalar_and_empty_values_roundtrip(store: StateStore, value: object) -> None:
    documents = store.kv("misc")
    documents.put("k", value)  # type: ignore[arg-type]
    document = documents.get("k")
    assert document is not None
    assert document.value == value
    assert type(document.value) is type(value)


def test_put_overwrites_and_bumps_the_version(store: StateStore) -> None:
    documents = store.kv("silences")
    assert documents.put("s1", {"state": "active"}).version == 1
    second = documents.put("s1", {"state": "expired"})

    assert second.version == 2
    assert second.updated_at >= documents.put("s2", 1).updated_at - timedelta(seconds=1)
    current = documents.get("s1")
    assert current is not None
    assert (current.value, current.version) == ({"state": "expired"}, 2)


def test_put_returns_the_value_as_it_reads_back(store: StateStore) -> None:
    value: dict[str, Any] = {"tuple": (1, 2), "nested": {"list": [1]}}
    written = store.kv("misc").put("k", value)
    value["nested"]["list"].append(2)
    assert written.value == {"tuple": [1, 2], "nested": {"list": [1]}}
    assert store.kv("misc").get("k") == written


def test_get_missing_key_is_none(store: StateStore) -> None:
    assert store.kv("misc").get("nope") is None


def test_tenants_are_isolated(store: StateStore) -> None:
    documents = store.kv("dashboards")
    documents.put("home", {"owner": "acme"}, tenant="acme")
    documents.put("home", {"owner": "globex"}, tenant="globex")
    documents.put("only-acme", 1, tenant="acme")

    acme = documents.get("home", tenant="acme")
    globex = documents.get("home", tenant="globex")
    assert acme is not None and globex is not None
    assert acme.value == {"owner": "acme"} and globex.value == {"owner": "globex"}
    assert documents.get("home") is None  # the default tenant has nothing
    assert documents.get("only-acme", tenant="globex") is None
    assert [d.key for d in documents.list(tenant="acme")] == ["home", "only-acme"]
    assert [d.key for d in documents.list(tenant="globex")] == ["home"]

    assert documents.delete("home", tenant="globex")
    assert documents.get("home", tenant="acme") == acme


def test_namespaces_are_isolated(store: StateStore) -> None:
    store.kv("silences").put("x", "silence")
    store.kv("dashboards").put("x", "dashboard")
    silence = store.kv("silences").get("x")
    assert silence is not None and silence.value == "silence"
    assert [d.value for d in store.kv("dashboards").list()] == ["dashboard"]
    assert store.kv("users").list() == []


KEYS = ["a", "a/b", "a/c", "ab", "A/x", "b", "a%", "a_z", "a%b", "é", "z", "Z", "a/\U0010ffff", "ü"]


def test_list_is_in_code_point_order(store: StateStore) -> None:
    documents = store.kv("keys")
    for key in reversed(KEYS):
        documents.put(key, key)
    assert [d.key for d in documents.list()] == sorted(KEYS)
    assert all(d.value == d.key for d in documents.list())


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", sorted(KEYS)),
        ("a/", ["a/b", "a/c", "a/\U0010ffff"]),
        ("a", sorted(k for k in KEYS if k.startswith("a"))),
        ("A", ["A/x"]),  # case-sensitive
        ("a%", ["a%", "a%b"]),  # LIKE wildcards are plain characters
        ("a_", ["a_z"]),
        ("a/\U0010ffff", ["a/\U0010ffff"]),  # no successor character exists
        ("é", ["é"]),
        ("nothing", []),
    ],
)
def test_list_by_prefix(store: StateStore, prefix: str, expected: list[str]) -> None:
    documents = store.kv("keys")
    for key in KEYS:
        documents.put(key, key)
    documents.put("a/b", "other tenant", tenant="other")
    assert [d.key for d in documents.list(prefix=prefix)] == expected


def test_compare_and_set(store: StateStore) -> None:
    documents = store.kv("alerts")
    first = documents.put("HighLatency", {"state": "pending"}, expected_version=0)
    assert first.version == 1

    second = documents.put("HighLatency", {"state": "firing"}, expected_version=1)
    assert second.version == 2

    with pytest.raises(ConflictError) as stale:
        documents.put("HighLatency", {"state": "resolved"}, expected_version=1)
    assert (stale.value.expected, stale.value.actual, stale.value.key) == (1, 2, "HighLatency")
    with pytest.raises(ConflictError) as exists:
        documents.put("HighLatency", {"state": "new"}, expected_version=0)
    assert exists.value.actual == 2
    with pytest.raises(ConflictError) as missing:
        documents.put("Absent", {"state": "x"}, expected_version=3)
    assert missing.value.actual is None

    assert documents.get("HighLatency") == second  # the losers changed nothing
    assert documents.get("Absent") is None


def test_compare_and_set_delete(store: StateStore) -> None:
    documents = store.kv("alerts")
    documents.put("a", 1)
    documents.put("a", 2)
    with pytest.raises(ConflictError):
        documents.delete("a", expected_version=1)
    assert documents.get("a") is not None
    assert documents.delete("a", expected_version=2)
    with pytest.raises(ConflictError) as gone:
        documents.delete("a", expected_version=2)
    assert gone.value.actual is None


def test_delete(store: StateStore) -> None:
    documents = store.kv("tokens")
    documents.put("t1", {"hash": "x"})
    documents.put("t2", {"hash": "y"})

    assert documents.delete("t1") is True
    assert documents.delete("t1") is False
    assert documents.delete("never-existed") is False
    assert documents.get("t1") is None
    assert [d.key for d in documents.list()] == ["t2"]
    # a deleted key starts over at version 1
    assert documents.put("t1", {"hash": "z"}).version == 1


def test_concurrent_compare_and_set_writers_never_lose_an_update(store: StateStore) -> None:
    documents = store.kv("counters")
    documents.put("hits", {"n": 0})
    threads, increments = 4, 25
    conflicts = [0] * threads
    written_versions: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        try:
            start.wait()
            done = 0
            while done < increments:
                current = documents.get("hits")
                assert current is not None
                try:
                    written = documents.put(
                        "hits",
                        {"n": current.value["n"] + 1},
                        expected_version=current.version,
                    )
                except ConflictError:
                    conflicts[index] += 1
                    continue
                written_versions[index].append(written.version)
                done += 1
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert errors == []
    final = documents.get("hits")
    assert final is not None
    assert final.value == {"n": threads * increments}
    assert final.version == threads * increments + 1
    every_version = sorted(v for versions in written_versions for v in versions)
    assert every_version == list(range(2, threads * increments + 2))  # each version won once


def test_concurrent_unconditional_puts_get_distinct_versions(store: StateStore) -> None:
    documents = store.kv("counters")
    threads, puts = 4, 20
    versions: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        try:
            start.wait()
            for n in range(puts):
                written = documents.put("racy", {"writer": index, "n": n})  # first one inserts
                with lock:
                    versions.append(written.version)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert errors == []
    assert sorted(versions) == list(range(1, threads * puts + 1))
    final = documents.get("racy")
    assert final is not None and final.version == threads * puts


def test_state_survives_reopen(state_url: str) -> None:
    with StateStore(state_url) as store:
        store.migrate()
        written = store.kv("incidents").put("INC-1", {"title": "Checkout down"}, tenant="shop")
        store.kv("incidents").put("INC-1", {"title": "Checkout down"})
        store.kv("incidents").put("INC-1", {"title": "Checkout down", "state": "resolved"})

    with StateStore(state_url) as reopened:
        assert reopened.current_revision() == HEAD
        assert reopened.kv("incidents").get("INC-1", tenant="shop") == written
        assert reopened.migrate() == HEAD
        document = reopened.kv("incidents").get("INC-1")
        assert document is not None and document.version == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "not JSON"),
        ({"x": math.inf}, "not JSON"),
        ({"when": datetime(2025, 1, 1)}, "not JSON"),
        ({(1, 2): "tuple key"}, "not JSON"),
        ({"text": "nul\x00inside"}, "NUL"),
        ({"nul\x00key": 1}, "NUL"),
        (["\ud800"], "surrogate"),
    ],
)
def test_put_refuses_values_not_storable_on_both_backends(
    store: StateStore, value: object, message: str
) -> None:
    documents = store.kv("misc")
    documents.put("k", "before")
    with pytest.raises(ValueError, match=message):
        documents.put("k", value)  # type: ignore[arg-type]
    document = documents.get("k")
    assert document is not None and (document.value, document.version) == ("before", 1)


def test_escaped_backslash_before_u0000_text_is_not_a_nul(store: StateStore) -> None:
    value = {"windows path": "C:\\u0000\\dir", "regex": "\\\\u0000"}
    store.kv("misc").put("k", value)
    document = store.kv("misc").get("k")
    assert document is not None and document.value == value


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"key": ""}, ValueError),
        ({"key": "k", "tenant": ""}, ValueError),
        ({"key": "nul\x00"}, ValueError),
        ({"key": "k", "tenant": "t\x00"}, ValueError),
        ({"key": "k", "expected_version": -1}, ValueError),
        ({"key": 7}, TypeError),
    ],
)
def test_put_refuses_bad_names(store: StateStore, kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        store.kv("misc").put(value=1, **kwargs)  # type: ignore[arg-type]
    assert store.kv("misc").list() == []


def test_empty_namespace_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="namespace"):
        store.kv("")


def test_document_is_frozen(store: StateStore) -> None:
    document = store.kv("misc").put("k", 1)
    assert isinstance(document, Document)
    with pytest.raises(AttributeError):
        document.version = 5  # type: ignore[misc]


# --- SQLite specifics ---------------------------------------------------------------------------


@pytest.mark.unit
def test_for_data_dir_uses_state_db_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    with StateStore.for_data_dir(data_dir) as store:
        assert store.backend == "sqlite"
        store.migrate()
        store.kv("misc").put("k", 1)
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert (data_dir / "state.db").is_file()
    with StateStore(f"sqlite:///{data_dir / 'state.db'}") as again:
        document = again.kv("misc").get("k")
        assert document is not None and document.value == 1


@pytest.mark.unit
def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with StateStore.for_data_dir(tmp_path) as store, store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE child (parent_id INTEGER REFERENCES parent(id))")
    with (
        StateStore.for_data_dir(tmp_path) as store,
        pytest.raises(sa.exc.IntegrityError),
        store.engine.begin() as connection,
    ):
        connection.exec_driver_sql("INSERT INTO child VALUES (42)")


@pytest.mark.unit
def test_sqlite_transactions_roll_back(tmp_path: Path) -> None:
    # The sqlite3 module's own transaction handling is replaced; make sure rollback still works.
    with StateStore.for_data_dir(tmp_path) as store:
        store.migrate()
        store.kv("misc").put("k", "kept")
        with pytest.raises(RuntimeError), store.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM kv")
            raise RuntimeError("abort")
        assert [d.value for d in store.kv("misc").list()] == ["kept"]


@pytest.mark.unit
def test_in_memory_sqlite_is_shared_across_connections() -> None:
    with StateStore("sqlite://") as store:
        store.migrate()
        store.kv("misc").put("k", [1])
        document = store.kv("misc").get("k")
        assert document is not None and document.value == [1]


@pytest.mark.unit
def test_urls() -> None:
    assert StateStore("postgresql://u@localhost/db").engine.dialect.driver == "psycopg"
    with pytest.raises(ValueError, match="unsupported state database"):
        StateStore("mysql://u:secret@localhost/db")
    with pytest.raises(ValueError) as refused:
        StateStore("oracle://u:secret@localhost/db")
    assert "secret" not in str(refused.value)
    assert "secret" not in repr(StateStore("postgresql+psycopg://u:secret@localhost/db"))
