"""A registry of versioned JSON Schemas, one per event name and version.

A schema describes an event's ``properties`` object. Besides standard JSON Schema keywords it
reads three extensions: ``x-event`` (the event name), ``x-version`` (a positive integer) and,
on a property, ``x-pii``: ``"hash"`` (the value is replaced by a keyed SHA-256 before anything
is stored, so equal values still group together) or ``"drop"`` (the property is removed).

Built-in schemas ship as ``<event>.v<version>.json`` files next to this module; schemas
registered at run time are written to the registry's directory and win over built-ins of the
same name and version. Validation uses compiled validators (fastjsonschema, a few
microseconds per event); registration checks a schema against the JSON Schema meta-schema
(jsonschema) first.

A batch of events is checked a column at a time first (:class:`_ColumnCheck`: types, bounds,
lengths, enums over all the batch's values of one property); only the events that check cannot
vouch for go through the compiled validator, which gives the error message.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
import jsonschema

__all__ = ["EventSchema", "SchemaError", "SchemaRegistry", "pii_hasher"]

log = logging.getLogger(__name__)

_FILE = re.compile(r"^([A-Za-z0-9_$.\-]+)\.v(\d+)\.json$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_$.\-]{1,200}$")
PiiAction = Literal["hash", "drop"]


class SchemaError(ValueError):
    """A schema that cannot be registered; the message says why."""


@dataclass(frozen=True)
class EventSchema:
    """One version of one event's schema, compiled."""

    event: str
    version: int
    schema: Mapping[str, Any]
    validate: Callable[[Any], Any] = field(repr=False, compare=False)
    pii: Mapping[str, PiiAction] = field(default_factory=dict)
    builtin: bool = True
    columns: tuple[_ColumnCheck, ...] | None = field(default=None, repr=False, compare=False)

    def error(self, properties: Any) -> str | None:
        """Why ``properties`` does not match, or None when it does."""
        try:
            self.validate(properties)
        except fastjsonschema.JsonSchemaValueException as exc:
            return "properties" + exc.message[4:] if exc.message.startswith("data") else exc.message
        return None

    def errors(self, batch: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        """``(index, reason)`` of the property objects of ``batch`` that do not match."""
        if self.columns is None:
            suspects: Iterable[int] = range(len(batch))
        else:
            doubtful: set[int] = set()
            for check in self.columns:
                doubtful.update(check.doubtful(batch))
            suspects = sorted(doubtful)
        out = []
        for i in suspects:
            reason = self.error(batch[i])
            if reason is not None:
                out.append((i, reason))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "version": self.version,
            "builtin": self.builtin,
            "pii": dict(self.pii),
            "schema": self.schema,
        }


class _Missing:
    """A property an event does not have."""


_MISSING = _Missing()
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_NUMBERS = frozenset({int, float})
_NONE = type(None)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LENGTHS = ("minLength", "maxLength")
_CHECKED = frozenset({"type", "enum", *_BOUNDS, *_LENGTHS})
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
    }
)


def _annotation(key: str) -> bool:
    return key in _ANNOTATIONS or key.startswith("x-")


class _ColumnCheck:
    """What a schema says of one property, checked over a batch: the values of rows it
    vouches for are valid; the others (:meth:`doubtful`) go to the full validator. It knows
    ``type``, ``enum`` (of strings), numeric bounds and string lengths; a property with other
    keywords vouches only for rows without it."""

    def __init__(self, name: str, spec: Any, required: bool) -> None:
        self.name = name
        self.required = required
        self.exact = isinstance(spec, Mapping) and all(
            k in _CHECKED or _annotation(k) for k in spec
        )
        spec = spec if self.exact else {}
        types = spec.get("type")
        names = [types] if isinstance(types, str) else types
        self.types: frozenset[type] | None = None
        if isinstance(names, list):
            if all(n in _JSON_TYPES for n in names):
                self.types = frozenset(t for n in names for t in _JSON_TYPES[n])
            else:
                self.exact = False
        self.bounds = {k: spec[k] for k in _BOUNDS if k in spec}
        self.lengths = {k: spec[k] for k in _LENGTHS if k in spec}
        enum = spec.get("enum")
        self.enum: frozenset[str] | None = None
        if enum is not None:
            if isinstance(enum, list) and all(type(v) is str for v in enum):
                self.enum = frozenset(enum)
            else:
                self.exact = False

    @property
    def trivial(self) -> bool:
        """Every value (and no value) is valid: nothing to check."""
        return (
            self.exact
            and not self.required
            and self.types is None
            and not self.bounds
            and not self.lengths
            and self.enum is None
        )

    def doubtful(self, batch: Sequence[dict[str, Any]]) -> list[int]:
        """Rows of ``batch`` this check cannot vouch for."""
        name, missing = self.name, _MISSING
        values: list[Any] = list(map(dict.get, batch, itertools.repeat(name)))
        kinds = set(map(type, values))
        if _NONE in kinds:  # missing or null: tell them apart (the slower way)
            values = [props.get(name, missing) for props in batch]
            kinds = set(map(type, values))
        if self._column_ok(values, kinds):
            return []
        return [i for i, value in enumerate(values) if not self._fits(value)]

    def _column_ok(self, values: list[Any], kinds: set[type]) -> bool:
        if _Missing in kinds:
            if self.required:
                return False
            kinds = kinds - {_Missing}
            if not kinds:
                return True
            values = [v for v in values if v is not _MISSING]
        if not self.exact or (self.types is not None and not kinds <= self.types):
            return False
        if self.bounds:
            if not kinds <= _NUMBERS:
                return False
            if not (self._above(min(values)) and self._below(max(values))):
                return False
        if self.lengths or self.enum is not None:
            if kinds != {str}:
                return False
            if self.lengths:
                sizes = list(map(len, values))
                if not self._length(min(sizes)) or not self._length(max(sizes)):
                    return False
            if self.enum is not None and not self.enum.issuperset(values):
                return False
        return True

    def _fits(self, value: Any) -> bool:
        if value is _MISSING:
            return not self.required
        kind = type(value)
        if not self.exact or (self.types is not None and kind not in self.types):
            return False
        if self.bounds and (
            kind not in _NUMBERS or not (self._above(value) and self._below(value))
        ):
            return False
        if self.lengths and (kind is not str or not self._length(len(value))):
            return False
        return self.enum is None or (kind is str and value in self.enum)

    def _above(self, value: Any) -> bool:
        # False for NaN: the full validator decides
        low, strict = self.bounds.get("minimum"), self.bounds.get("exclusiveMinimum")
        return bool(
            (low is None or value >= low)
            and (strict is None or value > strict)
            and (value == value)
        )

    def _below(self, value: Any) -> bool:
        high, strict = self.bounds.get("maximum"), self.bounds.get("exclusiveMaximum")
        return bool(
            (high is None or value <= high)
            and (strict is None or value < strict)
            and (value == value)
        )

    def _length(self, size: int) -> bool:
        low, high = self.lengths.get("minLength"), self.lengths.get("maxLength")
        return (low is None or size >= low) and (high is None or size <= high)


def _column_checks(schema: Mapping[str, Any]) -> tuple[_ColumnCheck, ...] | None:
    """The checks of an object schema's properties, or None when the schema uses keywords
    beyond ``type: object``, ``properties``, ``required`` and ``additionalProperties: true``."""
    known = {"type", "properties", "required", "additionalProperties"}
    if any(k not in known and not _annotation(k) for k in schema):
        return None
    if schema.get("additionalProperties", True) is not True:
        return None
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return None
    names = list(properties) + [r for r in required if r not in properties]
    checks = [_ColumnCheck(n, properties.get(n, {}), n in required) for n in names]
    return tuple(c for c in checks if not c.trivial)


def pii_hasher(key: bytes) -> Callable[[Any], str]:
    """Keyed hash of a PII value: ``sha256:<hex>`` of HMAC-SHA256(key, json(value))."""

    def digest(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"sha256:{mac[:32]}"

    return digest


def _compile(event: str, version: int, schema: Mapping[str, Any], builtin: bool) -> EventSchema:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(
            f"schema of {event} v{version} is not valid JSON Schema: {exc.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise SchemaError(f"schema of {event} v{version} must describe an object (type: object)")
    pii: dict[str, PiiAction] = {}
    for name, spec in (schema.get("properties") or {}).items():
        action = spec.get("x-pii") if isinstance(spec, Mapping) else None
        if action is None:
            continue
        if action not in ("hash", "drop"):
            raise SchemaError(f"property {name!r}: x-pii must be 'hash' or 'drop', not {action!r}")
        pii[name] = action
    # fastjsonschema implements draft 4/6/7; the keywords our schemas use mean the same there.
    compilable = copy.deepcopy(dict(schema))
    compilable["$schema"] = "http://json-schema.org/draft-07/schema#"
    compilable.pop("$id", None)
    try:
        validate = fastjsonschema.compile(compilable, use_default=False)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise SchemaError(f"schema of {event} v{version} cannot be compiled: {exc}") from None
    checks = _column_checks(schema)
    return EventSchema(event, version, schema, validate, pii, builtin, checks)


class SchemaRegistry:
    """Event schemas by name and version: the built-ins plus those registered at run time."""

    def __init__(self, directory: Path | None = None, *, accept_unregistered: Iterable[str] = ()):
        self._directory = Path(directory) if directory is not None else None
        self._lock = threading.Lock()
        self._schemas: dict[str, dict[int, EventSchema]] = {}
        self._latest: dict[str, EventSchema] = {}
        self._accept: tuple[str, ...] = tuple(accept_unregistered)
        self._accept_cache: dict[str, bool] = {}
        self._load_builtin()
        if self._directory is not None:
            self._load_directory(self._directory)

    # ------------------------------------------------------------------ loading

    def _load_builtin(self) -> None:
        root = resources.files("signalroom.events.schemas")
        for entry in root.iterdir():
            match = _FILE.match(entry.name)
            if match is None:
                continue
            schema = json.loads(entry.read_text(encoding="utf-8"))
            self._add(_compile(match[1], int(match[2]), schema, builtin=True))

    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            return
        for path in sorted(directory.glob("*.json")):
            match = _FILE.match(path.name)
            if match is None:
                continue
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                self._add(_compile(match[1], int(match[2]), schema, builtin=False))
            except (OSError, ValueError) as exc:
                log.error("events: schema file %s skipped: %s", path, exc)

    def _add(self, schema: EventSchema) -> None:
        with self._lock:
            versions = dict(self._schemas.get(schema.event, {}))
            versions[schema.version] = schema
            self._schemas = {**self._schemas, schema.event: versions}
            self._latest = {**self._latest, schema.event: versions[max(versions)]}

    # ------------------------------------------------------------------ lookups

    def get(self, event: str, version: int | None = None) -> EventSchema | None:
        """The schema of ``event`` at ``version`` (the latest when None), or None."""
        if version is None:
            return self._latest.get(event)
        return self._schemas.get(event, {}).get(version)

    def accepts_unregistered(self, event: str) -> bool:
        """Whether ``event`` may be stored without a schema (``accept_unregistered``)."""
        known = self._accept_cache.get(event)
        if known is None:
            known = any(fnmatch.fnmatchcase(event, p) for p in self._accept)
            if len(self._accept_cache) < 10_000:
                self._accept_cache[event] = known
        return known

    def set_accept_unregistered(self, patterns: Iterable[str]) -> None:
        self._accept = tuple(patterns)
        self._accept_cache = {}

    def events(self) -> list[str]:
        return sorted(self._latest)

    def all(self) -> list[EventSchema]:
        return [s for name in sorted(self._schemas) for _, s in sorted(self._schemas[name].items())]

    # ------------------------------------------------------------------ registration

    def register(self, schema: Mapping[str, Any]) -> EventSchema:
        """Add (or replace) a schema; it names itself with ``x-event`` and ``x-version``.

        Raises :class:`SchemaError` naming the problem. With a directory the schema is saved
        there and survives restarts."""
        if not isinstance(schema, Mapping):
            raise SchemaError("a schema must be a JSON object")
        event = schema.get("x-event")
        version = schema.get("x-version")
        if not isinstance(event, str) or not _EVENT_NAME.match(event):
            raise SchemaError("x-event must name the event (1-200 of A-Z a-z 0-9 _ $ . -)")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SchemaError("x-version must be a positive integer")
        compiled = _compile(event, version, schema, builtin=False)
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            path = self._directory / f"{event}.v{version}.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(schema, indent=2), encoding="utf-8")
            os.replace(tmp, path)
        self._add(compiled)
        return compiled
