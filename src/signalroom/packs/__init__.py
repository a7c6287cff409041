"""Domain packs: rule files, dashboards, runbooks and code that turn a seed plan into monitoring.

A pack is a directory ``packs/<name>/`` holding ``rules/*.yml`` (Prometheus rule files; their
promtool unit tests are ``rules/*.test.yml``), ``dashboards/*.json`` (Grafana dashboard JSON),
``runbooks/*.md`` and a ``README.md``. ``packs: [freshfoodz]`` in the configuration enables one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PACKS_DIR",
    "Pack",
    "UnknownPackError",
    "available_packs",
    "load_pack",
    "with_pack_runbooks",
]

PACKS_DIR = Path(__file__).resolve().parent


class UnknownPackError(KeyError):
    """No pack of that name is installed."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Pack:
    """An installed pack and the content it ships."""

    name: str
    directory: Path

    def rule_files(self) -> list[Path]:
        """The pack's rule files (not their ``*.test.yml`` unit tests), sorted."""
        rules = self.directory / "rules"
        return (
            sorted(p for p in rules.glob("*.yml") if not p.name.endswith(".test.yml"))
            if rules.is_dir()
            else []
        )

    def rule_test_files(self) -> list[Path]:
        """The promtool-format unit tests of the rule files, sorted."""
        rules = self.directory / "rules"
        return sorted(rules.glob("*.test.yml")) if rules.is_dir() else []

    def dashboards(self) -> dict[str, dict[str, Any]]:
        """Grafana dashboard JSON documents by file stem."""
        folder = self.directory / "dashboards"
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))}

    def runbooks_dir(self) -> Path | None:
        """The directory of the pack's runbooks (``<name>.md``, named by the rules' ``runbook``
        annotation), or None."""
        folder = self.directory / "runbooks"
        return folder if folder.is_dir() else None

    def readme(self) -> str:
        readme = self.directory / "README.md"
        return readme.read_text("utf-8") if readme.is_file() else ""


def available_packs() -> list[str]:
    """Names of the installed packs (directories beside this module with content)."""
    return sorted(
        p.name
        for p in PACKS_DIR.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "README.md").is_file()
    )


def load_pack(name: str) -> Pack:
    """The pack called ``name``; :class:`UnknownPackError` names the installed ones."""
    if name not in available_packs():
        known = ", ".join(available_packs()) or "none"
        raise UnknownPackError(f"unknown pack {name!r} (installed: {known})")
    return Pack(name, PACKS_DIR / name)


def with_pack_runbooks(alerting: Mapping[str, Any], packs: Sequence[str]) -> dict[str, Any]:
    """The ``alerting:`` section with the runbook directories of ``packs`` appended to
    ``escalation.runbooks.dirs``, so the alert manager's runbook library serves them at
    ``/runbooks/<name>``. The configured directories come first: an operator's own runbook of
    the same name wins over the pack's. Unknown pack names are left to the packs validator."""
    dirs = [
        str(folder)
        for name in packs
        if name in available_packs() and (folder := load_pack(name).runbooks_dir()) is not None
    ]
    if not dirs:
        return dict(alerting)
    escalation = dict(alerting.get("escalation") or {})
    runbooks = dict(escalation.get("runbooks") or {})
    runbooks["dirs"] = [*(runbooks.get("dirs") or []), *dirs]
    escalation["runbooks"] = runbooks
    return {**alerting, "escalation": escalation}
