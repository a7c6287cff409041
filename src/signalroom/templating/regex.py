"""Go regexp (RE2) for templates: matching and ReplaceAllString's `$1` / `${name}` expansion."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2

from signalroom.templating.values import FuncError

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

_RE2_TO_GO = {
    "missing ):": "missing closing )",
    "unexpected ):": "unexpected )",
    "missing ]:": "missing closing ]",
    "no argument for repetition operator:": "missing argument to repetition operator",
    "bad repetition operator:": "invalid nested repetition operator",
    "invalid escape sequence:": "invalid escape sequence",
    "invalid character class range:": "invalid character class range",
}


def _go_backquote(text: str) -> str:
    if "`" not in text and all(ch == "\t" or ch.isprintable() for ch in text):
        return "`" + text + "`"
    from signalroom.templating.gofmt import go_quote

    return go_quote(text)


class GoRegexp:
    """A compiled Go regular expression."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            self._re: Any = re2.compile(pattern, options=_OPTIONS)
        except re2.error as exc:
            raw = exc.args[0] if exc.args else b""
            msg = raw.decode() if isinstance(raw, bytes) else str(raw)
            head, _, arg = msg.partition(": ")
            go_msg = _RE2_TO_GO.get(head + ":", head)
            raise FuncError(
                f"regexp: Compile({_go_backquote(pattern)}): error parsing regexp: "
                f"{go_msg}: {_go_backquote(arg)}"
            ) from None

    def search(self, text: str) -> Any:
        return self._re.search(text)

    def replace_all(self, text: str, template: str) -> str:
        groupindex: dict[str, int] = dict(self._re.groupindex)
        ngroups = int(self._re.groups)

        def expand(m: Any) -> str:
            return _expand(template, m, groupindex, ngroups)

        return str(self._re.sub(expand, text))


_NAME = re.compile(r"[A-Za-z0-9_]+")


def _expand(template: str, m: Any, groupindex: dict[str, int], ngroups: int) -> str:
    out: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        name = ""
        end = i + 1
        if i + 1 < n and template[i + 1] == "{":
            close = template.find("}", i + 2)
            if close != -1 and _NAME.fullmatch(template[i + 2 : close] or "-"):
                name = template[i + 2 : close]
                end = close + 1
        else:
            nm = _NAME.match(template, i + 1)
            if nm:
                name = nm.group(0)
                end = nm.end()
        if not name:
            # Go copies a malformed `$` through unchanged.
            out.append("$")
            i += 1
            continue
        group: int | None = None
        if name.isdigit():
            num = int(name)
            if num <= ngroups:
                group = num
        elif name in groupindex:
            group = groupindex[name]
        if group is not None:
            value = m.group(group)
            if value:
                out.append(value)
        i = end
    return "".join(out)


@lru_cache(maxsize=256)
def go_regexp(pattern: str) -> GoRegexp:
    return GoRegexp(pattern)
