"""v1 ConfigMap and Secret objects (sans-IO); what a pod takes from them is
`beemesh.manifest.references`.

- ``ConfigMap``: ``data`` (text) and ``binaryData`` (base64), ``immutable``. Every machine keeps
  it, like a Service: its values are not secret. At most MAX_CONFIG_BYTES of values (Kubernetes
  allows 1 MiB; a ConfigMap travels in one signed message).
- ``Secret``: ``data`` (base64) and ``stringData`` (text, wins over ``data`` for the same key),
  ``type`` (any; Opaque by default), ``immutable``. What travels and is kept fleet-wide is its
  name, its key names and a keyed digest of its values (`SecretSpec`): the values themselves
  only ever travel sealed to the machine that starts a pod using them (`beemesh.secrets`). At
  most MAX_SECRET_BYTES of values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from beemesh.manifest.checks import MAX_LABEL, Fail, describe, dns_label, label_map
from beemesh.manifest.fields import Doc

CONFIG_MAP, SECRET = "ConfigMap", "Secret"
SOURCES = (CONFIG_MAP, SECRET)
MAX_KEYS = 256
MAX_KEY = 253
MAX_CONFIG_BYTES = 160 * 1024  # a ConfigMap's values, all keys together
MAX_SECRET_BYTES = 64 * 1024  # a Secret's values, all keys together
MAX_ITEMS = 256
DEFAULT_MODE = 0o644
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_TOP = ("apiVersion", "kind", "metadata", "data", "immutable")
Pairs = tuple[tuple[str, str], ...]


def object_id(source: str, namespace: str, name: str) -> str:
    """`configmap/NS/NAME` or `secret/NS/NAME`: the id a Delete names, like a Service's."""
    return f"{source.lower()}/{namespace}/{name}"


def config_key(value: Any, path: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY \
            or not _KEY.match(value) or value in (".", ".."):
        fail(path, f"{describe(value)} is not a valid key", "use letters, digits, '-', '_' "
             f"and '.' (at most {MAX_KEY})")
    return value


def flag(value: Any, path: str, fail: Fail) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        fail(path, f"must be true or false, got {describe(value)}", "write true or false")
    return value


@dataclass(frozen=True)
class ConfigMapSpec:
    name: str
    namespace: str
    labels: Pairs
    data: Pairs  # key -> text
    binary: tuple[tuple[str, bytes], ...] = ()  # binaryData: key -> bytes
    immutable: bool = False
    warnings: tuple[str, ...] = ()

    kind = CONFIG_MAP

    @property
    def object_id(self) -> str:
        return object_id(CONFIG_MAP, self.namespace, self.name)

    @property
    def digest(self) -> str:
        """What a workload that rolls on a change records (`WorkloadSpec.config_digest`)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def values(self) -> dict[str, bytes]:
        return {**{k: v.encode() for k, v in self.data}, **dict(self.binary)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels),
                "data": dict(self.data),
                "binary": {k: base64.b64encode(v).decode() for k, v in self.binary},
                "immutable": self.immutable}

    @classmethod
    def from_dict(cls, raw: Any) -> ConfigMapSpec:
        fail = _wire_fail("configmap", raw, ("name", "namespace", "labels", "data", "binary",
                                             "immutable"))
        name = dns_label(raw["name"], "name", "name", MAX_KEY, fail)
        namespace = dns_label(raw["namespace"], "namespace", "namespace", MAX_LABEL, fail)
        data = _text_values(raw["data"], "data", fail)
        binary = _binary_values(raw["binary"], "binary", fail)
        _check_total(len(data) + len(binary), sum(len(v.encode()) for _, v in data)
                     + sum(len(v) for _, v in binary), MAX_CONFIG_BYTES, "", fail)
        return cls(name, namespace, label_map(raw["labels"], "labels", fail), data, binary,
                   flag(raw["immutable"], "immutable", fail))


@dataclass(frozen=True)
class SecretSpec:
    """A Secret as every machine knows it: no values. `values` is set only where the Secret
    was read from a manifest (the operator's CLI), and never travels."""

    name: str
    namespace: str
    labels: Pairs
    type: str
    keys: tuple[str, ...]
    digest: str  # keyed BLAKE2b of the values (`beemesh.secrets.sealing`); "" before sealing
    immutable: bool = False
    warnings: tuple[str, ...] = ()
    values: dict[str, bytes] | None = field(default=None, compare=False, repr=False)

    kind = SECRET

    @property
    def object_id(self) -> str:
        return object_id(SECRET, self.namespace, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels),
                "type": self.type, "keys": list(self.keys), "digest": self.digest,
                "immutable": self.immutable}

    @classmethod
    def from_dict(cls, raw: Any) -> SecretSpec:
        fail = _wire_fail("secret", raw, ("name", "namespace", "labels", "type", "keys",
                                          "digest", "immutable"))
        keys = raw["keys"]
        if not isinstance(keys, list) or len(keys) > MAX_KEYS:
            fail("keys", f"must list at most {MAX_KEYS} keys", "apply it again")
        kind = raw["type"]
        if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KEY or not kind.isprintable():
            fail("type", f"{describe(kind)} is not a Secret type", "apply it again")
        digest = raw["digest"]
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            fail("digest", "must be 64 hex digits", "apply it again")
        return cls(dns_label(raw["name"], "name", "name", MAX_KEY, fail),
                   dns_label(raw["namespace"], "namespace", "namespace", MAX_LABEL, fail),
                   label_map(raw["labels"], "labels", fail), kind,
                   tuple(config_key(k, "keys", fail) for k in keys), digest,
                   flag(raw["immutable"], "immutable", fail))


def _wire_fail(what: str, raw: Any, keys: tuple[str, ...]) -> Fail:
    def fail(path: str | None, problem: str, fix: str) -> Any:
        from beemesh.manifest.checks import ManifestError

        raise ManifestError(f"{what}: {path + ': ' if path else ''}{problem}; {fix}")

    if not isinstance(raw, dict) or set(raw) != set(keys):
        fail(None, f"expected a mapping with {', '.join(keys)}", "apply it again")
    return fail


def _check_total(count: int, size: int, cap: int, path: str, fail: Fail) -> None:
    if count > MAX_KEYS:
        fail(path or None, f"{count} keys, more than {MAX_KEYS}", "split it")
    if size > cap:
        fail(path or None, f"{size} bytes of values, more than {cap}",
             "keep large files in an image or a volume")


def _text_values(raw: Any, path: str, fail: Fail) -> Pairs:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > MAX_KEYS:
        fail(path, f"must be a mapping of at most {MAX_KEYS} keys to strings",
             'write key: "value"')
    out = []
    for key, value in raw.items():
        config_key(key, path, fail)
        if not isinstance(value, str):
            fail(f"{path}.{key}", f"must be a string, got {describe(value)}", "quote it")
        out.append((key, value))
    return tuple(sorted(out))


def _binary_values(raw: Any, path: str, fail: Fail) -> tuple[tuple[str, bytes], ...]:
    """A mapping of keys to base64 text (binaryData; a Secret's data)."""
    out = []
    for key, text in _text_values(raw, path, fail):
        try:
            out.append((key, base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            fail(f"{path}.{key}", "is not base64", "encode it with base64 -w0, or put the "
                 "text under stringData (a Secret) or data (a ConfigMap)")
    return tuple(out)


# ---- documents ------------------------------------------------------------------------------


def parse_config_map(d: Doc, name: str, namespace: str, labels: Pairs,
                     doc: dict[Any, Any]) -> ConfigMapSpec:
    d.check_fields(doc, "", (*_TOP, "binaryData"))
    data = _text_values(doc.get("data"), "data", d.fail)
    binary = _binary_values(doc.get("binaryData"), "binaryData", d.fail)
    both = set(dict(data)) & set(dict(binary))
    if both:
        d.fail("binaryData", f"key {sorted(both)[0]} is also under data", "keep it in one")
    _check_total(len(data) + len(binary), sum(len(v.encode()) for _, v in data)
                 + sum(len(v) for _, v in binary), MAX_CONFIG_BYTES, "data", d.fail)
    return ConfigMapSpec(name, namespace, labels, data, binary,
                         flag(doc.get("immutable"), "immutable", d.fail), tuple(d.warnings))


def parse_secret(d: Doc, name: str, namespace: str, labels: Pairs,
                 doc: dict[Any, Any]) -> SecretSpec:
    d.check_fields(doc, "", (*_TOP, "stringData", "type"))
    values = dict(_binary_values(doc.get("data"), "data", d.fail))
    values.update((k, v.encode()) for k, v in _text_values(doc.get("stringData"), "stringData",
                                                           d.fail))
    _check_total(len(values), sum(map(len, values.values())), MAX_SECRET_BYTES, "data", d.fail)
    kind = doc.get("type") or "Opaque"
    if not isinstance(kind, str) or len(kind) > MAX_KEY or not kind.isprintable():
        d.fail("type", f"{describe(kind)} is not a Secret type", "use Opaque, or leave it out")
    return SecretSpec(name, namespace, labels, kind, tuple(sorted(values)), "",
                      flag(doc.get("immutable"), "immutable", d.fail), tuple(d.warnings),
                      values)
