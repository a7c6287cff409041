"""Throwaway PostgreSQL clusters for tests.

``running_postgres(dir)`` runs ``initdb`` + ``pg_ctl start`` on a free loopback port (socket in a
private directory, fsync off, trust auth), creates a database, yields its SQLAlchemy URL, and stops
and removes the cluster afterwards, also when the body fails. ``postgres_url`` is the
session-scoped pytest fixture around it; register it from ``tests/conftest.py``::

    from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)

or ``pytest_plugins = ["tests.support.postgres"]``, or ``pytest -p tests.support.postgres``.
``fresh_database(postgres_url)`` gives each test its own empty database on that cluster.

The server binaries come from Debian's ``postgresql`` package; without them the helper raises
``PostgresUnavailable`` telling to run ``scripts/install-system-deps.sh postgresql``
(never a silent skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

__all__ = [
    "PostgresUnavailable",
    "find_postgres_bindir",
    "fresh_database",
    "postgres_url",
    "running_postgres",
]

SUPERUSER = "postgres"
DATABASE = "signalroom_test"
_START_TIMEOUT_S = 60
# Unix socket paths are limited to 107 bytes; "<dir>/.s.PGSQL.<port>" must fit.
_MAX_SOCKET_DIR_LEN = 80


class PostgresUnavailable(RuntimeError):
    """PostgreSQL server binaries are not installed, or the cluster did not start."""


def find_postgres_bindir() -> Path:
    """The directory holding initdb/pg_ctl: the newest Debian version, else the one on PATH."""
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if debian:
        return Path(debian[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb and no initdb "
        "on PATH): run scripts/install-system-deps.sh postgresql (as root) to install them"
    )


def _as_postgres_user() -> list[str]:
    """Command prefix that drops root to the ``postgres`` OS user (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root but there is no 'postgres' OS user to run the server as: "
            "run scripts/install-system-deps.sh postgresql"
        ) from exc
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"]
    return ["su", "postgres", "-s", "/bin/sh", "-c", '"$0" "$@"']


def _usable_base_dir(tmp_dir: Path) -> Path:
    """``tmp_dir`` if the server's OS user can reach it and the socket path fits, else /tmp.

    pytest's temporary directories are 0700 root-owned when run as root, so the ``postgres``
    user could not enter them.
    """
    if len(str(tmp_dir)) <= _MAX_SOCKET_DIR_LEN - 40:
        if os.geteuid() != 0:
            return tmp_dir
        probe = subprocess.run(
            [*_as_postgres_user(), "test", "-x", str(tmp_dir)], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return tmp_dir
    return Path(tempfile.gettempdir())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(argv: list[str], cwd: Path, what: str) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=_START_TIMEOUT_S
    )
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def running_postgres(tmp_dir: Path, *, database: str = DATABASE) -> Iterator[str]:
    """Start a private PostgreSQL cluster under ``tmp_dir``; yield a URL to ``database`` on it.

    The URL is ``postgresql+psycopg://postgres@127.0.0.1:<port>/<database>`` (trust auth). The
    cluster is stopped and its directory removed on exit, whatever happened inside.
    """
    bindir = find_postgres_bindir()
    as_postgres = _as_postgres_user()
    cluster_dir = Path(tempfile.mkdtemp(prefix="pg-", dir=_usable_base_dir(tmp_dir)))
    data_dir = cluster_dir / "data"
    socket_dir = cluster_dir / "sock"
    log_file = cluster_dir / "server.log"
    started = False
    try:
        socket_dir.mkdir()
        if os.geteuid() == 0:
            postgres_user = pwd.getpwnam("postgres")
            for path in (cluster_dir, socket_dir):
                os.chown(path, postgres_user.pw_uid, postgres_user.pw_gid)
        _run(
            [
                *as_postgres,
                str(bindir / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=cluster_dir,
            what="initdb",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{socket_dir}'",
            # A throwaway cluster: durability is worthless, speed is not.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/support/postgres.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        last_error: PostgresUnavailable | None = None
        for _attempt in range(3):  # another process may take the free port before we bind it
            port = _free_port()
            try:
                _run(
                    [
                        *as_postgres,
                        str(bindir / "pg_ctl"),
                        "start",
                        "--pgdata",
                        str(data_dir),
                        "--log",
                        str(log_file),
                        "--wait",
                        "--timeout",
                        str(_START_TIMEOUT_S),
                        "--options",
                        f"-p {port}",
                    ],
                    cwd=cluster_dir,
                    what="pg_ctl start",
                )
            except PostgresUnavailable as exc:
                last_error = PostgresUnavailable(f"{exc}\nserver log:\n{_log_tail(log_file)}")
                continue
            started = True
            break
        if not started:
            assert last_error is not None
            raise last_error
        with psycopg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"
    finally:
        # Also after a failed start: a postmaster that came up late must not outlive the test.
        if started or (data_dir / "postmaster.pid").exists():
            subprocess.run(
                [
                    *as_postgres,
                    str(bindir / "pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(data_dir),
                    "--mode",
                    "immediate",
                    "--wait",
                ],
                cwd=cluster_dir,
                capture_output=True,
                check=False,
                timeout=_START_TIMEOUT_S,
            )
        shutil.rmtree(cluster_dir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(cluster_url: str) -> Iterator[str]:
    """An empty database of its own on the cluster behind ``cluster_url``; dropped afterwards."""
    url = sa.make_url(cluster_url)
    name = f"t_{uuid.uuid4().hex[:16]}"
    with _admin_connection(url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connection(url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_connection(url: sa.URL) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the maintenance database (CREATE DATABASE needs one)."""
    return psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL database on a cluster started once per test session."""
    began = time.monotonic()
    with running_postgres(tmp_path_factory.mktemp("postgres")) as url:
        print(f"\n[postgres] cluster up in {time.monotonic() - began:.2f}s at {url}")
        yield url
