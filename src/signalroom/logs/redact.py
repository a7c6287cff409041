"""PII redaction of log lines, before anything is stored.

Each rule runs over the whole line column at once with Arrow's RE2 kernels; only rules that
need a checksum (card numbers: Luhn; IBANs: mod 97) visit the lines that matched their
candidate pattern in Python, so a batch without PII costs one vectorised pass per rule.
What was redacted is counted per rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from signalroom.logs.config import RedactionConfig

__all__ = ["REDACTIONS", "Redactor", "iban_valid", "luhn_valid"]

REDACTIONS = Counter(
    "signalroom_logs_redactions_total",
    "Values redacted from log lines before storage, by rule.",
    ["rule"],
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers)."""
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97."""
    iban = text.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    if not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: str  # RE2, for Arrow
    replacement: str  # RE2 rewrite (\1 groups)
    check: Callable[[str], bool] | None = None  # a match is redacted only if this is true


def _field_rule(fields: Sequence[str]) -> _Rule | None:
    if not fields:
        return None
    names = "|".join(re.escape(f) for f in sorted(fields, key=len, reverse=True))
    # "password": "x"  |  password=x  |  password: x   (JSON, logfmt, header style)
    pattern = (
        rf'(?i)("(?:{names})"\s*:\s*)"(?:[^"\\]|\\.)*"'
        rf"|(\b(?:{names})=)(?:\"(?:[^\"\\]|\\.)*\"|[^\s,&;]+)"
    )
    return _Rule("field", pattern, "", None)


_BUILTINS: dict[str, _Rule] = {
    "email": _Rule(
        "email",
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
        "[REDACTED:email]",
    ),
    "card": _Rule(
        "card",
        r"\b[2-6]\d(?:[ \-]?\d){10,17}\b",
        "[REDACTED:card]",
        lambda m: luhn_valid(re.sub(r"[ \-]", "", m)),
    ),
    "iban": _Rule(
        "iban",
        r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b",
        "[REDACTED:iban]",
        iban_valid,
    ),
    "jwt": _Rule(
        "jwt", r"\beyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*", "[REDACTED:jwt]"
    ),
    "bearer": _Rule("bearer", r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*", r"\1 [REDACTED:token]"),
    "api_key": _Rule(
        "api_key",
        r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bAKIA[0-9A-Z]{16}\b"
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
        r"|\bAIza[0-9A-Za-z_\-]{35}",
        "[REDACTED:api_key]",
    ),
    "phone": _Rule(
        "phone",
        r"\+[1-9]\d{0,2}[ .\-]?(?:\(0\)[ .\-]?)?\(?\d{1,4}\)?(?:[ .\-]?\d{2,4}){2,4}\b"
        r"|\(\d{3}\) ?\d{3}[ .\-]\d{4}\b|\b\d{3}[.\-]\d{3}[.\-]\d{4}\b",
        "[REDACTED:phone]",
    ),
}
# Order matters: a JWT or card number must not be half-eaten by the phone rule first.
_ORDER = ("jwt", "bearer", "api_key", "email", "iban", "card", "phone")


class Redactor:
    """Applies the configured redaction rules to a column of lines."""

    def __init__(self, config: RedactionConfig) -> None:
        self.enabled = config.enabled
        rules: list[_Rule] = []
        field_rule = _field_rule(config.fields)
        if field_rule is not None:
            rules.append(field_rule)
        rules.extend(_BUILTINS[name] for name in _ORDER if name in config.builtins)
        for pattern in config.patterns:
            replacement = pattern.replacement or f"[REDACTED:{pattern.name}]"
            rules.append(_Rule(pattern.name, pattern.regex, replacement.replace("\\", "\\\\")))
        self._rules = rules
        # One pass over every line finds the few that any rule may touch; the rules then run
        # over those alone. (Each pattern in its own group, so its inline flags stay its own.)
        self._any = "|".join(_scoped(r.pattern) for r in rules)
        try:  # for single texts (stream labels), where compiling for Arrow would dominate
            self._any_python: re.Pattern[str] | None = re.compile(_python_regex(self._any))
        except re.error:
            self._any_python = None
        self._python = {r.name: re.compile(_python_regex(r.pattern)) for r in rules if r.check}

    def redact(self, lines: pa.Array) -> tuple[pa.Array, dict[str, int]]:
        """Return the redacted lines and how many values each rule replaced."""
        counts: dict[str, int] = {}
        if not self.enabled or len(lines) == 0 or not self._rules:
            return lines, counts
        candidates = pc.match_substring_regex(lines, self._any)
        hits = pc.sum(candidates).as_py() or 0
        if not hits:
            return lines, counts
        if hits < len(lines):
            subset, counts = self.redact(pc.filter(lines, candidates))
            if counts:
                lines = pc.replace_with_mask(lines, candidates, subset)
            return lines, counts
        for rule in self._rules:
            mask = pc.match_substring_regex(lines, rule.pattern)
            hits = pc.sum(mask).as_py() or 0
            if not hits:
                continue
            matched = pc.filter(lines, mask)
            if rule.name == "field":
                replaced, count = self._redact_fields(matched)
            elif rule.check is None:
                count = pc.sum(pc.count_substring_regex(matched, rule.pattern)).as_py() or 0
                replaced = pc.replace_substring_regex(matched, rule.pattern, rule.replacement)
            else:
                replaced, count = self._redact_checked(rule, matched)
            if count:
                lines = pc.replace_with_mask(lines, mask, replaced)
                counts[rule.name] = counts.get(rule.name, 0) + count
        for name, count in counts.items():
            REDACTIONS.labels(rule=name).inc(count)
        return lines, counts

    def redact_text(self, text: str) -> str:
        if not self.enabled or (self._any_python is not None and not self._any_python.search(text)):
            return text
        redacted, _ = self.redact(pa.array([text]))
        value: str = redacted[0].as_py()
        return value

    def _redact_fields(self, matched: pa.Array) -> tuple[pa.Array, int]:
        rule = self._rules[0]
        count = pc.sum(pc.count_substring_regex(matched, rule.pattern)).as_py() or 0
        # Two alternatives, one group each: keep the key part, replace the value.
        regex = re.compile(_python_regex(rule.pattern))

        def keep_key(m: re.Match[str]) -> str:
            if m.group(1) is not None:
                return m.group(1) + '"[REDACTED]"'
            return str(m.group(2)) + "[REDACTED]"

        out = [regex.sub(keep_key, line) for line in matched.to_pylist()]
        return pa.array(out, pa.string()), int(count)

    def _redact_checked(self, rule: _Rule, matched: pa.Array) -> tuple[pa.Array, int]:
        regex = self._python[rule.name]
        check = rule.check
        assert check is not None
        count = 0

        def replace(m: re.Match[str]) -> str:
            nonlocal count
            if check(m.group(0)):
                count += 1
                return rule.replacement
            return m.group(0)

        out = [regex.sub(replace, line) for line in matched.to_pylist()]
        return pa.array(out, pa.string()), count


def _scoped(pattern: str) -> str:
    """``pattern`` as a group of an alternation; a leading ``(?i)`` stays local to it."""
    if pattern.startswith("(?i)"):
        return f"(?i:{pattern[4:]})"
    return f"(?:{pattern})"


def _python_regex(pattern: str) -> str:
    # The patterns are written in the common subset of RE2 and Python's re.
    return pattern
