"""Lexer and parser for Go text/template syntax, with Go's error messages.

The tree mirrors text/template/parse: list, text, action, if/range/with, template, and
pipelines made of commands made of operands. Every node keeps its byte offset so execution
errors can say `NAME:LINE:COL` as Go does.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signalroom.templating.gofmt import go_quote


class TemplateParseError(Exception):
    """A syntax error: `template: NAME:LINE: message`."""


# --- tokens ---------------------------------------------------------------------------------------

T_EOF = "EOF"
T_TEXT = "text"
T_LEFT = "{{"
T_RIGHT = "}}"
T_SPACE = "space"
T_IDENT = "identifier"
T_FIELD = "field"
T_VAR = "variable"
T_STRING = "string"
T_RAW = "raw string"
T_CHAR = "character constant"
T_NUMBER = "number"
T_BOOL = "bool"
T_NIL = "nil"
T_DOT = "."
T_PIPE = "|"
T_LPAREN = "("
T_RPAREN = ")"
T_DECLARE = ":="
T_ASSIGN = "="
T_COMMA = ","
T_CHARITEM = "char"
T_KEYWORD = "keyword"
T_COMMENT = "comment"
T_ERROR = "error"

KEYWORDS = {
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "template",
    "with",
}


@dataclass
class Token:
    kind: str
    val: str
    pos: int
    line: int

    def __str__(self) -> str:
        if self.kind == T_EOF:
            return "EOF"
        if self.kind == T_ERROR:
            return self.val
        if self.kind == T_KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return f"{self.val[:10]!r}..."
        return go_quote(self.val)


def _is_space(ch: str) -> bool:
    return ch in " \t\r\n"


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdigit()


def _char_desc(ch: str) -> str:
    code = ord(ch)
    printable = (ch.isprintable() and unicodedata.category(ch) != "Zs") or ch == " "
    return f"U+{code:04X} '{ch}'" if printable else f"U+{code:04X}"


class Lexer:
    """Turns template text into tokens, handling trim markers and comments."""

    def __init__(self, text: str, left: str = "{{", right: str = "}}") -> None:
        self.text = text
        self.left = left
        self.right = right
        self.tokens: list[Token] = []
        self.line = 1
        self.paren_depth = 0

    def _emit(self, kind: str, start: int, end: int, line: int | None = None) -> None:
        self.tokens.append(
            Token(kind, self.text[start:end], start, self.line if line is None else line)
        )

    def _error(self, msg: str, pos: int) -> list[Token]:
        self.tokens.append(Token(T_ERROR, msg, pos, self.line))
        return self.tokens

    def run(self) -> list[Token]:
        text = self.text
        pos = 0
        n = len(text)
        while True:
            idx = text.find(self.left, pos)
            if idx == -1:
                if pos < n:
                    self._emit(T_TEXT, pos, n)
                    self.line += text.count("\n", pos, n)
                self.tokens.append(Token(T_EOF, "", n, self.line))
                return self.tokens
            trim_left = text.startswith("-", idx + len(self.left)) and (
                idx + len(self.left) + 1 < n and _is_space(text[idx + len(self.left) + 1])
            )
            end_text = idx
            if trim_left:
                while end_text > pos and _is_space(text[end_text - 1]):
                    end_text -= 1
            if end_text > pos:
                self._emit(T_TEXT, pos, end_text)
            self.line += text.count("\n", pos, idx)
            pos = idx + len(self.left)
            if trim_left:
                pos += 2
            after = pos
            if text.startswith("/*", after):
                close = text.find("*/", after + 2)
                if close == -1:
                    return self._error("unclosed comment", idx)
                j = close + 2
                trim_right = False
                if text.startswith(" -" + self.right, j) or text.startswith("\t-" + self.right, j):
                    trim_right = True
                    j += 2
                if not text.startswith(self.right, j):
                    return self._error("comment ends before closing delimiter", idx)
                self.line += text.count("\n", after, j)
                pos = j + len(self.right)
                if trim_right:
                    while pos < n and _is_space(text[pos]):
                        if text[pos] == "\n":
                            self.line += 1
                        pos += 1
                continue
            self.tokens.append(Token(T_LEFT, self.left, idx, self.line))
            result = self._lex_action(pos)
            if result is None:
                return self.tokens
            pos = result

    def _at_right(self, pos: int) -> tuple[bool, bool]:
        """(at right delimiter, with trim marker)."""
        text = self.text
        if text.startswith(self.right, pos):
            return True, False
        if pos < len(text) and _is_space(text[pos]) and text.startswith("-" + self.right, pos + 1):
            return True, True
        return False, False

    def _lex_action(self, pos: int) -> int | None:
        text = self.text
        n = len(text)
        while True:
            at_right, trim = self._at_right(pos)
            if at_right:
                if self.paren_depth:
                    self._error("unclosed left paren", pos)
                    return None
                if trim:
                    pos += 1 + 1
                self.tokens.append(Token(T_RIGHT, self.right, pos, self.line))
                pos += len(self.right)
                if trim:
                    while pos < n and _is_space(text[pos]):
                        if text[pos] == "\n":
                            self.line += 1
                        pos += 1
                return pos
            if pos >= n:
                self._error("unclosed action", pos)
                return None
            ch = text[pos]
            if _is_space(ch):
                start = pos
                while pos < n and _is_space(text[pos]) and not self._at_right(pos)[0]:
                    pos += 1
                self._emit(T_SPACE, start, pos)
                self.line += text.count("\n", start, pos)
                continue
            if ch == "=":
                self._emit(T_ASSIGN, pos, pos + 1)
                pos += 1
            elif ch == ":":
                if not text.startswith(":=", pos):
                    self._error("expected :=", pos)
                    return None
                self._emit(T_DECLARE, pos, pos + 2)
                pos += 2
            elif ch == "|":
                self._emit(T_PIPE, pos, pos + 1)
                pos += 1
            elif ch == '"':
                j = pos + 1
                while True:
                    if j >= n or text[j] == "\n":
                        self._error("unterminated quoted string", pos)
                        return None
                    if text[j] == "\\":
                        j += 2
                        continue
                    if text[j] == '"':
                        break
                    j += 1
                self._emit(T_STRING, pos, j + 1)
                pos = j + 1
            elif ch == "`":
                j = text.find("`", pos + 1)
                if j == -1:
                    self._error("unterminated raw quoted string", pos)
                    return None
                self._emit(T_RAW, pos, j + 1)
                self.line += text.count("\n", pos, j)
                pos = j + 1
            elif ch == "'":
                j = pos + 1
                while True:
                    if j >= n or text[j] == "\n":
                        self._error("unterminated character constant", pos)
                        return None
                    if text[j] == "\\":
                        j += 2
                        continue
                    if text[j] == "'":
                        break
                    j += 1
                self._emit(T_CHAR, pos, j + 1)
                pos = j + 1
            elif ch == "$":
                j = pos + 1
                while j < n and _is_alnum(text[j]):
                    j += 1
                self._emit(T_VAR, pos, j)
                pos = j
            elif ch == "." and not (pos + 1 < n and text[pos + 1].isdigit()):
                j = pos + 1
                if j < n and _is_alnum(text[j]):
                    while j < n and _is_alnum(text[j]):
                        j += 1
                    self._emit(T_FIELD, pos, j)
                else:
                    self._emit(T_DOT, pos, j)
                pos = j
            elif ch in "+-" or ch.isdigit() or ch == ".":
                j = pos
                if text[j] in "+-":
                    j += 1
                while j < n and (_is_alnum(text[j]) or text[j] in ".+-"):
                    if text[j] in "+-" and text[j - 1] not in "eEpP":
                        break
                    j += 1
                tok = text[pos:j]
                if (j < n and _is_alnum(text[j])) or _parse_number(tok) is None:
                    self._error(f"bad number syntax: {go_quote(tok)}", pos)
                    return None
                self._emit(T_NUMBER, pos, j)
                pos = j
            elif _is_alnum(ch):
                j = pos
                while j < n and _is_alnum(text[j]):
                    j += 1
                word = text[pos:j]
                if word in KEYWORDS:
                    self._emit(T_KEYWORD, pos, j)
                elif word in ("true", "false"):
                    self._emit(T_BOOL, pos, j)
                elif word == "nil":
                    self._emit(T_NIL, pos, j)
                else:
                    self._emit(T_IDENT, pos, j)
                pos = j
                if pos < n and not (
                    _is_space(text[pos]) or text[pos] in ".,|:)(" or self._at_right(pos)[0]
                ):
                    self._error(f"bad character {_char_desc(text[pos])}", pos)
                    return None
            elif ch == "(":
                self._emit(T_LPAREN, pos, pos + 1)
                self.paren_depth += 1
                pos += 1
            elif ch == ")":
                self._emit(T_RPAREN, pos, pos + 1)
                self.paren_depth -= 1
                if self.paren_depth < 0:
                    self._error("unexpected right paren", pos)
                    return None
                pos += 1
            elif ch == ",":
                self._emit(T_COMMA, pos, pos + 1)
                pos += 1
            elif ord(ch) < 0x80 and ch.isprintable():
                self._emit(T_CHARITEM, pos, pos + 1)
                pos += 1
            else:
                self._error(f"unrecognized character in action: {_char_desc(ch)}", pos)
                return None


def _parse_number(tok: str) -> int | float | None:
    t = tok.replace("_", "")
    try:
        low = t.lower().lstrip("+-")
        sign = -1 if t.startswith("-") else 1
        if low.startswith("0x"):
            if "p" in low:
                return sign * float.fromhex(low)
            return sign * int(low[2:], 16)
        if low.startswith("0b"):
            return sign * int(low[2:], 2)
        if low.startswith("0o"):
            return sign * int(low[2:], 8)
        if low.isdigit():
            if len(low) > 1 and low.startswith("0"):
                return sign * int(low, 8)
            return sign * int(low)
        if low in ("inf", "nan", "infinity"):
            return None
        return float(t)
    except ValueError:
        return None


def unquote(tok: Token) -> str:
    """Go's strconv.Unquote for string, raw string and char tokens."""
    text = tok.val
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    body = text[1:-1]
    out: list[str] = []
    i = 0
    simple = {
        "n": "\n",
        "t": "\t",
        "r": "\r",
        "a": "\a",
        "b": "\b",
        "f": "\f",
        "v": "\v",
        "\\": "\\",
        '"': '"',
        "'": "'",
    }
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt == "U":
            out.append(chr(int(body[i + 2 : i + 10], 16)))
            i += 10
        elif nxt in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


# --- nodes ----------------------------------------------------------------------------------------


@dataclass
class Node:
    pos: int

    def go(self) -> str:
        return ""


@dataclass
class TextNode(Node):
    text: str = ""


@dataclass
class CommentNode(Node):
    pass


@dataclass
class DotNode(Node):
    def go(self) -> str:
        return "."


@dataclass
class NilNode(Node):
    def go(self) -> str:
        return "nil"


@dataclass
class BoolNode(Node):
    value: bool = False

    def go(self) -> str:
        return "true" if self.value else "false"


@dataclass
class NumberNode(Node):
    value: int | float = 0
    text: str = ""
    is_char: bool = False

    def go(self) -> str:
        return self.text


@dataclass
class StringNode(Node):
    value: str = ""
    quoted: str = ""

    def go(self) -> str:
        return self.quoted


@dataclass
class FieldNode(Node):
    idents: list[str] = field(default_factory=list)

    def go(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class VariableNode(Node):
    idents: list[str] = field(default_factory=list)

    def go(self) -> str:
        return ".".join(self.idents)


@dataclass
class IdentifierNode(Node):
    name: str = ""

    def go(self) -> str:
        return self.name


@dataclass
class ChainNode(Node):
    node: Node = field(default_factory=lambda: Node(0))
    fields: list[str] = field(default_factory=list)

    def go(self) -> str:
        inner = self.node.go()
        if isinstance(self.node, PipeNode):
            inner = "(" + inner + ")"
        return inner + "".join("." + f for f in self.fields)


@dataclass
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def go(self) -> str:
        parts = []
        for arg in self.args:
            text = arg.go()
            parts.append("(" + text + ")" if isinstance(arg, PipeNode) else text)
        return " ".join(parts)


@dataclass
class PipeNode(Node):
    decl: list[VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)

    def go(self) -> str:
        text = ""
        if self.decl:
            text = ", ".join(v.go() for v in self.decl) + (" = " if self.is_assign else " := ")
        return text + " | ".join(c.go() for c in self.cmds)


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass
class ActionNode(Node):
    pipe: PipeNode = field(default_factory=lambda: PipeNode(0))

    def go(self) -> str:
        return "{{" + self.pipe.go() + "}}"


@dataclass
class BranchNode(Node):
    kind: str = "if"  # if | range | with
    pipe: PipeNode = field(default_factory=lambda: PipeNode(0))
    body: ListNode = field(default_factory=lambda: ListNode(0))
    else_body: ListNode | None = None

    def go(self) -> str:
        return "{{" + self.kind + " " + self.pipe.go() + "}}"


@dataclass
class BreakNode(Node):
    def go(self) -> str:
        return "{{break}}"


@dataclass
class ContinueNode(Node):
    def go(self) -> str:
        return "{{continue}}"


@dataclass
class TemplateNode(Node):
    name: str = ""
    pipe: PipeNode | None = None

    def go(self) -> str:
        if self.pipe is None:
            return "{{template " + go_quote(self.name) + "}}"
        return "{{template " + go_quote(self.name) + " " + self.pipe.go() + "}}"


@dataclass
class Tree:
    """One named template: its body and the source text positions refer to."""

    name: str
    root: ListNode
    text: str
    parse_name: str

    def location(self, node: Node) -> str:
        pos = node.pos
        head = self.text[:pos]
        last_nl = head.rfind("\n")
        col = pos if last_nl == -1 else pos - (last_nl + 1)
        line = 1 + head.count("\n")
        return f"{self.parse_name}:{line}:{col}"


# --- parser ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(
        self,
        name: str,
        text: str,
        is_function: Callable[[str], bool],
        trees: dict[str, Tree],
        left: str,
        right: str,
    ) -> None:
        self.name = name
        self.parse_name = name
        self.text = text
        self.tokens = Lexer(text, left, right).run()
        self.i = 0
        self.is_function = is_function
        self.trees = trees
        self.vars: list[str] = ["$"]
        self.action_line = 1
        self.range_depth = 0

    # token helpers
    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != T_EOF:
            self.i += 1
        return tok

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next_non_space(self) -> Token:
        while True:
            tok = self.next()
            if tok.kind != T_SPACE:
                return tok

    def peek_non_space(self) -> Token:
        tok = self.next_non_space()
        self.backup()
        return tok

    def error(self, msg: str, line: int | None = None) -> TemplateParseError:
        tok = self.tokens[max(self.i - 1, 0)] if self.i else self.tokens[0]
        ln = tok.line if line is None else line
        return TemplateParseError(f"template: {self.parse_name}:{ln}: {msg}")

    def unexpected(self, tok: Token, context: str) -> TemplateParseError:
        if tok.kind == T_ERROR:
            extra = ""
            if self.action_line != tok.line:
                extra = f" in {context}" if False else ""
            return TemplateParseError(f"template: {self.parse_name}:{tok.line}: {tok.val}{extra}")
        return TemplateParseError(
            f"template: {self.parse_name}:{tok.line}: unexpected {tok} in {context}"
        )

    def expect(self, kind: str, context: str) -> Token:
        tok = self.next_non_space()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    # parsing
    def parse(self) -> ListNode:
        root = ListNode(self.peek().pos)
        while self.peek().kind != T_EOF:
            if self.peek().kind == T_LEFT:
                save = self.i
                self.next()
                tok = self.next_non_space()
                if tok.kind == T_KEYWORD and tok.val == "define":
                    saved_vars, self.vars = self.vars, ["$"]
                    self.parse_definition()
                    self.vars = saved_vars
                    continue
                self.i = save
            node, end_tok = self.text_or_action()
            if end_tok is not None:
                raise self.error(f"unexpected {{{{{end_tok}}}}}")
            if node is not None:
                root.nodes.append(node)
        tok = self.peek()
        if tok.kind == T_ERROR:
            raise self.unexpected(tok, "input")
        return root

    def parse_definition(self) -> None:
        context = "define clause"
        name_tok = self.next_non_space()
        if name_tok.kind not in (T_STRING, T_RAW):
            raise self.unexpected(name_tok, context)
        name = unquote(name_tok)
        self.expect(T_RIGHT, context)
        body, end = self.item_list()
        if end != "end":
            raise self.error(f"unexpected {{{{{end}}}}}")
        self.add_tree(name, body)

    def add_tree(self, name: str, body: ListNode) -> None:
        existing = self.trees.get(name)
        if existing is not None and _non_empty(existing.root) and _non_empty(body):
            raise self.error(f"template: multiple definition of template {go_quote(name)}")
        if existing is None or _non_empty(body):
            self.trees[name] = Tree(name, body, self.text, self.parse_name)

    def item_list(self) -> tuple[ListNode, str]:
        """Items until {{end}} or {{else}}; returns the list and which one ended it."""
        lst = ListNode(self.peek().pos)
        while self.peek_non_space().kind != T_EOF:
            node, end_kind = self.text_or_action()
            if end_kind is not None:
                return lst, end_kind
            if node is not None:
                lst.nodes.append(node)
        tok = self.peek()
        if tok.kind == T_ERROR:
            raise self.unexpected(tok, "input")
        raise self.error("unexpected EOF")

    def text_or_action(self) -> tuple[Node | None, str | None]:
        tok = self.next_non_space()
        if tok.kind == T_TEXT:
            return TextNode(tok.pos, tok.val), None
        if tok.kind == T_LEFT:
            self.action_line = tok.line
            return self.action()
        if tok.kind == T_ERROR:
            raise self.unexpected(tok, "input")
        raise self.unexpected(tok, "input")

    def action(self) -> tuple[Node | None, str | None]:
        tok = self.next_non_space()
        if tok.kind == T_KEYWORD:
            kw = tok.val
            if kw == "end":
                self.expect(T_RIGHT, "end")
                return None, "end"
            if kw == "else":
                # `else if` / `else with` chain: leave the keyword for the caller.
                nxt = self.peek_non_space()
                if nxt.kind == T_KEYWORD and nxt.val in ("if", "with"):
                    return None, "else " + nxt.val
                self.expect(T_RIGHT, "else")
                return None, "else"
            if kw in ("if", "with", "range"):
                return self.branch(kw, tok), None
            if kw == "block":
                return self.block(tok), None
            if kw == "template":
                return self.template_control(tok), None
            if kw == "break":
                if self.range_depth == 0:
                    raise self.error("{{break}} outside {{range}}")
                self.expect(T_RIGHT, "{{break}}")
                return BreakNode(tok.pos), None
            if kw == "continue":
                if self.range_depth == 0:
                    raise self.error("{{continue}} outside {{range}}")
                self.expect(T_RIGHT, "{{continue}}")
                return ContinueNode(tok.pos), None
            if kw == "define":
                raise self.error("unexpected <define> in command")
        self.backup()
        pipe = self.pipeline("command", T_RIGHT)
        return ActionNode(tok.pos, pipe), None

    def branch(self, kind: str, tok: Token) -> BranchNode:
        mark = len(self.vars)
        pipe = self.pipeline(kind, T_RIGHT)
        if kind == "range":
            self.range_depth += 1
        body, end = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: ListNode | None = None
        if end.startswith("else"):
            if end in ("else if", "else with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} with one shared end.
                inner_kind = end.split()[1]
                kw_tok = self.next_non_space()
                inner = self.branch(inner_kind, kw_tok)
                else_body = ListNode(inner.pos, [inner])
                del self.vars[mark:]
                return BranchNode(tok.pos, kind, pipe, body, else_body)
            else_body, end = self.item_list()
            if end != "end":
                raise self.error(f"expected end; found {{{{{end}}}}}")
        del self.vars[mark:]
        return BranchNode(tok.pos, kind, pipe, body, else_body)

    def template_control(self, tok: Token) -> TemplateNode:
        context = "template clause"
        name_tok = self.next_non_space()
        if name_tok.kind not in (T_STRING, T_RAW):
            raise self.unexpected(name_tok, context)
        name = unquote(name_tok)
        pipe: PipeNode | None = None
        if self.peek_non_space().kind != T_RIGHT:
            pipe = self.pipeline(context, T_RIGHT)
        else:
            self.next_non_space()
        return TemplateNode(tok.pos, name, pipe)

    def block(self, tok: Token) -> TemplateNode:
        context = "block clause"
        name_tok = self.next_non_space()
        if name_tok.kind not in (T_STRING, T_RAW):
            raise self.unexpected(name_tok, context)
        name = unquote(name_tok)
        pipe = self.pipeline(context, T_RIGHT)
        saved = self.vars
        self.vars = ["$"]
        body, end = self.item_list()
        self.vars = saved
        if end != "end":
            raise self.error(f"unexpected {{{{{end}}}}}")
        self.add_tree(name, body)
        return TemplateNode(tok.pos, name, pipe)

    def pipeline(self, context: str, end: str) -> PipeNode:
        tok0 = self.peek_non_space()
        pipe = PipeNode(tok0.pos)
        # declarations
        save = self.i
        tok = self.next_non_space()
        if tok.kind == T_VAR:
            nxt = self.next_non_space()
            if nxt.kind in (T_DECLARE, T_ASSIGN):
                pipe.is_assign = nxt.kind == T_ASSIGN
                var = VariableNode(tok.pos, [tok.val])
                if pipe.is_assign:
                    self.use_var(var)
                pipe.decl.append(var)
                if not pipe.is_assign:
                    self.vars.append(tok.val)
            elif nxt.kind == T_COMMA and context == "range":
                tok2 = self.next_non_space()
                decl = self.next_non_space()
                if tok2.kind != T_VAR or decl.kind not in (T_DECLARE, T_ASSIGN):
                    raise self.error("range can only initialize variables")
                pipe.is_assign = decl.kind == T_ASSIGN
                for t in (tok, tok2):
                    var = VariableNode(t.pos, [t.val])
                    pipe.decl.append(var)
                    if not pipe.is_assign:
                        self.vars.append(t.val)
            elif nxt.kind == T_COMMA:
                raise self.error(f"too many declarations in {context}")
            else:
                self.i = save
        else:
            self.i = save
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.kind in (
                T_BOOL,
                T_CHAR,
                T_DOT,
                T_FIELD,
                T_IDENT,
                T_NUMBER,
                T_NIL,
                T_RAW,
                T_STRING,
                T_VAR,
                T_LPAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for cmd in pipe.cmds[1:]:
            first = cmd.args[0]
            if isinstance(first, BoolNode | DotNode | NilNode | NumberNode | StringNode):
                raise self.error(
                    f"non executable command in pipeline stage {pipe.cmds.index(cmd) + 1}"
                )

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == T_SPACE:
                continue
            if tok.kind in (T_RIGHT, T_RPAREN):
                self.backup()
            elif tok.kind == T_PIPE:
                pass
            elif tok.kind == T_ERROR:
                raise self.unexpected(tok, "operand")
            else:
                raise self.error(f"unexpected {tok} in operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == T_FIELD:
            fields: list[str] = []
            while self.peek().kind == T_FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(node.pos, node.idents + fields)
            if isinstance(node, VariableNode):
                return VariableNode(node.pos, node.idents + fields)
            if isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
                raise self.error(f"unexpected . after term {go_quote(node.go())}")
            return ChainNode(node.pos, node, fields)
        return node

    def term(self) -> Node | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind == T_IDENT:
            if not self.is_function(tok.val):
                raise self.error(f"function {go_quote(tok.val)} not defined")
            return IdentifierNode(tok.pos, tok.val)
        if kind == T_DOT:
            return DotNode(tok.pos)
        if kind == T_NIL:
            return NilNode(tok.pos)
        if kind == T_VAR:
            var = VariableNode(tok.pos, [tok.val])
            self.use_var(var)
            return var
        if kind == T_FIELD:
            return FieldNode(tok.pos, [tok.val[1:]])
        if kind == T_BOOL:
            return BoolNode(tok.pos, tok.val == "true")
        if kind == T_CHAR:
            return NumberNode(tok.pos, ord(unquote(tok)), tok.val, True)
        if kind == T_NUMBER:
            value = _parse_number(tok.val)
            if value is None:
                raise self.error(f"illegal number syntax: {go_quote(tok.val)}")
            return NumberNode(tok.pos, value, tok.val)
        if kind == T_LPAREN:
            pipe = self.pipeline("parenthesized pipeline", T_RPAREN)
            return pipe
        if kind in (T_STRING, T_RAW):
            try:
                return StringNode(tok.pos, unquote(tok), tok.val)
            except (ValueError, IndexError):
                raise self.error("invalid syntax") from None
        self.backup()
        return None

    def use_var(self, var: VariableNode) -> None:
        name = var.idents[0]
        if name not in self.vars:
            raise self.error(f"undefined variable {go_quote(name)}")


def _non_empty(lst: ListNode) -> bool:
    for node in lst.nodes:
        if isinstance(node, TextNode):
            if node.text.strip():
                return True
        elif not isinstance(node, CommentNode):
            return True
    return False


def parse(
    name: str,
    text: str,
    funcs: Mapping[str, Any],
    trees: dict[str, Tree] | None = None,
    delims: tuple[str, str] = ("{{", "}}"),
) -> dict[str, Tree]:
    """Parse `text` as template `name`; returns all trees (the main one and its defines)."""
    out = trees if trees is not None else {}
    parser = _Parser(name, text, lambda f: f in funcs, out, delims[0], delims[1])
    root = parser.parse()
    parser.add_tree(name, root)
    return out
