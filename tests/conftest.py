"""Shared fixtures. The conformance data lives in ../shared beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.fail(f"{SHARED_DIR} is missing: the conformance data must sit beside the repository")
    return SHARED_DIR


pytest_plugins = ["tests.support.postgres"]
