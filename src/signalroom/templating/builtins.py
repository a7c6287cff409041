"""The predefined functions of Go's text/template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from signalroom.templating.gofmt import go_type_name, sprint, sprintf, sprintln
from signalroom.templating.values import MISSING, FuncError, StringMap, truth


def _and(arg0: Any, *args: Any) -> Any:
    for a in (arg0, *args):
        if not truth(a):
            return a
    return args[-1] if args else arg0


def _or(arg0: Any, *args: Any) -> Any:
    for a in (arg0, *args):
        if truth(a):
            return a
    return args[-1] if args else arg0


def _not(arg: Any) -> bool:
    return not truth(arg)


def _len(item: Any) -> int:
    if item is None or item is MISSING:
        raise FuncError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, Mapping | list | tuple):
        return len(item)
    if hasattr(item, "__len__") and not isinstance(item, int | float | bool):
        return len(item)
    raise FuncError(f"len of type {go_type_name(item)}")


def _index(item: Any, *indexes: Any) -> Any:
    value = item
    if value is None or value is MISSING:
        raise FuncError("index of untyped nil")
    for idx in indexes:
        if isinstance(value, Mapping):
            if not isinstance(idx, str) and all(isinstance(k, str) for k in value):
                raise FuncError(f"value has type {go_type_name(idx)}; should be string")
            # A missing key is the zero value: "" for map[string]string, else no value.
            missing: Any = "" if isinstance(value, StringMap) else MISSING
            value = value.get(idx, missing)
        elif isinstance(value, list | tuple | str):
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise FuncError(f"cannot index slice/array with type {go_type_name(idx)}")
            seq: Any = value.encode() if isinstance(value, str) else value
            if idx < 0 or idx >= len(seq):
                raise FuncError(f"index out of range: {idx}")
            value = seq[idx]
        elif value is None or value is MISSING:
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {go_type_name(value)}")
    return value


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, str | list | tuple):
        raise FuncError(f"can't slice item of type {go_type_name(item)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    length = len(item.encode()) if isinstance(item, str) else len(item)
    idx = [0, length]
    for i, v in enumerate(indexes):
        if not isinstance(v, int) or isinstance(v, bool):
            raise FuncError(f"cannot index slice/array with type {go_type_name(v)}")
        if v < 0 or v > length:
            raise FuncError(f"index out of range: {v}")
        if i < 2:
            idx[i] = v
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if isinstance(item, str):
        return item.encode()[idx[0] : idx[1]].decode(errors="replace")
    return list(item[idx[0] : idx[1]])


def html_escape(text: str) -> str:
    """template.HTMLEscapeString."""
    return (
        text.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def js_escape(text: str) -> str:
    """template.JSEscapeString."""
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == '"':
            out.append('\\"')
        elif ch in "<>&=" or ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def query_escape(text: str) -> str:
    """url.QueryEscape."""
    return quote_plus(text, safe="-_.~")


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*args)


def _html(*args: Any) -> str:
    return html_escape(_eval_args(args))


def _js(*args: Any) -> str:
    return js_escape(_eval_args(args))


def _urlquery(*args: Any) -> str:
    return query_escape(_eval_args(args))


def _print(*args: Any) -> str:
    return sprint(*[None if a is MISSING else a for a in args])


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, *[None if a is MISSING else a for a in args])


def _println(*args: Any) -> str:
    return sprintln(*[None if a is MISSING else a for a in args])


# --- comparisons ----------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None or value is MISSING:
        return "nil"
    return "other"


def _eq(arg1: Any, *args: Any) -> bool:
    k1 = _kind(arg1)
    if not args:
        raise FuncError("missing argument for comparison")
    if k1 == "other" and isinstance(arg1, Mapping | list | tuple):
        raise FuncError("non-comparable type")
    for arg in args:
        k2 = _kind(arg)
        if k2 == "other" and isinstance(arg, Mapping | list | tuple):
            raise FuncError("non-comparable types")
        if k1 != k2:
            if k1 == "nil" or k2 == "nil":
                if arg1 is arg or (k1 == "nil" and k2 == "nil"):
                    return True
                continue
            raise FuncError("incompatible types for comparison")
        if arg1 == arg:
            return True
    return False


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _kind(arg1), _kind(arg2)
    if k1 not in ("int", "float", "string") or k2 not in ("int", "float", "string"):
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    return bool(arg1 < arg2)


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: Any, arg2: Any) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: Any, arg2: Any) -> bool:
    return not _lt(arg1, arg2)


def _call(fn: Any, *args: Any) -> Any:
    if fn is None or fn is MISSING:
        raise FuncError("call of nil")
    if not callable(fn):
        raise FuncError(f"non-function of type {go_type_name(fn)}")
    return fn(*args)


BUILTINS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "not": _not,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": _printf,
    "println": _println,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
    "eq": _eq,
    "ne": _ne,
    "lt": _lt,
    "le": _le,
    "gt": _gt,
    "ge": _ge,
    "call": _call,
}
