"""promtool and signalroom side by side on the same rule files and unit-test files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from signalroom.rules.check import check_rules
from signalroom.rules.unittest import run_rule_tests

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed"),
]

RULES = Path(__file__).resolve().parents[1] / "rules"
CHECK_FILES = sorted(p.name for p in (RULES / "check").glob("*.yml"))
SEED_RULES = sorted(p.name for p in (RULES / "seeds").glob("*.rules.yml"))
SEED_TESTS = sorted(p.name for p in (RULES / "seeds").glob("*.test.yml"))
UNIT_TESTS = sorted(p.name for p in (RULES / "unit").glob("*.test.yml"))


def _promtool(args: list[str], cwd: Path) -> tuple[str, int]:
    # stderr merged into stdout in write order, as a terminal shows it.
    proc = subprocess.run(
        ["promtool", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    return proc.stdout, proc.returncode


def _normalise(text: str) -> list[str]:
    """Drop what cannot match: the PromQL parser's wording after 'could not parse expression'
    and YAML syntax-error wording (different YAML parsers); keep everything else exact."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"(could not parse expression:).*", r"\1 <parse error>", line)
        line = re.sub(r"(yaml: line )\d+: .*", r"\1<syntax error>", line)
        if line.strip():
            lines.append(line)
    # promtool prints a yaml syntax error once per decoding pass.
    out: list[str] = []
    for line in lines:
        if not (out and out[-1] == line and "<syntax error>" in line):
            out.append(line)
    return out


@pytest.mark.parametrize("name", CHECK_FILES)
def test_check_rules_matches_promtool(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = RULES / "check"
    expected, expected_code = _promtool(["check", "rules", name], cwd)
    monkeypatch.chdir(cwd)
    got, code = check_rules([name])
    assert code == expected_code
    # Sorted: promtool reports label/annotation errors in Go's random map order.
    assert sorted(_normalise(got)) == sorted(_normalise(expected))


def test_check_several_files_matches_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = RULES / "check"
    names = ["good.yml", "bad7.yml", "dup.yml"]
    expected, expected_code = _promtool(["check", "rules", *names], cwd)
    monkeypatch.chdir(cwd)
    got, code = check_rules(names)
    assert code == expected_code == 1
    assert sorted(_normalise(got)) == sorted(_normalise(expected))


@pytest.mark.parametrize("name", SEED_RULES)
def test_seed_rules_check_like_promtool(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = RULES / "seeds"
    expected, expected_code = _promtool(["check", "rules", name], cwd)
    monkeypatch.chdir(cwd)
    got, code = check_rules([name])
    assert (code, got) == (expected_code, expected)
    assert code == 0


@pytest.mark.parametrize(
    ("folder", "name"), [("seeds", n) for n in SEED_TESTS] + [("unit", n) for n in UNIT_TESTS]
)
def test_rule_unit_tests_match_promtool(
    folder: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = RULES / folder
    expected, expected_code = _promtool(["test", "rules", name], cwd)
    monkeypatch.chdir(cwd)
    got, code = run_rule_tests([name])
    assert code == expected_code
    # Same lines; promtool interleaves stdout blank lines with stderr, so compare without them.
    assert _normalise(got) == _normalise(expected)
    if folder == "seeds":
        assert code == 0, got
