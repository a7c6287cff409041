"""Shared fixture of the event tests: a real event store on a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signalroom.events.store import EventStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    events = EventStore(tmp_path / "store", wal_fsync="never")
    events.open()
    yield events
    events.close()
