"""Tiny structural schemas for CBOR message bodies.

Every message kind declares its body shape here-style so a receiver can reject anything
unexpected before acting on it. Kept deliberately small: types, required/optional fields,
size bounds. Unknown fields are rejected so a typo never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SchemaError(ValueError):
    """A value does not match its schema; the message names the path."""


@dataclass(frozen=True)
class ListOf:
    item: Any
    max_len: int = 256


@dataclass(frozen=True)
class MapOf:
    key: Any
    value: Any
    max_len: int = 256


@dataclass(frozen=True)
class Struct:
    required: dict[str, Any]
    optional: dict[str, Any] = field(default_factory=dict)


MAX_STR = 4096


class _Opaque:
    """Any CBOR value; for payloads a dedicated parser validates (e.g. a workload spec)."""


OPAQUE = _Opaque()


def check(value: Any, schema: Any, path: str = "body") -> None:
    """Raise SchemaError unless `value` matches `schema`."""
    if schema is OPAQUE:
        return
    if isinstance(schema, Struct):
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected a map")
        for name in value:
            if name not in schema.required and name not in schema.optional:
                raise SchemaError(f"{path}.{name}: unexpected field")
        for name, sub in schema.required.items():
            if name not in value:
                raise SchemaError(f"{path}.{name}: missing")
            check(value[name], sub, f"{path}.{name}")
        for name, sub in schema.optional.items():
            if name in value:
                check(value[name], sub, f"{path}.{name}")
    elif isinstance(schema, ListOf):
        if not isinstance(value, list) or len(value) > schema.max_len:
            raise SchemaError(f"{path}: expected a list of at most {schema.max_len} items")
        for i, item in enumerate(value):
            check(item, schema.item, f"{path}[{i}]")
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict) or len(value) > schema.max_len:
            raise SchemaError(f"{path}: expected a map of at most {schema.max_len} entries")
        for k, v in value.items():
            check(k, schema.key, f"{path} key")
            check(v, schema.value, f"{path}[{k!r}]")
    elif schema is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(f"{path}: expected an integer")
    elif schema is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SchemaError(f"{path}: expected a number")
    elif schema is str:
        if not isinstance(value, str) or len(value) > MAX_STR:
            raise SchemaError(f"{path}: expected a string of at most {MAX_STR} characters")
    elif schema in (bytes, bool):
        if not isinstance(value, schema):
            raise SchemaError(f"{path}: expected {schema.__name__}")
    else:  # pragma: no cover - a programming error in a schema table
        raise TypeError(f"unknown schema {schema!r}")
