"""Alembic environment for signalroom's state: no alembic.ini, the caller provides a connection.

``StateStore.migrate()`` puts an open connection, already inside a transaction and holding the
migration lock, into ``config.attributes["connection"]``; everything then runs in that one
transaction. Without a connection (offline ``--sql`` mode, or a hand-made Config with
``sqlalchemy.url``), the URL from the config is used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from signalroom.storage.schema import metadata


def _configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # Batch mode turns ALTER TABLE into SQLite's copy-and-rename where SQLite cannot ALTER,
        # and into plain ALTER on PostgreSQL, so one migration serves both backends.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            render_as_batch=True,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic env: no connection in config.attributes and no sqlalchemy.url")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as own_connection:
            _configure_and_run(own_connection)
    finally:
        engine.dispose()


_run()
