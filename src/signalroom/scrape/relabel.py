"""Prometheus relabeling: ``relabel_configs`` and ``metric_relabel_configs``.

Behaves as Prometheus's model/relabel: regexes are RE2, fully anchored; ``$1``, ``${1}`` and
``$name`` in ``replacement`` and ``target_label`` expand as Go's ``regexp.Expand``; ``hashmod``
takes the last 8 bytes of the MD5 of the joined values. Validation messages are Prometheus's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import re2

from signalroom.model.labels import Labels

Action = Literal[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
]
ACTIONS: tuple[str, ...] = get_args(Action)

DEFAULT_SEPARATOR = ";"
DEFAULT_REGEX = "(.*)"
DEFAULT_REPLACEMENT = "$1"

# A target_label or labelmap replacement that uses $-references must still make a label name.
_RELABEL_TARGET = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$", re.ASCII)
_WORD = re.compile(r"\w+")  # Go's extract: letters, digits and '_' (Unicode, like unicode.IsLetter)


class RelabelError(ValueError):
    """A relabel config is invalid; the message is Prometheus's."""


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` anchored at both ends, as Prometheus's ``relabel.NewRegexp``."""
    try:
        # (?s: makes '.' match newlines, as Prometheus 3 does.
        return re2.compile(f"^(?s:{pattern})$")
    except Exception as exc:  # re2 raises its own error type
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise RelabelError(f"error parsing regexp: {detail}") from None


def is_valid_label_name(name: str) -> bool:
    """Label names are valid when non-empty (Prometheus 3 accepts UTF-8 names)."""
    return name != ""


def expand(template: str, source: str, match: Any, regex: Any) -> str:
    """Go's ``regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``.

    A name is the longest run of letters, digits and ``_`` (so ``$1x`` means ``${1x}``); a
    reference to a missing or unmatched group expands to nothing; a malformed ``$`` stays.
    """
    if "$" not in template:
        return template
    out: list[str] = []
    rest = template
    while True:
        before, dollar, after = rest.partition("$")
        out.append(before)
        if not dollar:
            break
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        brace = rest.startswith("{")
        body = rest[1:] if brace else rest
        word = _WORD.match(body)
        if word is None or (brace and not body[word.end() :].startswith("}")):
            out.append("$")  # malformed: the '$' is literal text
            continue
        name = word.group(0)
        rest = body[word.end() + (1 if brace else 0) :]
        if name.isascii() and name.isdigit():
            group = -1 if (name[0] == "0" and len(name) > 1) or len(name) > 8 else int(name)
        else:
            group = -1
        if group < 0:
            group = regex.groupindex.get(name, -1)
        if 0 <= group <= regex.groups:
            start, end = match.span(group)
            if start >= 0:
                out.append(source[start:end])
    return "".join(out)


@dataclass(frozen=True)
class RelabelConfig:
    """One relabel step, validated on construction."""

    source_labels: tuple[str, ...] = ()
    separator: str = DEFAULT_SEPARATOR
    regex: str = DEFAULT_REGEX
    modulus: int = 0
    target_label: str = ""
    replacement: str = DEFAULT_REPLACEMENT
    action: str = "replace"
    source_labels_set: bool = False
    _compiled: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        action = self.action.lower()
        if action != self.action:
            object.__setattr__(self, "action", action)
        object.__setattr__(self, "_compiled", compile_regex(self.regex))
        self.validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RelabelConfig:
        """Build from the YAML mapping of one relabel config, with Prometheus's defaults."""
        known = {
            "source_labels",
            "separator",
            "regex",
            "modulus",
            "target_label",
            "replacement",
            "action",
        }
        for key in data:
            if key not in known:
                raise RelabelError(f"field {key} not found in type relabel.plain")
        action = data.get("action", "replace")
        if not isinstance(action, str):
            raise RelabelError(f"unknown relabel action {action!r}")
        if action.lower() not in ACTIONS:
            raise RelabelError(f'unknown relabel action "{action}"')
        sources = data.get("source_labels")
        if sources is not None and not (
            isinstance(sources, list) and all(isinstance(s, str) for s in sources)
        ):
            raise RelabelError("source_labels must be a list of label names")
        regex = data.get("regex", DEFAULT_REGEX)
        if regex is None:
            regex = ""
        modulus = data.get("modulus", 0)
        if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 0:
            raise RelabelError(f"modulus must be a non-negative integer, got {modulus!r}")
        return cls(
            source_labels=tuple(sources or ()),
            separator=_string(data, "separator", DEFAULT_SEPARATOR),
            regex=str(regex),
            modulus=modulus,
            target_label=_string(data, "target_label", ""),
            replacement=_string(data, "replacement", DEFAULT_REPLACEMENT),
            action=action,
            source_labels_set=sources is not None,
        )

    def validate(self) -> None:
        """Raise ``RelabelError`` with Prometheus's message when the config is inconsistent."""
        a, target = self.action, self.target_label
        if a not in ACTIONS:
            raise RelabelError(f'unknown relabel action "{a}"')
        if a == "hashmod" and self.modulus == 0:
            raise RelabelError("relabel configuration for hashmod requires non-zero modulus")
        needs_target = ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")
        if a in needs_target and target == "":
            raise RelabelError(
                f"relabel configuration for {a} action requires 'target_label' value"
            )
        if a == "replace" and (
            ("$" not in target and not is_valid_label_name(target))
            or ("$" in target and not _RELABEL_TARGET.match(target))
        ):
            raise RelabelError(f"{_go_quote(target)} is invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal", "hashmod") and (
            not is_valid_label_name(target) or "$" in target
        ):
            raise RelabelError(f"{_go_quote(target)} is invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal") and (
            self.replacement != DEFAULT_REPLACEMENT
        ):
            raise RelabelError(f"'replacement' can not be set for {a} action")
        if a == "labelmap" and not _RELABEL_TARGET.match(self.replacement):
            raise RelabelError(
                f"{_go_quote(self.replacement)} is invalid 'replacement' for {a} action"
            )
        if a in ("keepequal", "dropequal") and (
            self.regex != DEFAULT_REGEX
            or self.modulus != 0
            or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise RelabelError(
                f"{a} action requires only 'source_labels' and `target_label`, and no other fields"
            )
        if a in ("labeldrop", "labelkeep") and (
            self.source_labels_set
            or self.source_labels
            or target != ""
            or self.modulus != 0
            or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise RelabelError(f"{a} action requires only 'regex', and no other fields")

    # --- applying -------------------------------------------------------------------

    def apply(self, labels: dict[str, str]) -> bool:
        """Apply this step to ``labels`` in place; False means the set is dropped."""
        a = self.action
        val = self.separator.join(labels.get(name, "") for name in self.source_labels)
        regex = self._compiled
        if a == "drop":
            return regex.match(val) is None
        if a == "keep":
            return regex.match(val) is not None
        if a == "dropequal":
            return labels.get(self.target_label, "") != val
        if a == "keepequal":
            return labels.get(self.target_label, "") == val
        if a == "replace":
            if (
                val == ""
                and self.regex == DEFAULT_REGEX
                and "$" not in self.target_label
                and "$" not in self.replacement
            ):
                _set(labels, self.target_label, self.replacement)
                return True
            m = regex.match(val)
            if m is None:
                return True
            target = expand(self.target_label, val, m, regex)
            if not is_valid_label_name(target):
                return True
            _set(labels, target, expand(self.replacement, val, m, regex))
        elif a == "lowercase":
            _set(labels, self.target_label, val.lower())
        elif a == "uppercase":
            _set(labels, self.target_label, val.upper())
        elif a == "hashmod":
            digest = hashlib.md5(val.encode(), usedforsecurity=False).digest()
            _set(labels, self.target_label, str(int.from_bytes(digest[8:], "big") % self.modulus))
        elif a == "labelmap":
            for name, value in list(labels.items()):
                m = regex.match(name)
                if m is not None:
                    _set(labels, expand(self.replacement, name, m, regex), value)
        elif a == "labeldrop":
            for name in [n for n in labels if regex.match(n) is not None]:
                del labels[name]
        elif a == "labelkeep":
            for name in [n for n in labels if regex.match(n) is None]:
                del labels[name]
        return True


def _set(labels: dict[str, str], name: str, value: str) -> None:
    # An empty value deletes the label, as labels.Builder.Set does.
    if value == "":
        labels.pop(name, None)
    else:
        labels[name] = value


def _string(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RelabelError(f"{key} must be a string")
    return str(value)


def _go_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def process_dict(labels: dict[str, str], configs: Sequence[RelabelConfig]) -> bool:
    """Apply ``configs`` in order to ``labels`` in place; False when the set is dropped."""
    return all(cfg.apply(labels) for cfg in configs)


def process(labels: Labels, configs: Sequence[RelabelConfig]) -> Labels | None:
    """Relabel ``labels``; ``None`` when a step drops the set (Prometheus's relabel.Process)."""
    if not configs:
        return labels
    work = labels.to_dict()
    if not process_dict(work, configs):
        return None
    return Labels(work)
