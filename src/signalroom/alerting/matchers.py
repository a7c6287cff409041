"""Alertmanager label matchers: parsing, matching and printing.

Two parsers exist, as in Alertmanager:

- the *classic* parser (``pkg/labels/parse.go``, the only one in Alertmanager 0.25, which
  amtool and the conformance cases use): Prometheus label names, a lenient value that may be
  double-quoted, OpenMetrics escapes (``\\"``, ``\\n``, ``\\\\``) and stray backslashes kept;
- the *UTF-8* parser (``matcher/parse``, Alertmanager 0.27+): any UTF-8 label name or value,
  either double-quoted with Go string escapes or unquoted without reserved characters.

``mode="fallback"`` tries the UTF-8 parser first and falls back to the classic one, which is
what newer Alertmanager versions do by default.

Regular expressions are RE2 (``re2``), fully anchored as ``^(?:value)$`` like Alertmanager.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

import re2

__all__ = [
    "MatchType",
    "Matcher",
    "MatcherError",
    "ParseMode",
    "format_matchers",
    "is_valid_label_name",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
    "sort_matchers",
]

ParseMode = Literal["classic", "utf8", "fallback"]


class MatcherError(ValueError):
    """A matcher could not be parsed or its regular expression does not compile."""


class MatchType(StrEnum):
    """The four matching operators, ordered as Alertmanager orders them when sorting."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEXP = "=~"
    NOT_REGEXP = "!~"

    @property
    def rank(self) -> int:
        return _TYPE_RANK[self]

    def __str__(self) -> str:
        return self.value


_TYPE_RANK = {
    MatchType.EQUAL: 0,
    MatchType.NOT_EQUAL: 1,
    MatchType.REGEXP: 2,
    MatchType.NOT_REGEXP: 3,
}

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are reported to the caller, not printed by RE2


@lru_cache(maxsize=4096)
def _compile_anchored(value: str) -> Any:
    try:
        return re2.compile("^(?:" + value + ")$", _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise MatcherError(f"error parsing regexp: {detail}") from None


@dataclass(frozen=True)
class Matcher:
    """One label matcher such as ``severity=~"critical|warning"``.

    A missing label matches as the empty string, as in Alertmanager.
    """

    type: MatchType
    name: str
    value: str
    _regex: Any = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def create(cls, type: MatchType | str, name: str, value: str) -> Matcher:
        """Build a matcher, compiling (and so validating) a regular expression value."""
        match_type = MatchType(type)
        regex = None
        if match_type in (MatchType.REGEXP, MatchType.NOT_REGEXP):
            regex = _compile_anchored(value)
        return cls(match_type, name, value, regex)

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when the label is absent) satisfies this matcher."""
        t = self.type
        if t is MatchType.EQUAL:
            return value == self.value
        if t is MatchType.NOT_EQUAL:
            return value != self.value
        regex = self._regex if self._regex is not None else _compile_anchored(self.value)
        found = regex.search(value) is not None
        return found if t is MatchType.REGEXP else not found

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        return self.matches(labels.get(self.name, ""))

    @property
    def sort_key(self) -> tuple[str, str, int]:
        """Alertmanager's order: by name, then value, then operator."""
        return (self.name, self.value, self.type.rank)

    @property
    def is_regex(self) -> bool:
        return self.type in (MatchType.REGEXP, MatchType.NOT_REGEXP)

    @property
    def is_equal(self) -> bool:
        """True for ``=`` and ``=~`` (the API v2 ``isEqual`` flag)."""
        return self.type in (MatchType.EQUAL, MatchType.REGEXP)

    def __str__(self) -> str:
        if any(_is_reserved(ch) for ch in self.name):
            return f"{go_quote(self.name)}{self.type.value}{go_quote(self.value)}"
        return f'{self.name}{self.type.value}"{openmetrics_escape(self.value)}"'


def sort_matchers(matchers: Iterable[Matcher]) -> list[Matcher]:
    return sorted(matchers, key=lambda m: m.sort_key)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher is satisfied (an empty list matches everything)."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """``{a="b",c=~"d"}`` as Alertmanager prints a matcher list (no spaces)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def openmetrics_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def is_valid_label_name(name: str) -> bool:
    """Prometheus' classic label name rule ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return _LABEL_NAME_RE.fullmatch(name) is not None


def parse_matchers(text: str, mode: ParseMode = "classic") -> list[Matcher]:
    """Parse a comma-separated matcher list, braces optional: ``{a="b", c=~"d"}``."""
    if mode == "classic":
        return _classic_parse_matchers(text)
    if mode == "utf8":
        return _Utf8Parser(text).parse()
    try:
        return _Utf8Parser(text).parse()
    except MatcherError as utf8_error:
        try:
            return _classic_parse_matchers(text)
        except MatcherError:
            raise utf8_error from None


def parse_matcher(text: str, mode: ParseMode = "classic") -> Matcher:
    """Parse exactly one matcher such as ``foo="bar"``."""
    if mode == "classic":
        return _classic_parse_matcher(text)
    if mode == "utf8":
        return _utf8_single(text)
    try:
        return _utf8_single(text)
    except MatcherError as utf8_error:
        try:
            return _classic_parse_matcher(text)
        except MatcherError:
            raise utf8_error from None


# --- classic parser (Alertmanager 0.25 pkg/labels/parse.go) ------------------------------

# Go's \s is [\t\n\f\r ]; spelled out so Python's Unicode \s does not widen it.
_CLASSIC_RE = re.compile(
    r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)"
    r"[\t\n\f\r ]*(.*?)[\t\n\f\r ]*$",
    re.DOTALL,
)


def _classic_parse_matchers(text: str) -> list[Matcher]:
    if text.startswith("{"):
        text = text[1:]
    if text.endswith("}"):
        text = text[:-1]
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = False
    escaped = False
    for ch in text:
        if ch == ",":
            if not inside_quotes:
                tokens.append("".join(token))
                token = []
                continue
            # a comma inside quotes leaves the escape state untouched, as upstream does
        elif ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip(" \t\n\r\f\v")
    if last:
        tokens.append(last)
    return [_classic_parse_matcher(t) for t in tokens]


def _classic_parse_matcher(text: str) -> Matcher:
    m = _CLASSIC_RE.match(text)
    if m is None:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    original = raw
    expect_trailing_quote = False
    if raw.startswith('"'):
        raw = raw[1:]
        expect_trailing_quote = True
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in ('"', "\\"):
                out.append(ch)
            else:  # a spurious escape keeps its backslash
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not expect_trailing_quote or i < last:
                raise MatcherError(f"matcher value contains unescaped double quote: {original}")
            expect_trailing_quote = False
        else:
            out.append(ch)
    if expect_trailing_quote:
        raise MatcherError(f"matcher value contains unescaped double quote: {original}")
    return Matcher.create(MatchType(op), name, "".join(out))


# --- UTF-8 parser (Alertmanager 0.27+ matcher/parse) -------------------------------------

_RESERVED = frozenset("{}!=~,\\\"'`")


def _is_reserved(ch: str) -> bool:
    return ch.isspace() or ch in _RESERVED


_OPEN, _CLOSE, _COMMA, _EQ, _NEQ, _RE, _NRE, _QUOTED, _UNQUOTED, _EOF = range(10)
_OPERATORS = {
    _EQ: MatchType.EQUAL,
    _NEQ: MatchType.NOT_EQUAL,
    _RE: MatchType.REGEXP,
    _NRE: MatchType.NOT_REGEXP,
}


@dataclass(frozen=True)
class _Token:
    kind: int
    value: str
    start: int  # columns, counted in characters like upstream
    end: int


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._peeked: _Token | None = None

    def column(self) -> int:
        return self.pos if self._peeked is None else self._peeked.start

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def scan(self) -> _Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def _scan(self) -> _Token:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos].isspace():
            self.pos += 1
        start = self.pos
        if start >= n:
            return _Token(_EOF, "", start, start)
        ch = text[start]
        simple = {"{": _OPEN, "}": _CLOSE, ",": _COMMA}
        if ch in simple:
            self.pos += 1
            return _Token(simple[ch], ch, start, self.pos)
        if ch == "=":
            if start + 1 < n and text[start + 1] == "~":
                self.pos += 2
                return _Token(_RE, "=~", start, self.pos)
            self.pos += 1
            return _Token(_EQ, "=", start, self.pos)
        if ch == "!":
            if start + 1 >= n:
                raise MatcherError(
                    f"{start}:{start + 1}: unexpected end of input, expected one of '=~'"
                )
            nxt = text[start + 1]
            if nxt in "=~":
                self.pos += 2
                return _Token(_NEQ if nxt == "=" else _NRE, "!" + nxt, start, self.pos)
            raise MatcherError(f"{start}:{start + 1}: {nxt}: expected one of '=~'")
        if ch == '"':
            i = start + 1
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    self.pos = i + 1
                    return _Token(_QUOTED, text[start : self.pos], start, self.pos)
                i += 1
            raise MatcherError(f'{start}:{n}: {text[start:]}: missing end "')
        if _is_reserved(ch):
            raise MatcherError(f"{start}:{start + 1}: {ch}: invalid input")
        i = start
        while i < n and not _is_reserved(text[i]):
            i += 1
        self.pos = i
        return _Token(_UNQUOTED, text[start:i], start, i)


class _Utf8Parser:
    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.matchers: list[Matcher] = []
        self.has_open_brace = False

    def parse(self) -> list[Matcher]:
        lx = self.lexer
        first = lx.peek()
        if first.kind == _EOF:
            self._expect_eof()
            return self.matchers
        if first.kind == _OPEN:
            lx.scan()
            self.has_open_brace = True
        if self._peek_context("expected label name").kind in (_EOF, _CLOSE):
            self._close_brace()
            return self.matchers
        while True:
            self._matcher()
            tok = self._peek_context("expected a comma or close brace")
            if tok.kind == _EOF:
                break
            if tok.kind == _CLOSE:
                break
            if tok.kind != _COMMA:
                raise MatcherError(
                    f"{tok.start}:{tok.end}: unexpected {tok.value}: "
                    "expected a comma or close brace"
                )
            lx.scan()
            tok = self._peek_context("expected a matcher or close brace after comma")
            if tok.kind in (_EOF, _CLOSE):
                break
            if tok.kind not in (_QUOTED, _UNQUOTED):
                raise MatcherError(
                    f"{tok.start}:{tok.end}: unexpected {tok.value}: "
                    "expected a matcher or close brace after comma"
                )
        self._close_brace()
        return self.matchers

    def _peek_context(self, context: str) -> _Token:
        try:
            return self.lexer.peek()
        except MatcherError as exc:
            raise MatcherError(f"{exc}: {context}") from None

    def _expect(self, kinds: tuple[int, ...], context: str) -> _Token:
        tok = self._peek_context(context)
        if tok.kind == _EOF:
            raise MatcherError(f"end of input: {context}")
        if tok.kind not in kinds:
            raise MatcherError(f"{tok.start}:{tok.end}: unexpected {tok.value}: {context}")
        return self.lexer.scan()

    def _matcher(self) -> None:
        name_tok = self._expect((_QUOTED, _UNQUOTED), "expected label name")
        name = _unquote_token(name_tok)
        op_tok = self._expect(
            (_EQ, _NEQ, _RE, _NRE), "expected an operator such as '=', '!=', '=~' or '!~'"
        )
        value_tok = self._expect((_QUOTED, _UNQUOTED), "expected label value")
        value = _unquote_token(value_tok)
        try:
            self.matchers.append(Matcher.create(_OPERATORS[op_tok.kind], name, value))
        except MatcherError as exc:
            raise MatcherError(f"failed to create matcher: {exc}") from None

    def _close_brace(self) -> None:
        lx = self.lexer
        tok = lx.peek()
        if self.has_open_brace:
            if tok.kind != _CLOSE:
                col = lx.pos
                if tok.kind == _EOF:
                    raise MatcherError(f"0:{col}: end of input: expected close brace")
                raise MatcherError(
                    f"0:{col}: {tok.start}:{tok.end}: unexpected {tok.value}: expected close brace"
                )
            lx.scan()
        elif tok.kind == _CLOSE:
            lx.scan()
            raise MatcherError(f"0:{lx.pos}: }}: expected opening brace")
        self._expect_eof()

    def _expect_eof(self) -> None:
        try:
            tok = self.lexer.scan()
        except MatcherError as exc:
            raise MatcherError(f"{exc}: expected end of input") from None
        if tok.kind != _EOF:
            raise MatcherError(f"{tok.start}:{tok.end}: {tok.value}: expected end of input")


def _utf8_single(text: str) -> Matcher:
    found = _Utf8Parser(text).parse()
    if len(found) == 1:
        return found[0]
    if not found:
        raise MatcherError("no matchers")
    raise MatcherError(f"expected 1 matcher, found {len(found)}")


def _unquote_token(tok: _Token) -> str:
    if tok.kind != _QUOTED:
        return tok.value
    try:
        return go_unquote(tok.value)
    except ValueError:
        raise MatcherError(f"{tok.start}:{tok.end}: {tok.value}: invalid input") from None


_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
}


def go_unquote(quoted: str) -> str:
    """Go's ``strconv.Unquote`` for a double-quoted string; the result must be valid UTF-8."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError("invalid syntax")
    body = quoted[1:-1]
    if "\n" in body:
        raise ValueError("invalid syntax")
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            raise ValueError("invalid syntax")
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("invalid syntax")
        esc = body[i + 1]
        i += 2
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc]
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i : i + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("invalid syntax")
            i += width
            code = int(digits, 16)
            if esc == "x":
                out.append(code)
            else:
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise ValueError("invalid syntax")
                out += chr(code).encode("utf-8")
        elif esc in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise ValueError("invalid syntax")
            code = int(digits, 8)
            if code > 255:
                raise ValueError("invalid syntax")
            out.append(code)
            i += 2
        else:
            raise ValueError("invalid syntax")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("quoted string contains invalid UTF-8 code points") from None


def go_quote(value: str) -> str:
    """Go's ``strconv.Quote``: printable characters kept, others escaped."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # the common case: nothing to escape
    parts = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            parts.append('\\"')
        elif ch == "\\":
            parts.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            parts.append(
                {
                    "\a": "\\a",
                    "\b": "\\b",
                    "\f": "\\f",
                    "\n": "\\n",
                    "\r": "\\r",
                    "\t": "\\t",
                    "\v": "\\v",
                }[ch]
            )
        elif ch == " " or (code > 0x20 and _is_printable(ch)):
            parts.append(ch)
        elif code < 0x80:
            parts.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


def _is_printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return unicodedata.category(ch)[0] in "LMNPS"
