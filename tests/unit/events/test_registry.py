"""The schema registry: built-in and registered schemas by name and version, validation
messages that name the property at fault, and PII hashing or dropping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from signalroom.events.consumer import apply_pii
from signalroom.events.schemas.registry import SchemaError, SchemaRegistry, pii_hasher

pytestmark = pytest.mark.unit


def signup_schema(version: int, **extra: Any) -> dict[str, Any]:
    return {
        "x-event": "signup",
        "x-version": version,
        "type": "object",
        "properties": {
            "plan": {"type": "string", "enum": ["free", "pro"]},
            "seats": {"type": "integer", "minimum": 1},
            "email": {"type": "string", "x-pii": "hash"},
            "phone": {"type": "string", "x-pii": "drop"},
            **extra,
        },
        "required": ["plan"],
    }


def test_builtin_schemas_are_loaded() -> None:
    registry = SchemaRegistry()
    schema = registry.get("sample_request")
    assert schema is not None and schema.builtin and schema.version == 1
    assert schema.pii == {"customer_email": "hash"}
    assert {"purchase_completed", "product_viewed", "lead_created"} <= set(registry.events())


def test_versions_are_kept_apart_and_the_latest_is_the_default(tmp_path: Path) -> None:
    registry = SchemaRegistry(tmp_path)
    registry.register(signup_schema(1))
    v2 = signup_schema(2)
    v2["required"] = ["plan", "seats"]
    registry.register(v2)
    latest = registry.get("signup")
    v1 = registry.get("signup", 1)
    assert latest is not None and latest.version == 2
    assert v1 is not None and v1.version == 1
    assert registry.get("signup", 3) is None
    assert v1.error({"plan": "free"}) is None
    assert latest.error({"plan": "free"}) is not None  # v2 requires seats
    # registered schemas are saved and come back with a new registry on the same directory
    again = SchemaRegistry(tmp_path)
    reloaded = again.get("signup", 2)
    assert reloaded is not None and not reloaded.builtin
    assert [s.version for s in again.all() if s.event == "signup"] == [1, 2]


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"plan": "gold"}, "properties.plan"),
        ({"plan": "pro", "seats": 0}, "properties.seats"),
        ({"plan": "pro", "seats": "3"}, "properties.seats"),
        ({"seats": 2}, "plan"),
    ],
)
def test_validation_errors_name_the_property(props: dict[str, Any], field: str) -> None:
    registry = SchemaRegistry()
    schema = registry.register(signup_schema(1))
    problem = schema.error(props)
    assert problem is not None
    assert field in problem
    assert problem.startswith("properties")


def test_invalid_schemas_are_refused_with_the_reason() -> None:
    registry = SchemaRegistry()
    with pytest.raises(SchemaError, match="x-version"):
        registry.register({"x-event": "a", "x-version": 0, "type": "object"})
    with pytest.raises(SchemaError, match="x-event"):
        registry.register({"x-event": "bad name!", "x-version": 1, "type": "object"})
    with pytest.raises(SchemaError, match="must describe an object"):
        registry.register({"x-event": "a", "x-version": 1, "type": "string"})
    with pytest.raises(SchemaError, match="not valid JSON Schema"):
        registry.register({"x-event": "a", "x-version": 1, "type": "object", "required": 3})
    with pytest.raises(SchemaError, match="x-pii must be 'hash' or 'drop'"):
        registry.register(signup_schema(1, name={"type": "string", "x-pii": "mask"}))
    assert registry.get("a") is None


def test_accept_unregistered_patterns() -> None:
    registry = SchemaRegistry(accept_unregistered=["$*", "debug_*"])
    assert registry.accepts_unregistered("$pageview")
    assert registry.accepts_unregistered("debug_click")
    assert not registry.accepts_unregistered("checkout")
    registry.set_accept_unregistered([])
    assert not registry.accepts_unregistered("$pageview")


def test_pii_is_hashed_with_the_key_or_dropped() -> None:
    schema = SchemaRegistry().register(signup_schema(1))
    hasher = pii_hasher(b"key-1")
    props = {"plan": "pro", "email": "ann@example.com", "phone": "+49 30 1234"}
    out = apply_pii(schema, props, hasher)
    assert "phone" not in out
    assert out["plan"] == "pro"
    assert out["email"].startswith("sha256:") and "ann" not in out["email"]
    # equal values hash equally (they still group together); another key gives another hash
    assert apply_pii(schema, dict(props), hasher)["email"] == out["email"]
    assert apply_pii(schema, props, pii_hasher(b"key-2"))["email"] != out["email"]
    assert props["phone"] == "+49 30 1234"  # the caller's dict is not changed
    # nothing to hide: the same object comes back
    clean = {"plan": "free"}
    assert apply_pii(schema, clean, hasher) is clean
