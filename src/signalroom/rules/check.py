"""`signalroom rules check`: the verdicts and text of `promtool check rules`."""

from __future__ import annotations

import itertools
from pathlib import Path

from signalroom.rules.rulefmt import RuleFile, RuleFileError, parse_file

LINT_PREFIX = "lint error"


def _duplicates(rule_file: RuleFile) -> list[tuple[str, list[tuple[str, str]]]]:
    """Rules with the same name and labels (promtool's duplicate-rules lint)."""
    keyed = sorted(
        (rule.alert or rule.record, sorted(rule.labels.items()))
        for group in rule_file.groups
        for rule in group.rules
    )
    dups: list[tuple[str, list[tuple[str, str]]]] = []
    for prev, cur in itertools.pairwise(keyed):
        if prev == cur and (not dups or dups[-1] != cur):
            dups.append(cur)
    return dups


def check_rule_file(path: str) -> tuple[str, bool, bool]:
    """Output for one file, whether it failed, and whether the failure is a real error."""
    out = [f"Checking {path}\n"]
    try:
        rule_file = parse_file(path)
    except RuleFileError as exc:
        out.append("  FAILED:\n")
        out.extend(e + "\n" for e in exc.errors)
        out.append("\n")
        return "".join(out), True, True
    dups = _duplicates(rule_file)
    if dups:
        msg = f"{len(dups)} duplicate rule(s) found.\n"
        for metric, labels in dups:
            msg += f"Metric: {metric}\nLabel(s):\n"
            for name, value in labels:
                msg += f"\t{name}: {value}\n"
        msg += "Might cause inconsistency while recording expressions"
        out.append("  FAILED:\n")
        out.append(f"{LINT_PREFIX} {msg}\n")
        out.append("\n")
        return "".join(out), True, False
    out.append(f"  SUCCESS: {rule_file.rule_count} rules found\n\n")
    return "".join(out), False, False


def check_rules(paths: list[str], lint_fatal: bool = False) -> tuple[str, int]:
    """Check rule files as `promtool check rules` does; returns (output, exit code).

    Exit code 1 for any invalid file; duplicate-rule lint findings are reported but only fail
    with `lint_fatal` (exit 3, as promtool's --lint-fatal).
    """
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return f"signalroom: error: path '{missing[0]}' does not exist, try --help\n", 1
    chunks: list[str] = []
    failed = has_errors = False
    for path in paths:
        text, file_failed, file_error = check_rule_file(path)
        chunks.append(text)
        failed = failed or file_failed
        has_errors = has_errors or file_error
    if failed and has_errors:
        return "".join(chunks), 1
    if failed and lint_fatal:
        return "".join(chunks), 3
    return "".join(chunks), 0
