"""StateStore against real PostgreSQL servers: concurrent migrations from separate processes, and
the throwaway-cluster helper in tests/support/postgres.py itself."""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

import tests.support.postgres as pg_support
from signalroom.storage.state import StateStore, alembic_config
from tests.support.postgres import PostgresUnavailable, fresh_database, running_postgres

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
RACE_ROUNDS = 5

# Each child imports first (seconds without bytecode caches), then for each database says
# "ready" and waits for the go line, so both call migrate() at the same moment instead of one
# finishing before the other has even started.
MIGRATE_CHILD = textwrap.dedent(
    """
    import sys
    from signalroom.storage.state import StateStore

    for url in sys.argv[1:]:
        store = StateStore(url)
        print("ready", flush=True)
        sys.stdin.readline()
        print(store.migrate(), flush=True)
        store.close()
    """
)


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql"),
        pytest.param("sqlite", id="sqlite"),
    ]
)
def empty_database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Empty databases, one per round of the race."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path / f'state{n}.db'}" for n in range(RACE_ROUNDS)]
        return
    cluster_url: str = request.getfixturevalue("postgres_url")
    with contextlib.ExitStack() as databases:
        yield [databases.enter_context(fresh_database(cluster_url)) for _ in range(RACE_ROUNDS)]


def _read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if not line:  # the child died: show why
        child.wait(timeout=60)
        raise AssertionError(f"child exited {child.returncode}:\n{child.stderr.read()}")
    return line.strip()


def _migrate_in_two_processes_at_once(urls: list[str]) -> list[list[str]]:
    """For each URL in turn, two processes call migrate() at once; their answers per URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_CHILD, *urls],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    answers: list[list[str]] = []
    try:
        for _url in urls:
            for child in children:
                assert _read_line(child) == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            answers.append([_read_line(child) for child in children])
        for child in children:
            _out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    return answers


@pytest.mark.slow
def test_two_processes_migrating_at_once_both_succeed(empty_database_urls: list[str]) -> None:
    # Several rounds: a race that is lost only now and then still shows up.
    for url in empty_database_urls:
        with StateStore(url) as store:
            assert store.current_revision() is None

    answers = _migrate_in_two_processes_at_once(empty_database_urls)

    for url, revisions in zip(empty_database_urls, answers, strict=True):
        with StateStore(url) as store:
            head = store.migrate()  # a third, late call: a no-op
            assert revisions == [head, head]
            assert store.current_revision() == head
            store.kv("smoke").put("k", {"ok": True})
            document = store.kv("smoke").get("k")
            assert document is not None and document.version == 1


@pytest.mark.postgres
def test_running_postgres_stops_and_removes_the_cluster_even_on_failure(tmp_path: Path) -> None:
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="test body failed"), running_postgres(tmp_path) as url:
        with StateStore(url) as store:
            seen["revision"] = store.migrate()
            with store.engine.connect() as connection:
                data_dir = connection.exec_driver_sql("SHOW data_directory").scalar_one()
        seen["port"] = sa.make_url(url).port
        seen["cluster_dir"] = Path(data_dir).parent
        assert Path(data_dir, "PG_VERSION").is_file()
        raise RuntimeError("test body failed")

    assert seen["revision"] == ScriptDirectory.from_config(alembic_config()).get_current_head()
    port = seen["port"]
    assert isinstance(port, int)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    cluster_dir = seen["cluster_dir"]
    assert isinstance(cluster_dir, Path)
    assert cluster_dir.name.startswith("pg-")
    assert not cluster_dir.exists()


def test_missing_binaries_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glob, "glob", lambda _pattern: [])
    monkeypatch.setenv("PATH", "")
    with pytest.raises(PostgresUnavailable, match=r"scripts/install-system-deps\.sh postgresql"):
        pg_support.find_postgres_bindir()
    with (
        pytest.raises(PostgresUnavailable, match=r"scripts/install-system-deps\.sh postgresql"),
        running_postgres(Path("/nonexistent")),
    ):
        pass
