"""What a pod takes from ConfigMaps and Secrets (sans-IO): the references, checked up front,
and their wire form.

- ``env[].valueFrom.configMapKeyRef|secretKeyRef`` (``name``, ``key``, ``optional``): `KeyRef`.
- ``envFrom[]`` (``configMapRef|secretRef`` with ``name`` and ``optional``, and ``prefix``):
  `EnvFrom`; keys that are not valid variable names are skipped, as Kubernetes does.
- ``configMap``/``secret`` volumes (``name``/``secretName``, ``items[]`` of ``key``, ``path``,
  ``mode``, ``defaultMode`` (0644), ``optional``): `ConfigFiles`.

A container's variables are set in this order, a later one replacing an earlier one of the
same name: ``envFrom`` entries in order, then the literal ``env`` values, then the
``valueFrom`` ones (Kubernetes keeps ``env`` in list order; mixing a literal and a reference of
one name is the one case that differs).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from beemesh.manifest.checks import Fail, describe, dns_label, env_name
from beemesh.manifest.config import (
    CONFIG_MAP,
    DEFAULT_MODE,
    MAX_ITEMS,
    MAX_KEY,
    SECRET,
    SOURCES,
    config_key,
    flag,
)
from beemesh.manifest.fields import Doc


@dataclass(frozen=True)
class KeyRef:
    """env[].valueFrom.configMapKeyRef / secretKeyRef: one variable from one key."""

    env: str
    source: str  # CONFIG_MAP | SECRET
    name: str
    key: str
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "source": self.source, "name": self.name, "key": self.key,
                "optional": self.optional}

    @classmethod
    def from_dict(cls, raw: Any, path: str, fail: Fail) -> KeyRef:
        _shape(raw, ("env", "source", "name", "key", "optional"), path, fail)
        return cls(env_name(raw["env"], f"{path}.env", fail), _source(raw["source"], path, fail),
                   dns_label(raw["name"], f"{path}.name", "name", MAX_KEY, fail),
                   config_key(raw["key"], f"{path}.key", fail),
                   flag(raw["optional"], f"{path}.optional", fail))


@dataclass(frozen=True)
class EnvFrom:
    """envFrom[]: every key of a ConfigMap or Secret as a variable, after `prefix`."""

    source: str
    name: str
    prefix: str = ""
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "prefix": self.prefix,
                "optional": self.optional}

    @classmethod
    def from_dict(cls, raw: Any, path: str, fail: Fail) -> EnvFrom:
        _shape(raw, ("source", "name", "prefix", "optional"), path, fail)
        prefix = raw["prefix"]
        if prefix:
            env_name(prefix, f"{path}.prefix", fail)
        elif prefix != "":
            fail(f"{path}.prefix", "must be a string", "send to_dict() output")
        return cls(_source(raw["source"], path, fail),
                   dns_label(raw["name"], f"{path}.name", "name", MAX_KEY, fail), prefix,
                   flag(raw["optional"], f"{path}.optional", fail))


@dataclass(frozen=True)
class ConfigFiles:
    """A configMap or secret volume: each key a file (or only `items`, at their paths)."""

    source: str
    name: str
    items: tuple[tuple[str, str, int | None], ...] = ()  # (key, relative path, mode)
    default_mode: int = DEFAULT_MODE
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name,
                "items": [list(i) for i in self.items], "default_mode": self.default_mode,
                "optional": self.optional}

    @classmethod
    def from_dict(cls, raw: Any, path: str, fail: Fail) -> ConfigFiles:
        _shape(raw, ("source", "name", "items", "default_mode", "optional"), path, fail)
        items = raw["items"]
        if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(
                isinstance(i, list) and len(i) == 3 for i in items):
            fail(f"{path}.items", f"must list at most {MAX_ITEMS} [key, path, mode]",
                 "send to_dict() output")
        return cls(_source(raw["source"], path, fail),
                   dns_label(raw["name"], f"{path}.name", "name", MAX_KEY, fail),
                   tuple((config_key(k, f"{path}.items", fail),
                          file_path(p, f"{path}.items", fail),
                          None if m is None else file_mode(m, f"{path}.items", fail))
                         for k, p, m in items),
                   file_mode(raw["default_mode"], f"{path}.default_mode", fail),
                   flag(raw["optional"], f"{path}.optional", fail))


def _shape(raw: Any, keys: tuple[str, ...], path: str, fail: Fail) -> None:
    if not isinstance(raw, dict) or set(raw) != set(keys):
        fail(path, f"expected a mapping with {', '.join(keys)}", "send to_dict() output")


def _source(value: Any, path: str, fail: Fail) -> str:
    if value not in SOURCES:
        fail(f"{path}.source", f"{describe(value)} is not ConfigMap or Secret",
             "send to_dict() output")
    return str(value)


def file_mode(value: Any, path: str, fail: Fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        fail(path, f"must be a file mode from 0 to 0777, got {describe(value)}",
             "write it in octal, e.g. 0644 (YAML reads a leading 0 as octal)")
    return value


def file_path(value: Any, path: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY \
            or value.startswith("/") or "\0" in value \
            or posixpath.normpath(value) != value or value.split("/")[0] == "..":
        fail(path, f"{describe(value)} must be a relative path inside the volume (no '..')",
             "write it like conf/app.ini")
    return value


def parse_key_ref(d: Doc, env: str, raw: Any, path: str) -> KeyRef:
    """One env[].valueFrom."""
    v = d.mapping(raw, path, required=True)
    d.check_fields(v, path, ("configMapKeyRef", "secretKeyRef"))
    given = [k for k in ("configMapKeyRef", "secretKeyRef") if v.get(k) is not None]
    if len(given) != 1:
        d.fail(path, "needs exactly one of configMapKeyRef or secretKeyRef",
               "fieldRef and resourceFieldRef are not supported; the pod's own facts are "
               "in BEEMESH_* variables and /run/beemesh/self.json")
    ref = d.mapping(v[given[0]], f"{path}.{given[0]}")
    d.check_fields(ref, f"{path}.{given[0]}", ("name", "key", "optional"))
    return KeyRef(env, CONFIG_MAP if given[0] == "configMapKeyRef" else SECRET,
                  dns_label(ref.get("name"), f"{path}.{given[0]}.name", "name", MAX_KEY, d.fail),
                  config_key(ref.get("key"), f"{path}.{given[0]}.key", d.fail),
                  flag(ref.get("optional"), f"{path}.{given[0]}.optional", d.fail))


def parse_env_from(d: Doc, raw: Any, path: str) -> tuple[EnvFrom, ...]:
    out = []
    for i, item in enumerate(d.items(raw, path, MAX_ITEMS, "sources",
                                     "write - configMapRef: {name: NAME}")):
        where = f"{path}[{i}]"
        e = d.mapping(item, where, required=True)
        d.check_fields(e, where, ("configMapRef", "secretRef", "prefix"))
        given = [k for k in ("configMapRef", "secretRef") if e.get(k) is not None]
        if len(given) != 1:
            d.fail(where, "needs exactly one of configMapRef or secretRef", "give one")
        ref = d.mapping(e[given[0]], f"{where}.{given[0]}")
        d.check_fields(ref, f"{where}.{given[0]}", ("name", "optional"))
        prefix = e.get("prefix") or ""
        if prefix:
            env_name(prefix, f"{where}.prefix", d.fail)
        out.append(EnvFrom(CONFIG_MAP if given[0] == "configMapRef" else SECRET,
                           dns_label(ref.get("name"), f"{where}.{given[0]}.name", "name",
                                     MAX_KEY, d.fail), prefix,
                           flag(ref.get("optional"), f"{where}.{given[0]}.optional", d.fail)))
    return tuple(out)


def parse_config_files(d: Doc, source: str, raw: Any, path: str) -> ConfigFiles:
    """A volume's `configMap` or `secret`."""
    v = d.mapping(raw, path, required=True)
    name_key = "name" if source == CONFIG_MAP else "secretName"
    d.check_fields(v, path, (name_key, "items", "defaultMode", "optional"))
    parsed = []
    for i, item in enumerate(d.items(v.get("items"), f"{path}.items", MAX_ITEMS, "items",
                                     "write - key: K, path: FILE")):
        where = f"{path}.items[{i}]"
        it = d.mapping(item, where, required=True)
        d.check_fields(it, where, ("key", "path", "mode"))
        mode = it.get("mode")
        parsed.append((config_key(it.get("key"), f"{where}.key", d.fail),
                       file_path(it.get("path"), f"{where}.path", d.fail),
                       None if mode is None else file_mode(mode, f"{where}.mode", d.fail)))
    mode = v.get("defaultMode")
    return ConfigFiles(source, dns_label(v.get(name_key), f"{path}.{name_key}", "name",
                                         MAX_KEY, d.fail), tuple(parsed),
                       DEFAULT_MODE if mode is None else file_mode(mode, f"{path}.defaultMode",
                                                                   d.fail),
                       flag(v.get("optional"), f"{path}.optional", d.fail))
