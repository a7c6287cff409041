"""Packs' runbooks reach the alert manager's runbook library (``/runbooks/<name>``) through
the alerting section, after the operator's own directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalroom.alerting.manager import AlertManager
from signalroom.packs import load_pack, with_pack_runbooks

pytestmark = pytest.mark.unit

SECTION = {"route": {"receiver": "inbox"}, "receivers": [{"name": "inbox"}]}


def test_every_enabled_packs_runbooks_are_served(tmp_path: Path) -> None:
    own = tmp_path / "runbooks"
    own.mkdir()
    (own / "sample-success-rate.md").write_text("# Our own sample runbook\n")
    section = {**SECTION, "escalation": {"runbooks": {"dirs": [str(own)]}}}
    manager = AlertManager.from_section(
        with_pack_runbooks(section, ["freshfoodz", "integration"]), base_dir=tmp_path
    )
    names = manager.runbooks.names()
    for pack in ("freshfoodz", "integration"):
        folder = load_pack(pack).runbooks_dir()
        assert folder is not None
        for path in folder.glob("*.md"):
            assert path.stem in names
            book = manager.runbooks.get(path.stem)
            assert book is not None
    settings = manager.runbooks.get("settings-sync-failure")
    assert settings is not None and "settings" in settings.markdown.lower()
    # the operator's runbook of the same name wins over the pack's
    sample = manager.runbooks.get("sample-success-rate")
    assert sample is not None and sample.title == "Our own sample runbook"
    # a pack that is not enabled contributes nothing; the section is not changed in place
    assert "finops-team-budget" not in names
    assert section["escalation"] == {"runbooks": {"dirs": [str(own)]}}
    assert with_pack_runbooks(SECTION, []) == SECTION
