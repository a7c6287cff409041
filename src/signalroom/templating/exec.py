"""Executing parsed templates with Go text/template semantics.

Go values map to Python as `gofmt` describes; `MISSING` is Go's invalid reflect.Value (what a
missing field or nil interface prints as `<no value>`). Errors carry Go's message and the
position of the node being evaluated, exactly as text/template tracks it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from signalroom.templating import parse as p
from signalroom.templating.builtins import BUILTINS, html_escape
from signalroom.templating.gofmt import format_value, go_type_name
from signalroom.templating.values import (
    MISSING,
    FuncError,
    GoStruct,
    SafeHTML,
    StringMap,
    truth,
)


class TemplateExecError(Exception):
    """An execution error, already formatted as Go formats it."""


FuncMap = Mapping[str, Callable[..., Any]]

_BREAK = object()
_CONTINUE = object()
MAX_EXEC_DEPTH = 100_000


class _Control(Exception):
    def __init__(self, kind: object) -> None:
        self.kind = kind


_KIND_NAMES = {str: "string", bool: "bool", int: "int", float: "float64"}


@lru_cache(maxsize=512)
def _signature(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """Parameter Go types (as names, '' = any) and whether the function is variadic."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], True
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    kinds: list[str] = []
    variadic = False
    for param in sig.parameters.values():
        if param.kind == param.VAR_POSITIONAL:
            variadic = True
            kinds.append(_KIND_NAMES.get(hints.get(param.name), ""))  # type: ignore[arg-type]
            break
        if param.kind in (param.KEYWORD_ONLY, param.VAR_KEYWORD):
            continue
        kinds.append(_KIND_NAMES.get(hints.get(param.name), ""))  # type: ignore[arg-type]
    return kinds, variadic


class Template:
    """A set of parsed templates sharing one function map, as Go's *template.Template."""

    def __init__(
        self,
        name: str,
        funcs: FuncMap | None = None,
        missing_key: str = "zero",
        html: bool = False,
    ) -> None:

        self.name = name
        self.funcs: dict[str, Callable[..., Any]] = dict(BUILTINS)
        if funcs:
            self.funcs.update(funcs)
        self.trees: dict[str, p.Tree] = {}
        self.missing_key = missing_key
        self.html = html
        self.delims = ("{{", "}}")

    def add_funcs(self, funcs: FuncMap) -> Template:
        self.funcs.update(funcs)
        return self

    def parse(self, text: str, name: str | None = None) -> Template:
        """Parse text as the template `name` (default: this template's name); defines are added."""
        p.parse(name or self.name, text, self.funcs, self.trees, self.delims)
        return self

    def lookup(self, name: str) -> p.Tree | None:
        return self.trees.get(name)

    def execute(self, data: Any, name: str | None = None) -> str:
        """Run the template `name` (default: this template) on `data`; returns the output."""
        tname = name or self.name
        tree = self.trees.get(tname)
        if tree is None:
            if name is None:
                raise TemplateExecError(
                    f'template: {tname}: "{tname}" is an incomplete or empty template'
                )
            raise TemplateExecError(
                f'template: no template "{tname}" associated with template "{self.name}"'
            )
        if data is None:
            data = MISSING  # Go's reflect.ValueOf(nil): the invalid value
        state = _State(self, tree, data)
        state.walk(data, tree.root)
        return "".join(state.out)


class _State:
    def __init__(self, tmpl: Template, tree: p.Tree, data: Any) -> None:
        self.tmpl = tmpl
        self.tree = tree
        self.out: list[str] = []
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.node: p.Node | None = None
        self.depth = 0

    # errors
    def at(self, node: p.Node) -> None:
        self.node = node

    def error(self, msg: str) -> TemplateExecError:
        name = self.tree.name
        if self.node is None:
            return TemplateExecError(f"template: {name}: {msg}")
        loc = self.tree.location(self.node)
        context = _context(self.node)
        return TemplateExecError(f'template: {loc}: executing "{name}" at <{context}>: {msg}')

    # variables
    def push(self, name: str, value: Any) -> None:
        self.vars.append((name, value))

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        raise self.error(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, node: p.Node) -> None:
        self.at(node)
        if isinstance(node, p.ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, p.TextNode):
            self.out.append(node.text)
        elif isinstance(node, p.ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, p.BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, p.TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, p.BreakNode):
            raise _Control(_BREAK)
        elif isinstance(node, p.ContinueNode):
            raise _Control(_CONTINUE)
        elif isinstance(node, p.CommentNode):
            pass
        else:
            raise self.error(f"unknown node: {node}")

    def walk_if_or_with(self, dot: Any, node: p.BranchNode) -> None:
        mark = len(self.vars)
        val = self.eval_pipeline(dot, node.pipe)
        if truth(val):
            self.walk(val if node.kind == "with" else dot, node.body)
        elif node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def walk_range(self, dot: Any, node: p.BranchNode) -> None:
        self.at(node)
        mark = len(self.vars)
        val = self.eval_pipeline(dot, node.pipe)
        items: list[tuple[Any, Any]]
        if val is MISSING or val is None:
            items = []
        elif isinstance(val, Mapping):
            keys = sorted(
                val.keys(), key=lambda k: (0, k) if isinstance(k, int | float) else (1, str(k))
            )
            items = [(k, val[k]) for k in keys]
        elif isinstance(val, list | tuple):
            items = list(enumerate(val))
        elif isinstance(val, int) and not isinstance(val, bool):
            if node.pipe.decl and len(node.pipe.decl) > 1:
                raise self.error(f"can't use {val} to iterate over more than one variable")
            items = [(i, i) for i in range(val)]
        elif isinstance(val, str):
            raise self.error(f"range can't iterate over {val}")
        else:
            raise self.error(f"range can't iterate over {format_value(val)}")
        if not items:
            del self.vars[mark:]
            if node.else_body is not None:
                self.walk(dot, node.else_body)
            return
        for key, elem in items:
            decl = node.pipe.decl
            if decl:
                if node.pipe.is_assign:
                    if len(decl) > 1:
                        self.set_var(decl[0].idents[0], key)
                        self.set_var(decl[1].idents[0], elem)
                    else:
                        self.set_var(decl[0].idents[0], elem)
                else:
                    # Go re-declares the range variables before each iteration.
                    del self.vars[mark:]
                    if len(decl) > 1:
                        self.push(decl[0].idents[0], key)
                        self.push(decl[1].idents[0], elem)
                    else:
                        self.push(decl[0].idents[0], elem)
            inner_mark = len(self.vars)
            try:
                self.walk(elem, node.body)
            except _Control as ctl:
                del self.vars[inner_mark:]
                if ctl.kind is _BREAK:
                    break
            del self.vars[inner_mark:]
        del self.vars[mark:]

    def walk_template(self, dot: Any, node: p.TemplateNode) -> None:
        self.at(node)
        tree = self.tmpl.trees.get(node.name)
        if tree is None:
            raise self.error(f"no such template {_go_q(node.name)}")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        if self.depth >= MAX_EXEC_DEPTH:
            raise self.error(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        sub = _State(self.tmpl, tree, new_dot)
        sub.depth = self.depth + 1
        sub.out = self.out
        sub.walk(new_dot, tree.root)

    # pipelines
    def eval_pipeline(self, dot: Any, pipe: p.PipeNode | None) -> Any:
        if pipe is None:
            return MISSING
        self.at(pipe)
        value: Any = MISSING
        final = _FINAL_MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, final)
            final = value
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.push(var.idents[0], value)
        return value

    def not_a_function(self, args: list[p.Node], final: Any) -> None:
        if len(args) > 1 or final is not _FINAL_MISSING:
            raise self.error(f"can't give argument to non-function {args[0].go()}")

    def eval_command(self, dot: Any, cmd: p.CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, p.FieldNode):
            self.at(first)
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, p.ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, p.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, p.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, p.VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, p.BoolNode):
            return first.value
        if isinstance(first, p.DotNode):
            return dot
        if isinstance(first, p.NilNode):
            raise self.error("nil is not a command")
        if isinstance(first, p.NumberNode):
            return first.value
        if isinstance(first, p.StringNode):
            return first.value
        raise self.error(f"can't evaluate command {first.go()!r}")

    def eval_chain(self, dot: Any, chain: p.ChainNode, args: list[p.Node], final: Any) -> Any:
        self.at(chain)
        if isinstance(chain.node, p.NilNode):
            raise self.error(f"indirection through explicit nil in {chain.go()}")
        pipe = self.eval_arg(dot, "", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, var: p.VariableNode, args: list[p.Node], final: Any) -> Any:
        self.at(var)
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args, final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: p.Node,
        idents: list[str],
        args: list[p.Node],
        final: Any,
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.eval_field(dot, ident, node, [], _FINAL_MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(
        self, dot: Any, name: str, node: p.Node, args: list[p.Node], final: Any, receiver: Any
    ) -> Any:
        if receiver is MISSING:
            if self.tmpl.missing_key == "error":
                raise self.error(f"nil data; no entry for key {_go_q(name)}")
            return MISSING
        has_args = len(args) > 1 or final is not _FINAL_MISSING
        method = getattr(receiver, "go_methods", None)
        if callable(method):
            methods = method()
            if name in methods:
                return self.eval_call(dot, methods[name], False, node, name, args, final)
        if receiver is None:
            raise self.error(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, GoStruct):
            found, value = receiver.get_field(name)
            if found:
                if has_args:
                    raise self.error(f"{name} has arguments but cannot be invoked as function")
                return value
        elif isinstance(receiver, Mapping) or _is_labels(receiver):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            if _is_labels(receiver):
                return (
                    receiver.get(name, "") if name in receiver else _map_zero(receiver, self.tmpl)
                )
            if name in receiver:
                return receiver[name]
            if self.tmpl.missing_key == "error":
                raise self.error(f"map has no entry for key {_go_q(name)}")
            if self.tmpl.missing_key == "invalid":
                return MISSING
            return _map_zero(receiver, self.tmpl)
        raise self.error(f"can't evaluate field {name} in type {go_type_name(receiver)}")

    def eval_function(
        self, dot: Any, node: p.IdentifierNode, cmd: p.Node, args: list[p.Node], final: Any
    ) -> Any:
        self.at(node)
        fn = self.tmpl.funcs.get(node.name)
        if fn is None:
            raise self.error(f"{_go_q(node.name)} is not a defined function")

        is_builtin = BUILTINS.get(node.name) is fn
        return self.eval_call(dot, fn, is_builtin, cmd, node.name, args, final)

    def eval_call(
        self,
        dot: Any,
        fn: Callable[..., Any],
        is_builtin: bool,
        node: p.Node,
        name: str,
        args: list[p.Node],
        final: Any,
    ) -> Any:
        call_args = args[1:] if args else []
        kinds, variadic = _signature(fn)
        num_in = len(call_args) + (0 if final is _FINAL_MISSING else 1)
        num_fixed = len(call_args)
        if variadic:
            num_fixed = len(kinds) - 1
            if num_in < num_fixed:
                raise self.error(
                    f"wrong number of args for {name}: "
                    f"want at least {num_fixed} got {len(call_args)}"
                )
        elif num_in != len(kinds):
            raise self.error(f"wrong number of args for {name}: want {len(kinds)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            v: Any = MISSING
            for arg in call_args:
                v = self.eval_arg(dot, "", arg)
                if truth(v) == (name == "or"):
                    return v
            if final is not _FINAL_MISSING:
                v = final
            return v
        argv: list[Any] = []
        for i, arg in enumerate(call_args):
            kind = kinds[min(i, len(kinds) - 1)] if kinds else ""
            argv.append(self.eval_arg(dot, kind, arg))
        if final is not _FINAL_MISSING:
            kind = kinds[min(len(argv), len(kinds) - 1)] if kinds else ""
            argv.append(self.validate_type(final, kind))
        try:
            result = fn(*argv)
        except TemplateExecError:
            raise
        except _Control:
            raise
        except FuncError as exc:
            self.at(node)
            raise self.error(f"error calling {name}: {exc}") from None
        except Exception as exc:  # a panic in Go is recovered into the same error
            self.at(node)
            raise self.error(f"error calling {name}: {exc}") from None
        return result

    def validate_type(self, value: Any, kind: str) -> Any:
        if not kind:
            return None if value is MISSING else value
        if value is MISSING or value is None:
            if kind in ("string", "bool", "int", "float64"):
                raise self.error(f"invalid value; expected {kind}")
            return value
        ok = {
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float64": isinstance(value, float),
        }[kind]
        if not ok:
            raise self.error(f"wrong type for value; expected {kind}; got {go_type_name(value)}")
        return value

    def eval_arg(self, dot: Any, kind: str, node: p.Node) -> Any:
        self.at(node)
        value: Any
        if isinstance(node, p.DotNode):
            value = dot
        elif isinstance(node, p.NilNode):
            if kind in ("string", "bool", "int", "float64"):
                raise self.error(f"cannot assign nil to {kind}")
            return None
        elif isinstance(node, p.FieldNode):
            value = self.eval_field_chain(dot, dot, node, node.idents, [node], _FINAL_MISSING)
        elif isinstance(node, p.VariableNode):
            value = self.eval_variable(dot, node, [node], _FINAL_MISSING)
        elif isinstance(node, p.PipeNode):
            value = self.eval_pipeline(dot, node)
        elif isinstance(node, p.IdentifierNode):
            value = self.eval_function(dot, node, node, [], _FINAL_MISSING)
        elif isinstance(node, p.ChainNode):
            value = self.eval_chain(dot, node, [], _FINAL_MISSING)
        elif isinstance(node, p.BoolNode):
            if kind not in ("", "bool"):
                raise self.error(f"expected {kind}; found {node.go()}")
            return node.value
        elif isinstance(node, p.StringNode):
            if kind not in ("", "string"):
                raise self.error(f"expected {kind}; found {node.go()}")
            return node.value
        elif isinstance(node, p.NumberNode):
            if kind == "float64":
                return float(node.value)
            if kind == "int":
                if isinstance(node.value, float):
                    raise self.error(f"expected integer; found {node.go()}")
                return node.value
            if kind in ("string", "bool"):
                raise self.error(f"expected {kind}; found {node.go()}")
            return node.value
        else:
            raise self.error(f"can't handle {node.go()} for arg of type {kind or 'interface {}'}")
        return self.validate_type(value, kind)

    def print_value(self, node: p.Node, value: Any) -> None:
        self.at(node)
        if value is MISSING or value is None:
            self.out.append("" if self.tmpl.html else "<no value>")
            return
        if callable(value) and not hasattr(value, "go_string"):
            raise self.error(f"can't print {node.go()} of type {go_type_name(value)}")
        text = format_value(value)
        if self.tmpl.html and not isinstance(value, SafeHTML):
            text = html_escape(text)
        self.out.append(text)


_FINAL_MISSING: Any = object()


def _is_labels(value: Any) -> bool:
    from signalroom.model.labels import Labels

    return isinstance(value, Labels)


def _map_zero(receiver: Any, tmpl: Template) -> Any:
    if isinstance(receiver, StringMap) or _is_labels(receiver):
        return ""
    return MISSING


def _go_q(text: str) -> str:
    from signalroom.templating.gofmt import go_quote

    return go_quote(text)


def _context(node: p.Node) -> str:
    return node.go()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
