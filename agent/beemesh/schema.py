"""Tiny structural schemas for message bodies (CBOR on the wire, JSON on local sockets).

Every message kind declares its body shape here-style so a receiver can reject anything
unexpected before acting on it. Kept deliberately small: types, required/optional fields,
size bounds. Unknown fields are rejected so a typo never passes silently. Every integer is
bounded (int64, or the tighter `Int(lo, hi)` a field declares) and every float is finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


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
class Int:
    """An integer in [lo, hi]; `int` in a schema means Int() (int64)."""

    lo: int = INT64_MIN
    hi: int = INT64_MAX


@dataclass(frozen=True)
class Struct:
    required: dict[str, Any]
    optional: dict[str, Any] = field(default_factory=dict)


MAX_STR = 4096
_INT64 = Int()
NON_NEGATIVE = Int(0, INT64_MAX)
PORT_NUMBER = Int(0, 65535)  # 0: none


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
    elif schema is int or isinstance(schema, Int):
        bounds = schema if isinstance(schema, Int) else _INT64
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(f"{path}: expected an integer")
        if not bounds.lo <= value <= bounds.hi:
            raise SchemaError(f"{path}: {value} is outside [{bounds.lo}, {bounds.hi}]")
    elif schema is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SchemaError(f"{path}: expected a number")
        if not math.isfinite(value) or not INT64_MIN <= value <= INT64_MAX:
            raise SchemaError(f"{path}: expected a finite number within int64")
    elif schema is str:
        if not isinstance(value, str) or len(value) > MAX_STR:
            raise SchemaError(f"{path}: expected a string of at most {MAX_STR} characters")
    elif schema in (bytes, bool):
        if not isinstance(value, schema):
            raise SchemaError(f"{path}: expected {schema.__name__}")
    else:  # pragma: no cover - a programming error in a schema table
        raise TypeError(f"unknown schema {schema!r}")
