"""JSON Schemas of the business events signalroom knows out of the box (package data) and
the registry that validates events against them; see :mod:`.registry`."""

from signalroom.events.schemas.registry import EventSchema, SchemaError, SchemaRegistry

__all__ = ["EventSchema", "SchemaError", "SchemaRegistry"]
