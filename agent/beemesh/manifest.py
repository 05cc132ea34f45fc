"""Kubernetes manifests -> WorkloadSpec: the subset beemesh can honour, checked up front.

Operators hand us ordinary Deployment, StatefulSet and Pod YAML. Every field is either used,
ignored with a warning (ignoring it cannot change what the workload sees), or rejected with an
error naming its full path: silently dropping, say, a volume would run a workload that is
quietly broken on some machine far away. WorkloadSpec is also what travels inside signed tasks,
so ``from_dict`` re-checks everything instead of trusting the wire.

An unsupported field set to its empty or "off" value (null, {}, [], "", false) changes nothing,
so it is accepted silently; this keeps ``kubectl create --dry-run -o yaml`` output usable.

Supported fields:

- apps/v1 Deployment and StatefulSet: ``spec.replicas``, ``spec.selector.matchLabels`` (must
  select the template's labels), ``spec.serviceName`` (StatefulSet), ``spec.template`` with
  ``metadata.labels``/``annotations``; v1 Pod: the pod spec directly under ``spec``.
- ``metadata``: ``name`` (at most 53 characters), ``namespace`` (default "default"), ``labels``,
  ``annotations``.
- Pod spec: ``containers``, ``nodeSelector``, ``restartPolicy`` (only Always for controllers).
- Container: ``name``, ``image``, ``command``, ``args``, ``env[]`` (``name`` and a literal
  ``value``), ``ports[]`` (``containerPort``, ``hostPort``, ``protocol`` TCP or UDP, ``name``),
  ``resources.requests``/``limits`` for ``cpu`` and ``memory`` (requests default to limits),
  and ``startupProbe``, ``readinessProbe``, ``livenessProbe``.
- Probe: exactly one handler, ``httpGet`` (``port``, ``path`` default "/", ``httpHeaders``,
  ``scheme`` HTTP only), ``tcpSocket`` (``port``) or ``exec`` (``command``); ``port`` is a
  number or the ``name`` of one of the same container's ports, resolved to its number here.
  Timing as in Kubernetes: ``initialDelaySeconds`` (0), ``periodSeconds`` (10),
  ``timeoutSeconds`` (1), ``successThreshold`` (1, and only 1 for liveness and startup probes),
  ``failureThreshold`` (3); absent or 0 means the default, as the Kubernetes API server
  defaults it. ``grpc``, ``host`` and HTTPS are refused: beemesh probes speak plain HTTP,
  TCP or exec against the pod's own IP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import yaml

from beemesh.errors import UserError

__all__ = [
    "ContainerSpec",
    "ManifestError",
    "PortSpec",
    "ProbeSpec",
    "WorkloadSpec",
    "load_manifest_file",
    "parse_manifests",
    "parse_quantity_cpu",
    "parse_quantity_memory",
]

KINDS = ("Deployment", "StatefulSet", "Pod")
_API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Pod": "v1"}
_SUPPORTED_TEXT = "apps/v1 Deployment, apps/v1 StatefulSet or v1 Pod"
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP")
MAX_WORKLOAD_NAME = 53  # leaves room for "-<ordinal>" inside a 63-character pod name
MAX_LABEL = 63
_MAX_INT = 2**63 - 1  # keeps every quantity a plain int64 in JSON and CBOR
_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
ARCH_LABEL = "kubernetes.io/arch"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_QUANTITY = re.compile(r"\+?(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>.*)\Z")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+\Z")
_MEMORY_SUFFIX = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}

# Fields ignored with a warning: ignoring them cannot change what the containers see.
_NOT_YET = "not applied by beemesh yet; ignored"
_READ_ONLY = "set by a Kubernetes cluster, meaningless here; ignored"
_META_READ_ONLY = dict.fromkeys(
    ("creationTimestamp", "uid", "resourceVersion", "generation", "managedFields", "selfLink"),
    _READ_ONLY,
)
_CONTROLLER_WARN = {
    "Deployment": dict.fromkeys(
        ("strategy", "revisionHistoryLimit", "minReadySeconds", "progressDeadlineSeconds"),
        _NOT_YET,
    ),
    "StatefulSet": dict.fromkeys(
        ("updateStrategy", "podManagementPolicy", "revisionHistoryLimit", "minReadySeconds",
         "persistentVolumeClaimRetentionPolicy"),
        _NOT_YET,
    ),
}
_CONTAINER_WARN = {"imagePullPolicy": _NOT_YET}
# Better fixes than "remove it" for fields people commonly reach for.
_UNSUPPORTED_FIX = {
    "valueFrom": "give the variable a literal value instead",
    "envFrom": "list each variable under env with a literal value instead",
    "volumes": "remove it (beemesh has no volumes yet)",
    "volumeMounts": "remove it (beemesh has no volumes yet)",
    "volumeClaimTemplates": "remove it (beemesh has no volumes yet)",
    "matchExpressions": "select with matchLabels instead",
    "grpc": "use httpGet, tcpSocket or exec instead",
    "host": "remove it (probes always connect to the pod's own IP)",
}
# Probes: (manifest field, ContainerSpec/wire field); wire fields are ProbeSpec's own names.
_PROBE_FIELDS = (("startupProbe", "startup"), ("readinessProbe", "readiness"),
                 ("livenessProbe", "liveness"))
_PROBE_HANDLERS = {"httpGet": "http", "tcpSocket": "tcp", "exec": "exec"}
# (manifest field, ProbeSpec field, Kubernetes default, minimum once defaulted)
_PROBE_TIMING = (
    ("initialDelaySeconds", "initial_delay_s", 0, 0),
    ("periodSeconds", "period_s", 10, 1),
    ("timeoutSeconds", "timeout_s", 1, 1),
    ("successThreshold", "success_threshold", 1, 1),
    ("failureThreshold", "failure_threshold", 3, 1),
)
_MAX_INT32 = 2**31 - 1  # probe fields are int32 in Kubernetes
_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+\Z")

Fail = Callable[[str | None, str, str], NoReturn]
_Pairs = tuple[tuple[str, str], ...]


class ManifestError(UserError):
    """A manifest, or a workload spec from the wire, that cannot be run as written."""


@dataclass(frozen=True)
class PortSpec:
    """One container port; host_port set means the pod needs that port free on its machine."""

    container_port: int
    host_port: int | None
    protocol: str  # "TCP" | "UDP"
    name: str | None


@dataclass(frozen=True)
class ProbeSpec:
    """One Kubernetes probe (startup, readiness or liveness), as the kubelet runs it.

    action is "http" (httpGet), "tcp" (tcpSocket) or "exec"; a named port is resolved to its
    number at parse time, so the prober never needs the container's port list. Timing values
    are already defaulted; fields the action does not use keep their defaults, so two equal
    probes compare equal.
    """

    action: str  # "http" | "tcp" | "exec"
    port: int | None = None  # http, tcp: the container port to connect to
    path: str = "/"  # http: request path
    headers: tuple[tuple[str, str], ...] = ()  # http: extra request headers
    command: tuple[str, ...] = ()  # exec: argv run inside the container
    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class ContainerSpec:
    """One container; requests default to limits, as Kubernetes does, then to zero."""

    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    ports: tuple[PortSpec, ...]
    cpu_request_milli: int
    memory_request_bytes: int
    cpu_limit_milli: int | None
    memory_limit_bytes: int | None
    startup: ProbeSpec | None = None
    readiness: ProbeSpec | None = None
    liveness: ProbeSpec | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    """A validated workload: everything the scheduler and runtime need, nothing they ignore."""

    kind: str  # "Deployment" | "StatefulSet" | "Pod"
    name: str
    namespace: str
    replicas: int
    labels: tuple[tuple[str, str], ...]  # sorted by key
    node_selector: tuple[tuple[str, str], ...]  # sorted by key
    containers: tuple[ContainerSpec, ...]
    restart_policy: str
    warnings: tuple[str, ...]

    @property
    def workload_id(self) -> str:
        """Unique across a fleet: the same name may exist in two namespaces or as two kinds."""
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"

    @property
    def arch(self) -> str | None:
        """Required machine architecture in the agent's naming (platform.machine), if any."""
        value = dict(self.node_selector).get(ARCH_LABEL)
        if value is None:
            return None
        return _ARCH.get(value, value)

    def requests(self) -> tuple[int, int]:
        """(cpu_milli, memory_bytes) one replica reserves on its machine."""
        return (
            sum(c.cpu_request_milli for c in self.containers),
            sum(c.memory_request_bytes for c in self.containers),
        )

    def host_ports(self) -> list[tuple[int, str]]:
        """(host_port, protocol) pairs one replica occupies on its machine."""
        return [
            (p.host_port, p.protocol)
            for c in self.containers
            for p in c.ports
            if p.host_port is not None
        ]

    def pod_name(self, ordinal: int) -> str:
        """Replica name; a DNS label because name <= 53 characters leaves room for the ordinal."""
        if isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal < 0:
            raise ValueError(f"ordinal must be a non-negative integer, got {ordinal!r}")
        return f"{self.name}-{ordinal}"

    def to_dict(self) -> dict[str, Any]:
        """Plain str/int/None/list/dict data so it encodes as JSON or CBOR unchanged."""
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "replicas": self.replicas,
            "labels": dict(self.labels),
            "node_selector": dict(self.node_selector),
            "containers": [_container_to_dict(c) for c in self.containers],
            "restart_policy": self.restart_policy,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkloadSpec:
        """Rebuild from ``to_dict`` output, re-validating: it arrives over the network."""
        return _spec_from_dict(d)


# ---------------------------------------------------------------------------------------------
# Error reporting


class _Where:
    """Builds one-line errors: "<prefix> (<Kind> <name>): <path>: <problem>; <fix>"."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.kind: str | None = None
        self.name: str | None = None

    def fail(self, path: str | None, problem: str, fix: str) -> NoReturn:
        where = self.prefix
        if self.kind and self.name:
            where += f" ({self.kind} {self.name})"
        elif self.kind:
            where += f" ({self.kind})"
        field = f"{path}: " if path else ""
        raise ManifestError(f"{where}: {field}{problem}; {fix}")


def _describe(value: Any) -> str:
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


def _join(base: str, key: Any) -> str:
    key = str(key)
    if not base:
        return key
    return f"{base}.{key}" if _SIMPLE_KEY.match(key) else f'{base}["{key}"]'


def _is_empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


# ---------------------------------------------------------------------------------------------
# Quantities


def _number(value: Any, path: str, what: str, fix: str, fail: Fail) -> tuple[Decimal, str]:
    """Split a Kubernetes quantity into (number, suffix); shared by cpu and memory."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        fail(path, f"{what} must be a quantity, got {_describe(value)}", fix)
    if isinstance(value, float) and not math.isfinite(value):
        fail(path, f"{what} {value} is not a quantity", fix)
    if isinstance(value, int | float):
        if value < 0:
            fail(path, f"{what} must not be negative, got {value}", fix)
        return Decimal(repr(value)), ""
    match = _QUANTITY.match(value)
    if match is None:
        if value.strip().startswith("-"):
            fail(path, f"{what} must not be negative, got {value!r}", fix)
        fail(path, f"{what} {value!r} is not a quantity", fix)
    return Decimal(match["num"]), match["suffix"]


def _scale(number: Decimal, factor: int, path: str, what: str, shown: Any, fix: str,
           fail: Fail) -> int:
    """number * factor rounded up to an int, refusing anything beyond int64."""
    try:
        if number > _MAX_INT:
            raise OverflowError
        result = (number * factor).to_integral_value(rounding=ROUND_CEILING)
        if result > _MAX_INT:
            raise OverflowError
    except (ArithmeticError, InvalidOperation):
        fail(path, f"{what} {shown!r} is too large", fix)
    return int(result)


def _apply_exponent(number: Decimal, suffix: str) -> tuple[Decimal, str]:
    """Fold a decimal exponent ("1e3") into the number; clamped so huge ones just overflow."""
    if _EXPONENT.match(suffix):
        return number.scaleb(max(-100, min(100, int(suffix[1:])))), ""
    return number, suffix


def _cpu(value: Any, path: str, fail: Fail) -> int:
    fix = "use cores like 1.5 or millicores like 500m"
    number, suffix = _apply_exponent(*_number(value, path, "cpu", fix, fail))
    if suffix == "m":
        return _scale(number, 1, path, "cpu", value, fix, fail)
    if suffix == "":
        return _scale(number, 1000, path, "cpu", value, fix, fail)
    fail(path, f"cpu {value!r} is not a quantity", fix)


def _memory(value: Any, path: str, fail: Fail) -> int:
    fix = "use bytes with a suffix like 64Mi, 1Gi or 128M"
    number, suffix = _apply_exponent(*_number(value, path, "memory", fix, fail))
    if suffix == "m":
        fail(path, f"memory {value!r} means milli-bytes", f"did you mean {value[:-1]}Mi?")
    factor = _MEMORY_SUFFIX.get(suffix)
    if factor is None:
        fail(path, f"memory {value!r} is not a quantity", fix)
    return _scale(number, factor, path, "memory", value, fix, fail)


def _plain_fail(path: str | None, problem: str, fix: str) -> NoReturn:
    raise ManifestError(f"{path}: {problem}; {fix}" if path else f"{problem}; {fix}")


def parse_quantity_cpu(value: str | int | float, path: str) -> int:
    """CPU quantity in millicores, rounded up: "500m" -> 500, "1" -> 1000, 0.5 -> 500."""
    return _cpu(value, path, _plain_fail)


def parse_quantity_memory(value: str | int, path: str) -> int:
    """Memory quantity in bytes, rounded up: "64Mi", "1Gi", "128M", "1e3", "512Ki", "1k"."""
    return _memory(value, path, _plain_fail)


# ---------------------------------------------------------------------------------------------
# Shared checks (manifest parsing and from_dict)


def _dns_label(value: Any, path: str, what: str, max_len: int, fail: Fail) -> str:
    fix = (
        f"use at most {max_len} lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )
    if not isinstance(value, str):
        fail(path, f"{what} must be a string, got {_describe(value)}", fix)
    if not value:
        fail(path, f"{what} must not be empty", fix)
    if len(value) > max_len:
        fail(path, f"{what} {value!r} is longer than {max_len} characters", fix)
    if not _DNS_LABEL.match(value):
        fail(path, f"{value!r} is not a valid {what}", fix)
    return value


def _label_map(value: Any, path: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    """Kubernetes label syntax for keys and values; strings only (quote 1, true, 1.0 in YAML)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        fail(path, f"must be a mapping of strings to strings, got {_describe(value)}",
             "write it as key: value lines")
    items = []
    for key, val in value.items():
        key_path = _join(path, key)
        if not isinstance(key, str):
            fail(key_path, f"key must be a string, got {_describe(key)}", "quote the key")
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
            fail(key_path, f"value must be a string, got {_describe(val)}",
                 f'quote it: {key}: "{shown}"')
        if len(val) > MAX_LABEL or not _LABEL_VALUE.match(val):
            fail(key_path, f"{val!r} is not a valid label value",
                 "use at most 63 letters, digits, '-', '_' or '.', "
                 "starting and ending with a letter or digit")
        items.append((key, val))
    return tuple(sorted(items))


def _port_number(value: Any, path: str, what: str, fail: Fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        fail(path, f"{what} must be an integer from 1 to 65535, got {_describe(value)}",
             "pick a port in that range")
    return value


def _protocol(value: Any, path: str, fail: Fail) -> str:
    if value not in PROTOCOLS:
        fail(path, f"protocol must be TCP or UDP, got {_describe(value)}", "use TCP or UDP")
    return value


def _restart_policy(value: Any, kind: str, path: str, fail: Fail) -> str:
    if value not in RESTART_POLICIES:
        fail(path, f"restartPolicy must be Always, OnFailure or Never, got {_describe(value)}",
             "use one of those")
    if kind != "Pod" and value != "Always":
        fail(path, f"restartPolicy {value} is not allowed for a {kind}",
             "use Always, or run it as a v1 Pod")
    return value


def _probe_int(value: Any, path: str, minimum: int, fail: Fail) -> int:
    """A probe's seconds or count: an int32 like Kubernetes', so the prober never sees junk."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT32:
        fail(path, f"must be a whole number from {minimum} to {_MAX_INT32}, got {_describe(value)}",
             "use a whole number, or remove it for the Kubernetes default")
    return value


def _http_path(value: Any, path: str, fail: Fail) -> str:
    """The request target of an HTTP probe; whitespace would break the request line."""
    if not isinstance(value, str) or not value.startswith("/") or any(
        ch.isspace() or not ch.isprintable() for ch in value
    ):
        fail(path, f"must be a path starting with '/', got {_describe(value)}",
             "use a path like /healthz (percent-encode spaces as %20)")
    return value


def _http_header(name: Any, value: Any, name_path: str, value_path: str,
                 fail: Fail) -> tuple[str, str]:
    """One probe header; a line break in it would smuggle extra headers into the request."""
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        fail(name_path, f"header name must be letters, digits and '-', got {_describe(name)}",
             "use a name like X-Probe")
    if not isinstance(value, str) or any(ch in value for ch in "\r\n\0"):
        fail(value_path, f"header value must be a string on one line, got {_describe(value)}",
             'quote it: value: "..."')
    return name, value


def _check_success_threshold(probe: ProbeSpec, which: str, path: str, fail: Fail) -> None:
    """Kubernetes allows more than one success only where it can mean something: readiness."""
    if which != "readiness" and probe.success_threshold != 1:
        fail(path, f"must be 1 for a {which} probe, got {probe.success_threshold}",
             "set it to 1 or remove it")


def _check_limit(request: int, limit: int | None, path: str, what: str, show: Callable[[int], str],
                 fail: Fail) -> None:
    if limit is not None and limit < request:
        fail(path, f"{what} limit {show(limit)} is lower than the request {show(request)}",
             "raise the limit or lower the request")


def _show_cpu(milli: int) -> str:
    return f"{milli}m"


def _show_memory(size: int) -> str:
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = _MEMORY_SUFFIX[suffix]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def _check_pod(containers: Iterable[ContainerSpec], base: str, host_key: str,
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


# ---------------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML would silently let the last win."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it properly
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _load_documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        fix = ("keep only one of them" if "duplicate key" in problem
               else "fix the syntax (indentation, quoting, colons)")
        raise ManifestError(f"{where}: invalid YAML: {problem}; {fix}") from None


# ---------------------------------------------------------------------------------------------
# Manifest parsing


def parse_manifests(text: str, source: str = "<manifest>") -> list[WorkloadSpec]:
    """Parse single- or multi-document YAML; empty documents are skipped, so [] is possible."""
    specs: list[WorkloadSpec] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for number, doc in enumerate(_load_documents(text, source), start=1):
        if doc is None:
            continue
        where = _Where(f"{source}: document {number}")
        spec = _parse_document(doc, where)
        key = (spec.kind, spec.namespace, spec.name)
        if key in first_seen:
            where.fail("metadata.name",
                       f"duplicate {spec.kind} {spec.namespace}/{spec.name} "
                       f"(also document {first_seen[key]})",
                       "give each workload a unique name")
        first_seen[key] = number
        specs.append(spec)
    return specs


def load_manifest_file(path: Path) -> list[WorkloadSpec]:
    """Read and parse a manifest file; any read problem becomes a ManifestError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file; check the path") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text; save the manifest as UTF-8") from None
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read manifest: {exc.strerror or exc}; check the path and permissions"
        ) from None
    return parse_manifests(text, str(path))


class _Doc:
    """State while parsing one document: where errors point, warnings collected so far."""

    def __init__(self, where: _Where) -> None:
        self.where = where
        self.fail: Fail = where.fail
        self.warnings: list[str] = []

    def mapping(self, value: Any, path: str, *, required: bool = False) -> dict[Any, Any]:
        if value is None:
            if required:
                self.fail(path, "missing", f"add {path}")
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {_describe(value)}", "check the indentation")
        return value

    def check_fields(self, obj: dict[Any, Any], path: str, allowed: Iterable[str],
                     warn: dict[str, str] | None = None) -> None:
        """Reject unknown fields by full path; collect warnings for the safely ignored ones."""
        allowed = set(allowed)
        for key, value in obj.items():
            if key in allowed:
                continue
            field = _join(path, key)
            if warn and key in warn:
                if not _is_empty(value):
                    self.warnings.append(f"{field}: {warn[key]}")
                continue
            if _is_empty(value):
                continue
            self.fail(field, "not supported by beemesh",
                      _UNSUPPORTED_FIX.get(str(key), "remove it"))

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, f"must be a list of strings, got {_describe(value)}",
                      'write it as ["a", "b"] or one "- item" per line')
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{path}[{i}]", f"must be a string, got {_describe(item)}",
                          "quote it")
        return tuple(value)


def _parse_document(doc: Any, where: _Where) -> WorkloadSpec:
    if not isinstance(doc, dict):
        fix = ("put each object in its own document, separated by '---'"
               if isinstance(doc, list) else "check the indentation")
        where.fail(None, "expected a Kubernetes object (a mapping with apiVersion, kind, metadata "
                   f"and spec), got {_describe(doc)}", fix)
    d = _Doc(where)
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind is None:
        d.fail("kind", "missing", f"set apiVersion and kind to one of {_SUPPORTED_TEXT}")
    if not isinstance(kind, str) or kind not in _API_VERSIONS:
        shown = f"{api_version} {kind}" if isinstance(api_version, str) else _describe(kind)
        d.fail("kind", f"{shown} is not supported", f"use {_SUPPORTED_TEXT}")
    where.kind = kind
    if api_version is None:
        d.fail("apiVersion", "missing", f"add apiVersion: {_API_VERSIONS[kind]}")
    if api_version != _API_VERSIONS[kind]:
        shown = f"{api_version} {kind}" if isinstance(api_version, str) else _describe(api_version)
        d.fail("apiVersion", f"{shown} is not supported",
               f"use apiVersion: {_API_VERSIONS[kind]} (supported: {_SUPPORTED_TEXT})")

    meta = d.mapping(doc.get("metadata"), "metadata", required=True)
    name = _dns_label(meta.get("name"), "metadata.name", "name", MAX_WORKLOAD_NAME, d.fail)
    where.name = name
    d.check_fields(doc, "", ("apiVersion", "kind", "metadata", "spec"), {"status": _READ_ONLY})
    d.check_fields(meta, "metadata", ("name", "namespace", "labels", "annotations"),
                   _META_READ_ONLY)
    namespace = meta.get("namespace")
    namespace = "default" if namespace is None else _dns_label(
        namespace, "metadata.namespace", "namespace", MAX_LABEL, d.fail)
    labels = _label_map(meta.get("labels"), "metadata.labels", d.fail)
    spec = d.mapping(doc.get("spec"), "spec", required=True)

    if kind == "Pod":
        replicas, pod_base = 1, "spec"
        pod = spec
    else:
        allowed = ["replicas", "selector", "template"]
        if kind == "StatefulSet":
            allowed.append("serviceName")
            service = spec.get("serviceName", "")
            if not isinstance(service, str):
                d.fail("spec.serviceName", f"must be a string, got {_describe(service)}",
                       "quote it")
        d.check_fields(spec, "spec", allowed, _CONTROLLER_WARN[kind])
        replicas = spec.get("replicas", 1)
        replicas = 1 if replicas is None else replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            d.fail("spec.replicas", f"must be a non-negative integer, got {_describe(replicas)}",
                   "use a whole number like 3")
        template = d.mapping(spec.get("template"), "spec.template", required=True)
        d.check_fields(template, "spec.template", ("metadata", "spec"))
        tmeta = d.mapping(template.get("metadata"), "spec.template.metadata")
        d.check_fields(tmeta, "spec.template.metadata", ("labels", "annotations"),
                       {**_META_READ_ONLY, "name": "pods are named after the workload; ignored"})
        labels = _label_map(tmeta.get("labels"), "spec.template.metadata.labels", d.fail)
        _check_selector(d, spec.get("selector"), dict(labels))
        pod_base = "spec.template.spec"
        pod = d.mapping(template.get("spec"), pod_base, required=True)

    containers, node_selector, restart_policy = _parse_pod_spec(d, pod, pod_base, kind)
    return WorkloadSpec(
        kind=kind, name=name, namespace=namespace, replicas=replicas, labels=labels,
        node_selector=node_selector, containers=containers, restart_policy=restart_policy,
        warnings=tuple(d.warnings),
    )


def _check_selector(d: _Doc, selector: Any, template_labels: dict[str, str]) -> None:
    """The selector must pick the template's own pods, or Kubernetes would reject it too."""
    if selector is None:
        return
    selector = d.mapping(selector, "spec.selector")
    d.check_fields(selector, "spec.selector", ("matchLabels",))
    match = _label_map(selector.get("matchLabels"), "spec.selector.matchLabels", d.fail)
    if not match:
        d.fail("spec.selector.matchLabels", "must not be empty",
               "select the pod template's labels, e.g. app: <name>")
    for key, value in match:
        if template_labels.get(key) != value:
            d.fail(_join("spec.selector.matchLabels", key),
                   f"selects {key}={value} but spec.template.metadata.labels does not have it",
                   f"add {key}: {value} to spec.template.metadata.labels or fix the selector")


def _parse_pod_spec(d: _Doc, pod: dict[Any, Any], base: str,
                    kind: str) -> tuple[tuple[ContainerSpec, ...], _Pairs, str]:
    d.check_fields(pod, base, ("containers", "nodeSelector", "restartPolicy"),
                   {"terminationGracePeriodSeconds": _NOT_YET})
    node_selector = _label_map(pod.get("nodeSelector"), f"{base}.nodeSelector", d.fail)
    restart = pod.get("restartPolicy")
    restart_policy = "Always" if restart is None else _restart_policy(
        restart, kind, f"{base}.restartPolicy", d.fail)
    raw = pod.get("containers")
    if not isinstance(raw, list) or not raw:
        shown = ("missing" if raw is None else "must not be empty" if raw == []
                 else f"must be a list, got {_describe(raw)}")
        d.fail(f"{base}.containers", shown, "list at least one container with a name and image")
    containers = tuple(
        _parse_container(d, item, f"{base}.containers[{i}]") for i, item in enumerate(raw)
    )
    _check_pod(containers, f"{base}.", "hostPort", d.fail)
    return containers, node_selector, restart_policy


def _parse_container(d: _Doc, raw: Any, path: str) -> ContainerSpec:
    c = d.mapping(raw, path, required=True)
    d.check_fields(c, path, ("name", "image", "command", "args", "env", "ports", "resources",
                             *(key for key, _ in _PROBE_FIELDS)), _CONTAINER_WARN)
    name = _dns_label(c.get("name"), f"{path}.name", "container name", MAX_LABEL, d.fail)
    image = c.get("image")
    image_fix = "set it to an image reference like docker.io/library/nginx:1.27"
    if image is None:
        d.fail(f"{path}.image", "missing", image_fix)
    if not isinstance(image, str):
        d.fail(f"{path}.image", f"must be a string, got {_describe(image)}", image_fix)
    if not image.strip():
        d.fail(f"{path}.image", "must not be empty", image_fix)
    if image != image.strip() or any(ch.isspace() for ch in image):
        d.fail(f"{path}.image", f"{image!r} contains whitespace", "remove the spaces")

    env = _parse_env(d, c.get("env"), f"{path}.env")
    raw_ports = c.get("ports")
    if raw_ports is not None and not isinstance(raw_ports, list):
        d.fail(f"{path}.ports", f"must be a list, got {_describe(raw_ports)}",
               "write one '- containerPort: N' entry per port")
    ports = tuple(
        _parse_port(d, item, f"{path}.ports[{i}]") for i, item in enumerate(raw_ports or ())
    )

    res_path = f"{path}.resources"
    resources = d.mapping(c.get("resources"), res_path)
    d.check_fields(resources, res_path, ("requests", "limits"))
    amounts: dict[str, dict[str, int]] = {}
    for section in ("requests", "limits"):
        sec_path = f"{res_path}.{section}"
        sec = d.mapping(resources.get(section), sec_path)
        for key in sec:
            if key not in ("cpu", "memory"):
                d.fail(_join(sec_path, key), "not supported by beemesh",
                       "remove it (only cpu and memory can be requested)")
        amounts[section] = {}
        if sec.get("cpu") is not None:
            amounts[section]["cpu"] = _cpu(sec["cpu"], f"{sec_path}.cpu", d.fail)
        if sec.get("memory") is not None:
            amounts[section]["memory"] = _memory(sec["memory"], f"{sec_path}.memory", d.fail)
    requests, limits = amounts["requests"], amounts["limits"]
    cpu_limit, mem_limit = limits.get("cpu"), limits.get("memory")
    cpu_request = requests.get("cpu", cpu_limit or 0)
    mem_request = requests.get("memory", mem_limit or 0)
    _check_limit(cpu_request, cpu_limit, f"{res_path}.limits.cpu", "cpu", _show_cpu, d.fail)
    _check_limit(mem_request, mem_limit, f"{res_path}.limits.memory", "memory", _show_memory,
                 d.fail)
    probes = {
        which: _parse_probe(d, c.get(key), f"{path}.{key}", which, ports)
        for key, which in _PROBE_FIELDS
    }
    return ContainerSpec(
        name=name, image=image,
        command=d.strings(c.get("command"), f"{path}.command"),
        args=d.strings(c.get("args"), f"{path}.args"),
        env=env, ports=ports,
        cpu_request_milli=cpu_request, memory_request_bytes=mem_request,
        cpu_limit_milli=cpu_limit, memory_limit_bytes=mem_limit,
        startup=probes["startup"], readiness=probes["readiness"], liveness=probes["liveness"],
    )


def _parse_probe(d: _Doc, raw: Any, path: str, which: str,
                 ports: tuple[PortSpec, ...]) -> ProbeSpec | None:
    """One probe with Kubernetes defaults applied; 0 means "default" there too."""
    if raw is None:
        return None
    p = d.mapping(raw, path)
    d.check_fields(p, path, (*_PROBE_HANDLERS, *(key for key, *_ in _PROBE_TIMING)),
                   {"terminationGracePeriodSeconds": _NOT_YET})
    handlers = [key for key in _PROBE_HANDLERS if p.get(key) is not None]
    if len(handlers) != 1:
        problem = ("has no handler" if not handlers
                   else f"sets both {handlers[0]} and {handlers[1]}")
        d.fail(path, problem, "give it exactly one of httpGet, tcpSocket or exec")
    handler = handlers[0]
    h_path = f"{path}.{handler}"
    h = d.mapping(p[handler], h_path)
    port, http_path, headers, command = None, "/", (), ()
    if handler == "exec":
        d.check_fields(h, h_path, ("command",))
        command = d.strings(h.get("command"), f"{h_path}.command")
        if not command:
            d.fail(f"{h_path}.command", "must list the program to run",
                   'write it as ["cat", "/tmp/healthy"]; it passes when the program exits 0')
    else:
        d.check_fields(h, h_path, ("port", "path", "httpHeaders", "scheme")
                       if handler == "httpGet" else ("port",))
        port = _probe_port(d, h.get("port"), f"{h_path}.port", ports)
    if handler == "httpGet":
        if h.get("path") not in (None, ""):  # the API server defaults an empty path to "/"
            http_path = _http_path(h["path"], f"{h_path}.path", d.fail)
        headers = _parse_headers(d, h.get("httpHeaders"), f"{h_path}.httpHeaders")
        scheme = h.get("scheme")
        if scheme == "HTTPS":
            d.fail(f"{h_path}.scheme", "HTTPS probes are not supported (beemesh would not "
                   "verify the certificate)", "probe a plain HTTP port, or use tcpSocket")
        if scheme not in (None, "HTTP"):
            d.fail(f"{h_path}.scheme", f"must be HTTP, got {_describe(scheme)}", "use HTTP")
    timing: dict[str, int] = {}
    for key, attr, default, _ in _PROBE_TIMING:
        value = p.get(key)
        timing[attr] = default if value is None else (
            _probe_int(value, f"{path}.{key}", 0, d.fail) or default)
    probe = ProbeSpec(action=_PROBE_HANDLERS[handler], port=port, path=http_path,
                      headers=headers, command=command, **timing)
    _check_success_threshold(probe, which, f"{path}.successThreshold", d.fail)
    return probe


def _probe_port(d: _Doc, value: Any, path: str, ports: tuple[PortSpec, ...]) -> int:
    """A port number, or a name looked up in the same container's ports, as Kubernetes does."""
    if value is None:
        d.fail(path, "missing", "set the container port to probe, as a number or a port name")
    if isinstance(value, str):
        for port in ports:
            if port.name == value:
                return port.container_port
        names = [port.name for port in ports if port.name]
        fix = (f"write the number without quotes: port: {value}" if value.isdigit()
               else f"use a number or one of this container's port names: {', '.join(names)}"
               if names else "use a number, or name the port under this container's ports")
        d.fail(path, f"no port named {value!r} in this container", fix)
    return _port_number(value, path, "port", d.fail)


def _parse_headers(d: _Doc, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        d.fail(path, f"must be a list, got {_describe(raw)}",
               "write one '- name: X' / 'value: \"...\"' entry per header")
    headers = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        entry = d.mapping(item, item_path, required=True)
        d.check_fields(entry, item_path, ("name", "value"))
        headers.append(_http_header(entry.get("name"), entry.get("value"), f"{item_path}.name",
                                    f"{item_path}.value", d.fail))
    return tuple(headers)


def _env_name(value: Any, path: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value or "=" in value or "\0" in value:
        fail(path, f"environment variable name must be a non-empty string without '=', "
             f"got {_describe(value)}", "fix the name")
    return value


def _parse_env(d: _Doc, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        d.fail(path, f"must be a list, got {_describe(raw)}",
               "write one '- name: X' / 'value: \"...\"' entry per variable")
    env = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        entry = d.mapping(item, item_path, required=True)
        if "valueFrom" in entry:
            d.fail(f"{item_path}.valueFrom", "not supported by beemesh",
                   _UNSUPPORTED_FIX["valueFrom"])
        d.check_fields(entry, item_path, ("name", "value"))
        name = _env_name(entry.get("name"), f"{item_path}.name", d.fail)
        value = entry.get("value")
        value = "" if value is None else value
        if not isinstance(value, str):
            shown = str(value).lower() if isinstance(value, bool) else value
            d.fail(f"{item_path}.value", f"must be a string, got {_describe(value)}",
                   f'quote it: value: "{shown}"')
        env.append((name, value))
    return tuple(env)


def _parse_port(d: _Doc, raw: Any, path: str) -> PortSpec:
    port = d.mapping(raw, path, required=True)
    d.check_fields(port, path, ("containerPort", "hostPort", "protocol", "name"))
    if port.get("containerPort") is None:
        d.fail(f"{path}.containerPort", "missing", "add the port the container listens on")
    container_port = _port_number(port["containerPort"], f"{path}.containerPort",
                                  "containerPort", d.fail)
    host = port.get("hostPort")
    host_port = None
    if host is not None and not (host == 0 and isinstance(host, int)):  # 0: unset, as in k8s
        host_port = _port_number(host, f"{path}.hostPort", "hostPort", d.fail)
    protocol = port.get("protocol")
    protocol = "TCP" if protocol is None else _protocol(protocol, f"{path}.protocol", d.fail)
    name = port.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        d.fail(f"{path}.name", f"must be a non-empty string, got {_describe(name)}",
               "quote it or remove it")
    return PortSpec(container_port=container_port, host_port=host_port, protocol=protocol,
                    name=name)


# ---------------------------------------------------------------------------------------------
# to_dict / from_dict


def _container_to_dict(c: ContainerSpec) -> dict[str, Any]:
    return {
        "name": c.name,
        "image": c.image,
        "command": list(c.command),
        "args": list(c.args),
        "env": [[name, value] for name, value in c.env],
        "ports": [
            {"container_port": p.container_port, "host_port": p.host_port,
             "protocol": p.protocol, "name": p.name}
            for p in c.ports
        ],
        "cpu_request_milli": c.cpu_request_milli,
        "memory_request_bytes": c.memory_request_bytes,
        "cpu_limit_milli": c.cpu_limit_milli,
        "memory_limit_bytes": c.memory_limit_bytes,
        **{which: _probe_to_dict(getattr(c, which)) for _, which in _PROBE_FIELDS},
    }


def _probe_to_dict(p: ProbeSpec | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "action": p.action,
        "port": p.port,
        "path": p.path,
        "headers": [[name, value] for name, value in p.headers],
        "command": list(p.command),
        **{attr: getattr(p, attr) for _, attr, _, _ in _PROBE_TIMING},
    }


class _Fields:
    """Typed access to one wire mapping: exact key set, each value's type checked by path."""

    def __init__(self, value: Any, path: str, keys: tuple[str, ...], fail: Fail) -> None:
        self.path, self.fail = path, fail
        if not isinstance(value, dict):
            fail(path or None, f"expected a mapping, got {_describe(value)}",
                 "send WorkloadSpec.to_dict() output")
        extra = sorted(str(k) for k in value if k not in keys)
        missing = [k for k in keys if k not in value]
        if extra:
            fail(_join(path, extra[0]), "unexpected field", "send WorkloadSpec.to_dict() output")
        if missing:
            fail(_join(path, missing[0]), "missing", "send WorkloadSpec.to_dict() output")
        self.value = value

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def text(self, key: str, *, optional: bool = False) -> Any:
        value = self.value[key]
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(self.at(key), f"expected a string, got {_describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def integer(self, key: str, *, optional: bool = False) -> Any:
        value = self.value[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
            self.fail(self.at(key), f"expected a non-negative integer, got {_describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.value[key]
        if not isinstance(value, list):
            self.fail(self.at(key), f"expected a list, got {_describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.items(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"{self.at(key)}[{i}]", f"expected a string, got {_describe(item)}",
                          "send WorkloadSpec.to_dict() output")
        return tuple(items)


_SPEC_KEYS = ("kind", "name", "namespace", "replicas", "labels", "node_selector", "containers",
              "restart_policy", "warnings")
_CONTAINER_KEYS = ("name", "image", "command", "args", "env", "ports", "cpu_request_milli",
                   "memory_request_bytes", "cpu_limit_milli", "memory_limit_bytes",
                   *(which for _, which in _PROBE_FIELDS))
_PORT_KEYS = ("container_port", "host_port", "protocol", "name")
_PROBE_KEYS = ("action", "port", "path", "headers", "command",
               *(attr for _, attr, _, _ in _PROBE_TIMING))
# The fields each action does not use; they must hold ProbeSpec's defaults.
_PROBE_UNUSED = {"http": ("command",), "tcp": ("path", "headers", "command"),
                 "exec": ("port", "path", "headers")}


def _spec_from_dict(d: Any) -> WorkloadSpec:
    where = _Where("workload spec")
    fail = where.fail
    f = _Fields(d, "", _SPEC_KEYS, fail)
    kind = f.text("kind")
    if kind not in KINDS:
        fail("kind", f"{kind!r} is not a supported kind", f"use {', '.join(KINDS)}")
    where.kind = kind
    name = _dns_label(f.text("name"), "name", "name", MAX_WORKLOAD_NAME, fail)
    where.name = name
    namespace = _dns_label(f.text("namespace"), "namespace", "namespace", MAX_LABEL, fail)
    replicas = f.integer("replicas")
    if kind == "Pod" and replicas != 1:
        fail("replicas", f"a Pod has exactly 1 replica, got {replicas}", "send replicas: 1")
    raw_containers = f.items("containers")
    if not raw_containers:
        fail("containers", "must not be empty", "send at least one container")
    containers = tuple(
        _container_from_dict(item, f"containers[{i}]", fail)
        for i, item in enumerate(raw_containers)
    )
    _check_pod(containers, "", "host_port", fail)
    return WorkloadSpec(
        kind=kind, name=name, namespace=namespace, replicas=replicas,
        labels=_label_map(d["labels"], "labels", fail),
        node_selector=_label_map(d["node_selector"], "node_selector", fail),
        containers=containers,
        restart_policy=_restart_policy(d["restart_policy"], kind, "restart_policy", fail),
        warnings=f.strings("warnings"),
    )


def _container_from_dict(raw: Any, path: str, fail: Fail) -> ContainerSpec:
    f = _Fields(raw, path, _CONTAINER_KEYS, fail)
    name = _dns_label(f.text("name"), f.at("name"), "container name", MAX_LABEL, fail)
    image = f.text("image")
    if not image or any(ch.isspace() for ch in image):
        fail(f.at("image"), f"{image!r} is not an image reference", "send a non-empty image")
    env = []
    for i, pair in enumerate(f.items("env")):
        pair_path = f"{f.at('env')}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            fail(pair_path, f"expected a [name, value] pair of strings, got {_describe(pair)}",
                 "send WorkloadSpec.to_dict() output")
        env.append((_env_name(pair[0], pair_path, fail), pair[1]))
    ports = []
    for i, item in enumerate(f.items("ports")):
        p = _Fields(item, f"{f.at('ports')}[{i}]", _PORT_KEYS, fail)
        host = p.value["host_port"]
        ports.append(PortSpec(
            container_port=_port_number(p.value["container_port"], p.at("container_port"),
                                        "container_port", fail),
            host_port=None if host is None else _port_number(host, p.at("host_port"),
                                                             "host_port", fail),
            protocol=_protocol(p.value["protocol"], p.at("protocol"), fail),
            name=p.text("name", optional=True),
        ))
    probes = {which: _probe_from_dict(f.value[which], f.at(which), which, fail)
              for _, which in _PROBE_FIELDS}
    spec = ContainerSpec(
        name=name, image=image, command=f.strings("command"), args=f.strings("args"),
        env=tuple(env), ports=tuple(ports),
        cpu_request_milli=f.integer("cpu_request_milli"),
        memory_request_bytes=f.integer("memory_request_bytes"),
        cpu_limit_milli=f.integer("cpu_limit_milli", optional=True),
        memory_limit_bytes=f.integer("memory_limit_bytes", optional=True),
        startup=probes["startup"], readiness=probes["readiness"], liveness=probes["liveness"],
    )
    _check_limit(spec.cpu_request_milli, spec.cpu_limit_milli, f.at("cpu_limit_milli"), "cpu",
                 _show_cpu, fail)
    _check_limit(spec.memory_request_bytes, spec.memory_limit_bytes, f.at("memory_limit_bytes"),
                 "memory", _show_memory, fail)
    return spec


def _probe_from_dict(raw: Any, path: str, which: str, fail: Fail) -> ProbeSpec | None:
    """A probe as the parser makes it: ports already numbers, timing already defaulted."""
    if raw is None:
        return None
    f = _Fields(raw, path, _PROBE_KEYS, fail)
    action = f.text("action")
    if action not in _PROBE_UNUSED:
        fail(f.at("action"), f"expected http, tcp or exec, got {_describe(action)}",
             "send WorkloadSpec.to_dict() output")
    port = f.value["port"]
    headers = []
    for i, pair in enumerate(f.items("headers")):
        pair_path = f"{f.at('headers')}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            fail(pair_path, f"expected a [name, value] pair, got {_describe(pair)}",
                 "send WorkloadSpec.to_dict() output")
        headers.append(_http_header(pair[0], pair[1], pair_path, pair_path, fail))
    probe = ProbeSpec(
        action=action,
        port=None if port is None else _port_number(port, f.at("port"), "port", fail),
        path=_http_path(f.value["path"], f.at("path"), fail),
        headers=tuple(headers),
        command=f.strings("command"),
        **{attr: _probe_int(f.value[attr], f.at(attr), minimum, fail)
           for _, attr, _, minimum in _PROBE_TIMING},
    )
    blank = ProbeSpec(action=action)
    for attr in _PROBE_UNUSED[action]:
        if getattr(probe, attr) != getattr(blank, attr):
            fail(f.at(attr), f"is not used by {action} probes",
                 "send WorkloadSpec.to_dict() output")
    if action != "exec" and probe.port is None:
        fail(f.at("port"), f"missing for {action} probes", "send WorkloadSpec.to_dict() output")
    if action == "exec" and not probe.command:
        fail(f.at("command"), "must not be empty", "send WorkloadSpec.to_dict() output")
    _check_success_threshold(probe, which, f.at("success_threshold"), fail)
    return probe
