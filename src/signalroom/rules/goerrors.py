"""Parse errors worded as Prometheus 2.42 words them, for `rules check` and rule loading.

signalroom's PromQL parser and YAML parser are not Prometheus's, so their messages differ from
`promtool check rules`: the PromQL parser gives no positions and quotes names its own way, and
PyYAML words syntax errors unlike go-yaml (both are ports of libyaml). These functions rewrite
the messages they recognise to Prometheus's text; anything else passes through unchanged.
"""

from __future__ import annotations

import re

import yaml

from signalroom.promql import ast
from signalroom.promql.engine import static_type

# --- PromQL ---------------------------------------------------------------------------------

#: Value type names as the Go parser prints them.
_TYPE_NAMES = {
    "matrix": "range vector",
    "vector": "instant vector",
    "scalar": "scalar",
    "string": "string",
}

#: Messages of the lexer: their position is where the Go lexer stood (see `_lex_error`).
_LEXER_ERRORS = (
    "unclosed left parenthesis",
    "unexpected right parenthesis",
    "unterminated quoted string",
    "unexpected end of input inside braces",
    "unexpected character inside braces",
    "unclosed left bracket",
    "unexpected right bracket",
)

_ARG_TYPE = re.compile(r"expected type (\w+) in call to function '([^']*)', got (\w+)")
_ARG_COUNT = re.compile(r"expected (\d+) argument\(s\) in call to '([^']*)', got (\d+)")
_UNKNOWN_FUNCTION = re.compile(r"unknown function with name '([^']*)'")
_SET_OPERATOR = re.compile(r"set operator '(\w+)' not allowed in binary scalar expression")
_NO_MATCHER = "vector selector must contain at least one non-empty matcher"
_SCALAR_COMPARISON = "comparisons between scalars must use BOOL modifier"
_AGGREGATE_ARITY = "wrong number of arguments for aggregate expression provided"
_PARAM_AGGREGATES = {"topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio"}
_AGGREGATE = re.compile(
    r"(?<![\w:])(sum|avg|count|min|max|group|stddev|stdvar|topk|bottomk|count_values|quantile"
    r"|limitk|limit_ratio)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\("
)


def go_promql_error(expr: str, message: str) -> str:
    """`message` (our parser's, with or without "parse error: ") as Prometheus's ParseErr."""
    text = message.removeprefix("parse error: ")
    if text.startswith(_LEXER_ERRORS):
        found = _lex_error(expr)
        if found is not None:
            pos, go_text = found
            return _at(expr, pos, go_text)
    if m := _ARG_TYPE.fullmatch(text):
        want, name, got = m.groups()
        go_text = (
            f"expected type {_TYPE_NAMES.get(want, want)} in call to function "
            f'"{name}", got {_TYPE_NAMES.get(got, got)}'
        )
        call = _find_call(expr, name)
        if call is not None:
            args = _call_args(expr, call[1])
            for start, arg in args:
                if _type_of(arg) == got:
                    return _at(expr, start, go_text)
        return f"parse error: {go_text}"
    if m := _ARG_COUNT.fullmatch(text):
        want, name, got = m.groups()
        go_text = f'expected {want} argument(s) in call to "{name}", got {got}'
        call = _find_call(expr, name)
        return _at(expr, call[0], go_text) if call else f"parse error: {go_text}"
    if m := _UNKNOWN_FUNCTION.fullmatch(text):
        name = m.group(1)
        go_text = f'unknown function with name "{name}"'
        call = _find_call(expr, name)
        return _at(expr, call[0], go_text) if call else f"parse error: {go_text}"
    if m := _SET_OPERATOR.fullmatch(text):
        go_text = f'set operator "{m.group(1)}" not allowed in binary scalar expression'
        return _at(expr, _first_token(expr), go_text)
    if text.startswith("unexpected end of input"):
        return _at(expr, len(expr.encode()), text)
    if text == _SCALAR_COMPARISON:
        op = re.search(r"==|!=|>=|<=|>|<", _outside_strings(expr))
        if op is not None:
            return _at(expr, _byte_offset(expr, op.start()), text)
    if text.startswith(_AGGREGATE_ARITY):
        aggregate_at = _bad_aggregate(expr)
        if aggregate_at is not None:
            return _at(expr, aggregate_at, text)
    if text == _NO_MATCHER:
        brace = _outside_strings(expr).find("{")
        if brace >= 0:
            return _at(expr, _selector_start(expr, brace), text)
    return message


def _at(expr: str, pos: int, text: str) -> str:
    """ParseErr.Error(): line and byte column of byte offset `pos`."""
    data = expr.encode()[:pos]
    line = data.count(b"\n") + 1
    col = pos - data.rfind(b"\n")
    return f"{line}:{col}: parse error: {text}"


def _byte_offset(expr: str, index: int) -> int:
    return len(expr[:index].encode())


def _outside_strings(expr: str) -> str:
    """The expression with string literals and comments blanked (same length)."""
    out = list(expr)
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c == "#":
            while i < n and expr[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            for k in range(i, min(j + 1, n)):
                out[k] = " "
            i = j + 1
            continue
        i += 1
    return "".join(out)


def _lex_error(expr: str) -> tuple[int, str] | None:
    """The first error Prometheus's lexer reports: (byte offset, text), or None."""
    depth = 0
    bracket = False
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c == "#":
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if c in "\"'`":
            end = _string_end(expr, i)
            if end is None:
                return _byte_offset(expr, i), "unterminated quoted string"
            i = end
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return _byte_offset(expr, i + 1), "unexpected right parenthesis ')'"
        elif c == "[":
            bracket = True
        elif c == "]":
            if not bracket:
                return _byte_offset(expr, i + 1), "unexpected right bracket ']'"
            bracket = False
        elif c == "{":
            found = _lex_braces(expr, i + 1)
            if isinstance(found, tuple):
                return found
            i = found
            continue
        i += 1
    if depth > 0:
        return len(expr.encode()), "unclosed left parenthesis"
    if bracket:
        return len(expr.encode()), "unclosed left bracket"
    return None


def _string_end(expr: str, start: int) -> int | None:
    """Index after the string literal opening at `start`, or None if it never closes."""
    quote = expr[start]
    j = start + 1
    while j < len(expr):
        c = expr[j]
        if c == quote:
            return j + 1
        if quote != "`" and (c == "\n"):
            return None
        j += 2 if c == "\\" and quote != "`" else 1
    return None


def _lex_braces(expr: str, i: int) -> int | tuple[int, str]:
    """lexInsideBraces from after `{`: the index after `}`, or an error."""
    n = len(expr)
    token_start = i
    while i < n:
        c = expr[i]
        if c == "}":
            return i + 1
        if c.isspace() or c == ",":
            i += 1
            token_start = i
            continue
        if c.isalnum() or c in "_:.":
            while i < n and (expr[i].isalnum() or expr[i] in "_:."):
                i += 1
            token_start = i
            continue
        if c in "\"'`":
            end = _string_end(expr, i)
            if end is None:
                return _byte_offset(expr, i), "unterminated quoted string"
            i = token_start = end
            continue
        if c == "=":
            i += 2 if expr[i + 1 : i + 2] == "~" else 1
            token_start = i
            continue
        if c == "!" and expr[i + 1 : i + 2] in ("=", "~"):
            i += 2
            token_start = i
            continue
        return _byte_offset(expr, token_start), f"unexpected character inside braces: {c!r}"
    return len(expr.encode()), "unexpected end of input inside braces"


def _find_call(expr: str, name: str) -> tuple[int, int] | None:
    """(byte offset of `name`, index after its `(`) of the first call of `name`."""
    masked = _outside_strings(expr)
    for m in re.finditer(rf"(?<![\w:]){re.escape(name)}\s*\(", masked):
        return _byte_offset(expr, m.start()), m.end()
    return None


def _call_args(expr: str, open_at: int) -> list[tuple[int, str]]:
    """Top-level arguments of the call whose `(` ends at `open_at`: (byte offset, text)."""
    masked = _outside_strings(expr)
    args: list[tuple[int, str]] = []
    depth = 0
    start = open_at
    for i in range(open_at, len(expr)):
        c = masked[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append((start, expr[start:i]))
                break
            depth -= 1
        elif c == "," and depth == 0:
            args.append((start, expr[start:i]))
            start = i + 1
    out = []
    for start, text in args:
        stripped = text.lstrip()
        out.append((_byte_offset(expr, start + len(text) - len(stripped)), stripped))
    return out


def _type_of(text: str) -> str | None:
    try:
        return static_type(ast.parse(text))
    except Exception:  # an argument that does not parse alone has no type
        return None


def _bad_aggregate(expr: str) -> int | None:
    """Byte offset of the first aggregation with the wrong number of arguments."""
    for m in _AGGREGATE.finditer(_outside_strings(expr)):
        wanted = 2 if m.group(1) in _PARAM_AGGREGATES else 1
        if len(_call_args(expr, m.end())) != wanted:
            return _byte_offset(expr, m.start())
    return None


def _first_token(expr: str) -> int:
    stripped = expr.lstrip()
    return _byte_offset(expr, len(expr) - len(stripped))


def _selector_start(expr: str, brace: int) -> int:
    """A selector starts at its metric name, if one stands right before the `{`."""
    i = brace
    while i > 0 and (expr[i - 1].isalnum() or expr[i - 1] in "_:"):
        i -= 1
    return _byte_offset(expr, i)


# --- YAML -----------------------------------------------------------------------------------

#: PyYAML's wording -> libyaml's (which go-yaml keeps), by the start of PyYAML's problem.
_YAML_PROBLEMS = (
    ("expected '<document start>'", "did not find expected <document start>"),
    ("expected the node content", "did not find expected node content"),
    ("expected ',' or ']'", "did not find expected ',' or ']'"),
    ("expected ',' or '}'", "did not find expected ',' or '}'"),
    ("found character '\\t' that cannot start any token",
     "found character that cannot start any token"),
    ("found character", "found character that cannot start any token"),
    ("mapping values are not allowed here", "mapping values are not allowed in this context"),
    ("expected alphabetic or numeric character",
     "did not find expected alphabetic or numeric character"),
    ("found unknown escape character", "found unknown escape character"),
    ("expected <block end>", ""),  # depends on the context: see below
)  # fmt: skip
_UNDEFINED_ALIAS = re.compile(r"found undefined alias '?([^']*)'?")


def go_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """A PyYAML syntax error as go-yaml (yaml.v3) reports it: `yaml: line N: problem`.

    go-yaml prints the 0-based line of the context mark when there is one, else of the problem
    mark, adding one only for scanner errors (yaml.v3's parser.fail does exactly this)."""
    problem = exc.problem or ""
    context = exc.context or ""
    if m := _UNDEFINED_ALIAS.fullmatch(problem):
        return f"yaml: unknown anchor '{m.group(1)}' referenced"
    for ours, theirs in _YAML_PROBLEMS:
        if problem.startswith(ours):
            problem = theirs
            break
    if not problem:
        if context.startswith("while parsing a block mapping"):
            problem = "did not find expected key"
        elif context.startswith("while parsing a block collection"):
            problem = "did not find expected '-' indicator"
        else:
            problem = exc.problem or ""
    scanner = isinstance(exc, yaml.scanner.ScannerError)
    line = 0
    for mark in (exc.context_mark, exc.problem_mark):
        if mark is not None and mark.line != 0:
            line = mark.line + (1 if scanner else 0)
            break
    where = f"line {line}: " if line else ""
    return f"yaml: {where}{problem}"
