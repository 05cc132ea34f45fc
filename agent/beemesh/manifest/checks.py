"""Checks shared by the Kubernetes walker and ``WorkloadSpec.from_dict``, and their errors.

Every check takes the field's path and a ``fail`` callback, so the same rule reports
"spec.template.spec.containers[0].ports[1].hostPort" for a manifest and
"containers[0].ports[1].host_port" for a spec from the wire, each as one line:
"<prefix> (<Kind> <name>): <path>: <problem>; <fix>".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, Protocol

from beemesh.errors import UserError


class _Port(Protocol):
    @property
    def host_port(self) -> int | None: ...

    @property
    def protocol(self) -> str: ...


class _Container(Protocol):
    """What the pod-wide rules read of a container (`model.ContainerSpec`)."""

    @property
    def name(self) -> str: ...

    @property
    def ports(self) -> Sequence[_Port]: ...

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP")
MAX_WORKLOAD_NAME = 53  # leaves room for "-<ordinal>" inside a 63-character pod name
MAX_LABEL = 63
MAX_INT = 2**63 - 1  # keeps every quantity a plain int64 in JSON and CBOR
MAX_REPLICAS = 10_000  # one machine's worth of tables per workload, whoever signs it
TEMPLATE_LEN = 10  # hex digits of `WorkloadSpec.template_hash`
# terminationGracePeriodSeconds: Beemesh's default when a manifest sets none (Kubernetes': 30),
# and the most a manifest may ask (a stop that never ends holds the replica's resources).
DEFAULT_GRACE_S = 10
MAX_GRACE_S = 3600
_MAX_INT32 = 2**31 - 1  # probe fields are int32 in Kubernetes

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+\Z")

Fail = Callable[[str | None, str, str], NoReturn]


class ManifestError(UserError):
    """A manifest, or a workload spec from the wire, that cannot be run as written."""


class Where:
    """Builds one-line errors: "<prefix> (<Kind> <name>): <path>: <problem>; <fix>"."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.kind: str | None = None
        self.name: str | None = None

    def fail(self, path: str | None, problem: str, fix: str) -> NoReturn:
        """Raise the ManifestError for the field at path (None: the document as a whole)."""
        where = self.prefix
        if self.kind and self.name:
            where += f" ({self.kind} {self.name})"
        elif self.kind:
            where += f" ({self.kind})"
        field = f"{path}: " if path else ""
        raise ManifestError(f"{where}: {field}{problem}; {fix}")


def describe(value: Any) -> str:
    """How a YAML value reads back to the user, for "got ..." in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def join(base: str, key: Any) -> str:
    """The path of key under base: base.key, or base["key"] when the key is not a plain word."""
    key = str(key)
    if not base:
        return key
    return f"{base}.{key}" if _SIMPLE_KEY.match(key) else f'{base}["{key}"]'


# ---------------------------------------------------------------------------------------------
# Checks


def dns_label(value: Any, path: str, what: str, max_len: int, fail: Fail) -> str:
    """A DNS label (RFC 1123) of at most max_len characters: names and namespaces."""
    fix = (
        f"use at most {max_len} lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )
    if not isinstance(value, str):
        fail(path, f"{what} must be a string, got {describe(value)}", fix)
    if not value:
        fail(path, f"{what} must not be empty", fix)
    if len(value) > max_len:
        fail(path, f"{what} {value!r} is longer than {max_len} characters", fix)
    if not _DNS_LABEL.match(value):
        fail(path, f"{value!r} is not a valid {what}", fix)
    return value


def label_map(value: Any, path: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    """Kubernetes label syntax for keys and values; strings only (quote 1, true, 1.0 in YAML)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        fail(path, f"must be a mapping of strings to strings, got {describe(value)}",
             "write it as key: value lines")
    items = []
    for key, val in value.items():
        key_path = join(path, key)
        if not isinstance(key, str):
            fail(key_path, f"key must be a string, got {describe(key)}", "quote the key")
        prefix, _, name = key.rpartition("/")
        if (
            not name or len(name) > MAX_LABEL or not _LABEL_VALUE.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
            or ("/" in key and not prefix)
        ):
            fail(key_path, f"{key!r} is not a valid label key",
                 "use an optional DNS prefix and '/' then at most 63 letters, digits, '-', '_' "
                 "or '.', starting and ending with a letter or digit")
        if not isinstance(val, str):
            shown = "" if val is None else str(val).lower() if isinstance(val, bool) else val
            fail(key_path, f"value must be a string, got {describe(val)}",
                 f'quote it: {key}: "{shown}"')
        if len(val) > MAX_LABEL or not _LABEL_VALUE.match(val):
            fail(key_path, f"{val!r} is not a valid label value",
                 "use at most 63 letters, digits, '-', '_' or '.', "
                 "starting and ending with a letter or digit")
        items.append((key, val))
    return tuple(sorted(items))


def port_number(value: Any, path: str, what: str, fail: Fail) -> int:
    """A port from 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        fail(path, f"{what} must be an integer from 1 to 65535, got {describe(value)}",
             "pick a port in that range")
    return value


def port_protocol(value: Any, path: str, fail: Fail) -> str:
    """TCP or UDP, spelled as Kubernetes spells them."""
    if value not in PROTOCOLS:
        fail(path, f"protocol must be TCP or UDP, got {describe(value)}", "use TCP or UDP")
    return value


def pod_restart_policy(value: Any, kind: str, path: str, fail: Fail) -> str:
    """Always, OnFailure or Never; only Always for a Deployment or StatefulSet."""
    if value not in RESTART_POLICIES:
        fail(path, f"restartPolicy must be Always, OnFailure or Never, got {describe(value)}",
             "use one of those")
    if kind != "Pod" and value != "Always":
        fail(path, f"restartPolicy {value} is not allowed for a {kind}",
             "use Always, or run it as a v1 Pod")
    return value


def probe_int(value: Any, path: str, minimum: int, fail: Fail) -> int:
    """A probe's seconds or count: an int32 like Kubernetes', so the prober never sees junk."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT32:
        fail(path, f"must be a whole number from {minimum} to {_MAX_INT32}, got {describe(value)}",
             "use a whole number, or remove it for the Kubernetes default")
    return value


def http_request_path(value: Any, path: str, fail: Fail) -> str:
    """The request target of an HTTP probe; whitespace would break the request line."""
    if not isinstance(value, str) or not value.startswith("/") or any(
        ch.isspace() or not ch.isprintable() for ch in value
    ):
        fail(path, f"must be a path starting with '/', got {describe(value)}",
             "use a path like /healthz (percent-encode spaces as %20)")
    return value


def http_header(name: Any, value: Any, name_path: str, value_path: str,
                fail: Fail) -> tuple[str, str]:
    """One probe header; a line break in it would smuggle extra headers into the request."""
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        fail(name_path, f"header name must be letters, digits and '-', got {describe(name)}",
             "use a name like X-Probe")
    if not isinstance(value, str) or any(ch in value for ch in "\r\n\0"):
        fail(value_path, f"header value must be a string on one line, got {describe(value)}",
             'quote it: value: "..."')
    return name, value


def env_name(value: Any, path: str, fail: Fail) -> str:
    """An environment variable name: non-empty, no '=' and no NUL."""
    if not isinstance(value, str) or not value or "=" in value or "\0" in value:
        fail(path, f"environment variable name must be a non-empty string without '=', "
             f"got {describe(value)}", "fix the name")
    return value


def check_success_threshold(success_threshold: int, which: str, path: str, fail: Fail) -> None:
    """Kubernetes allows more than one success only where it can mean something: readiness."""
    if which != "readiness" and success_threshold != 1:
        fail(path, f"must be 1 for a {which} probe, got {success_threshold}",
             "set it to 1 or remove it")


def check_limit(request: int, limit: int | None, path: str, what: str, show: Callable[[int], str],
                fail: Fail) -> None:
    """A limit, when set, must not be below the request; show formats both amounts."""
    if limit is not None and limit < request:
        fail(path, f"{what} limit {show(limit)} is lower than the request {show(request)}",
             "raise the limit or lower the request")


def check_pod(containers: Iterable[_Container], base: str, host_key: str,
              fail: Fail) -> None:
    """Pod-wide rules: unique container names, no hostPort claimed twice."""
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    for i, container in enumerate(containers):
        if container.name in names:
            fail(f"{base}containers[{i}].name", f"duplicate container name {container.name!r}",
                 "give each container a unique name")
        names.add(container.name)
        for j, port in enumerate(container.ports):
            if port.host_port is None:
                continue
            key = (port.host_port, port.protocol)
            if key in ports:
                fail(f"{base}containers[{i}].ports[{j}].{host_key}",
                     f"hostPort {port.host_port}/{port.protocol} is used twice in one pod",
                     "give each host port to one container only")
            ports.add(key)
