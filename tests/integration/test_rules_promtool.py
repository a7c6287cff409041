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


#: Where our PromQL parser gives no detail: a grammar error ("unexpected <token> ..." in
#: Prometheus). Such a line matches promtool's line for the same rule when that one is also a
#: grammar error; every other line must match exactly.
_SYNTAX = re.compile(r"(.*could not parse expression: )(?:\d+:\d+: )?parse error: (.*)")
_OURS_UNDETAILED = ("invalid promql query", "bad number or duration syntax", "illegal regex")
_THEIRS_GRAMMAR = ("unexpected ", "bad duration syntax", "error parsing regexp")


def _normalise(text: str, ours: bool) -> list[str]:
    lines = []
    for line in text.splitlines():
        m = _SYNTAX.fullmatch(line)
        if m is not None:
            undetailed = _OURS_UNDETAILED if ours else _THEIRS_GRAMMAR
            if m.group(2).startswith(undetailed):
                line = m.group(1) + "<syntax error>"
        if line.strip():
            lines.append(line)
    return lines


def _same_lines(got: str, expected: str) -> None:
    ours, theirs = _normalise(got, True), _normalise(expected, False)
    # A grammar error promtool details but we do not: compare it as "<syntax error>" only when
    # our parser gave no detail for that rule (promtool's exact line is kept otherwise).
    undetailed = {line for line in ours if line.endswith("<syntax error>")}
    theirs = [
        line if line.endswith("<syntax error>") and line in undetailed else _raw(line, expected)
        for line in theirs
    ]
    # Sorted: promtool reports label/annotation errors in Go's random map order.
    assert sorted(ours) == sorted(theirs)


def _raw(line: str, text: str) -> str:
    """promtool's original line for a normalised one."""
    if not line.endswith("<syntax error>"):
        return line
    prefix = line.removesuffix("<syntax error>")
    return next(raw for raw in text.splitlines() if raw.startswith(prefix))


@pytest.mark.parametrize("name", CHECK_FILES)
def test_check_rules_matches_promtool(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = RULES / "check"
    expected, expected_code = _promtool(["check", "rules", name], cwd)
    monkeypatch.chdir(cwd)
    got, code = check_rules([name])
    assert code == expected_code
    _same_lines(got, expected)


def test_check_several_files_matches_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = RULES / "check"
    names = ["good.yml", "bad7.yml", "dup.yml"]
    expected, expected_code = _promtool(["check", "rules", *names], cwd)
    monkeypatch.chdir(cwd)
    got, code = check_rules(names)
    assert code == expected_code == 1
    _same_lines(got, expected)


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
    assert _normalise(got, True) == _normalise(expected, False)
    if folder == "seeds":
        assert code == 0, got
