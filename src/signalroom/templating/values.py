"""Go values as templates see them in Python: the invalid value (``MISSING``), maps and
structs, safe HTML, Go's truthiness, and the error a template function raises. Shared by the
executor and the built-in functions, below both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "FuncError", "GoStruct", "SafeHTML", "StringMap", "truth"]


class _Missing:
    """Go's invalid reflect.Value: prints `<no value>`, is false, has no fields."""

    go_type = "<invalid reflect.Value>"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class FuncError(Exception):
    """Raised by template functions; shown as `error calling NAME: message`."""


class StringMap(dict[str, str]):
    """A Go map[string]string: a missing key reads as the empty string."""

    go_type = "map[string]string"


class GoStruct:
    """A Go struct value: named fields, reached with `.Field`."""

    def __init__(self, go_type: str, **fields: Any) -> None:
        self.go_type = go_type
        self._fields = fields

    def get_field(self, name: str) -> tuple[bool, Any]:
        if name in self._fields:
            return True, self._fields[name]
        return False, None

    def go_fields(self) -> list[tuple[str, Any]]:
        return list(self._fields.items())


class SafeHTML(str):
    """html/template.HTML: never escaped in HTML mode."""

    go_type = "template.HTML"


def truth(value: Any) -> bool:
    """Go template truthiness (isTrue)."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value) > 0
    return True
