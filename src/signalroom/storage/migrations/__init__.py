"""Alembic migrations of signalroom's relational state (run by ``StateStore.migrate()``).

There is no ``alembic.ini``: ``signalroom.storage.state.alembic_config()`` points Alembic at this
directory, and ``env.py`` runs the migrations on the connection ``StateStore.migrate()`` hands it
(inside one transaction, under a PostgreSQL advisory lock or an immediate SQLite write lock).

Adding a table or a column
==========================

1. Change ``signalroom/storage/schema.py`` (the schema as the code uses it).
2. Add ``versions/NNNN_<what>.py`` with the next number, ``revision = "NNNN"`` and
   ``down_revision`` set to the previous number. Write it by hand with ``op.create_table`` /
   ``op.batch_alter_table`` (batch mode makes ALTER work on SQLite too), or let Alembic draft it
   from the difference between the migrated database and ``schema.py``::

       from alembic import command
       from signalroom.storage.state import StateStore, alembic_config

       with StateStore("sqlite:////tmp/draft.db") as store:
           store.migrate()
           with store.engine.begin() as connection:
               command.revision(alembic_config(connection), message="add silences",
                                autogenerate=True, rev_id="0002")

   then read the draft and fix it: spell out types, server defaults and data moves.
3. Never import ``schema.py`` from a migration and never edit a released migration: a migration
   is history, ``schema.py`` is the present.
4. Run ``pytest tests/unit/storage/test_state.py`` (SQLite and PostgreSQL): it migrates an empty
   database to head and fails if ``schema.py`` and the migrations disagree.
"""
