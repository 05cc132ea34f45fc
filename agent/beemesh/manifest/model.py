"""The workload model the rest of beemesh uses, and its wire form.

``WorkloadSpec`` (with ``ContainerSpec``, ``PortSpec``, ``ProbeSpec`` and, from
``beemesh.manifest.security``, ``SecuritySpec``) holds what the
scheduler and the runtime need from a manifest, already checked and defaulted. It also travels
inside signed tasks, so ``to_dict`` gives plain JSON/CBOR data and ``from_dict`` re-checks
everything with the same rules as the Kubernetes walker instead of trusting the wire.

Over 400 lines on purpose: each dataclass here and its wire form (``to_dict`` and the
``_*_from_dict`` checks below) change together, field for field; apart, one would drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from beemesh.manifest.checks import (
    MAX_GRACE_S,
    MAX_INT,
    MAX_LABEL,
    MAX_REPLICAS,
    MAX_WORKLOAD_NAME,
    TEMPLATE_LEN,
    Fail,
    Where,
    check_limit,
    check_pod,
    check_success_threshold,
    describe,
    dns_label,
    env_name,
    http_header,
    http_request_path,
    join,
    label_map,
    pod_restart_policy,
    port_number,
    port_protocol,
    probe_int,
)
from beemesh.manifest.config import MAX_ITEMS
from beemesh.manifest.quantities import show_cpu, show_memory
from beemesh.manifest.references import EnvFrom, KeyRef
from beemesh.manifest.security import (
    DEFAULT_SECURITY,
    SecuritySpec,
    capability_lists,
    check_users,
    id_number,
)
from beemesh.manifest.strategy import (
    DEFAULT_STRATEGY,
    UpdateStrategy,
    restarted_at,
    strategy_from_dict,
)
from beemesh.manifest.volumes import (
    MAX_VOLUMES,
    Mount,
    Volume,
    check_mounts,
    mount_from_dict,
    volume_from_dict,
)

KINDS = ("Deployment", "StatefulSet", "Pod")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")  # a container's imagePullPolicy
_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
ARCH_LABEL = "kubernetes.io/arch"

# Probes: (manifest field, ContainerSpec/wire field); wire fields are ProbeSpec's own names.
PROBE_FIELDS = (("startupProbe", "startup"), ("readinessProbe", "readiness"),
                ("livenessProbe", "liveness"))
# (manifest field, ProbeSpec field, Kubernetes default, minimum once defaulted)
PROBE_TIMING = (
    ("initialDelaySeconds", "initial_delay_s", 0, 0),
    ("periodSeconds", "period_s", 10, 1),
    ("timeoutSeconds", "timeout_s", 1, 1),
    ("successThreshold", "success_threshold", 1, 1),
    ("failureThreshold", "failure_threshold", 3, 1),
)


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
    """One container; requests default to limits, as Kubernetes does, then to zero.

    security is the container's securityContext with the pod's folded in; its defaults are the
    hardening every container gets (see ``beemesh.manifest.security``).
    """

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
    security: SecuritySpec = DEFAULT_SECURITY
    image_pull_policy: str = ""  # as the manifest said; "" is Kubernetes' default (`pull_policy`)
    mounts: tuple[Mount, ...] = ()  # its volumeMounts (`manifest.volumes`)
    post_start: tuple[str, ...] = ()  # lifecycle.postStart.exec.command
    pre_stop: tuple[str, ...] = ()  # lifecycle.preStop.exec.command
    env_refs: tuple[KeyRef, ...] = ()  # env[].valueFrom (`manifest.config`)
    env_from: tuple[EnvFrom, ...] = ()  # envFrom[]

    @property
    def pull_policy(self) -> str:
        """Always, IfNotPresent or Never; unset: Always for a `:latest` or untagged image,
        IfNotPresent otherwise (Kubernetes' default)."""
        if self.image_pull_policy:
            return self.image_pull_policy
        last = self.image.rsplit("/", 1)[-1]
        tagged = "@" in self.image or (":" in last and not last.endswith(":latest"))
        return "IfNotPresent" if tagged else "Always"


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
    strategy: UpdateStrategy = DEFAULT_STRATEGY
    restarted_at: str = ""  # the pod template's kubectl.kubernetes.io/restartedAt annotation
    volumes: tuple[Volume, ...] = ()  # the pod's volumes, then a StatefulSet's claims
    grace_s: int | None = None  # terminationGracePeriodSeconds (None: DEFAULT_GRACE_S)
    # The pod template's annotation ROLL_ON_CONFIG: a change of the ConfigMaps and Secrets it
    # uses rolls it. `beemesh apply` then sets config_digest, a digest of them, so that a change
    # is a new template.
    roll_on_config: bool = False
    config_digest: str = ""
    # StatefulSet podManagementPolicy Parallel (else OrderedReady: each ordinal starts once
    # the lower ones are ready, `scheduling.scoring`)
    parallel: bool = False
    # persistentVolumeClaimRetentionPolicy Delete: claim volumes go with the StatefulSet's
    # Delete (whenDeleted), or with an ordinal removed by a scale-down (whenScaled)
    delete_claims_on_delete: bool = False
    delete_claims_on_scale: bool = False

    def config_refs(self) -> frozenset[tuple[str, str]]:
        """(ConfigMap or Secret, name) of every object its pods read, in its namespace."""
        refs = {(r.source, r.name) for c in self.containers for r in c.env_refs}
        refs.update((e.source, e.name) for c in self.containers for e in c.env_from)
        refs.update((v.files.source, v.files.name) for v in self.volumes if v.files is not None)
        return frozenset(refs)

    @property
    def host_paths(self) -> tuple[str, ...]:
        """The machine paths its hostPath volumes name (each machine decides: `scoring`)."""
        return tuple(v.path for v in self.volumes if v.source == "hostPath")

    @property
    def template_hash(self) -> str:
        """What identifies the pod template (a revision): everything a replica runs, not how
        many replicas there are nor how they are updated. Replicas of another template are
        rolled (`workplane.rollout`)."""
        d = self.to_dict()
        for key in ("replicas", "warnings", "strategy", "parallel", "delete_claims_on_delete",
                    "delete_claims_on_scale"):
            d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:TEMPLATE_LEN]

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
            # Only when set: a workload without them keeps the wire form (and the digest) it
            # had before they existed.
            **({} if self.strategy == DEFAULT_STRATEGY else {"strategy": self.strategy.to_dict()}),
            **({"restarted_at": self.restarted_at} if self.restarted_at else {}),
            **({"volumes": [v.to_dict() for v in self.volumes]} if self.volumes else {}),
            **({"grace_s": self.grace_s} if self.grace_s is not None else {}),
            **({"roll_on_config": True} if self.roll_on_config else {}),
            **({"config_digest": self.config_digest} if self.config_digest else {}),
            **({"parallel": True} if self.parallel else {}),
            **({"delete_claims_on_delete": True} if self.delete_claims_on_delete else {}),
            **({"delete_claims_on_scale": True} if self.delete_claims_on_scale else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkloadSpec:
        """Rebuild from ``to_dict`` output, re-validating: it arrives over the network."""
        return _spec_from_dict(d)


# ---------------------------------------------------------------------------------------------
# to_dict / from_dict (the wire form)


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
        **{which: _probe_to_dict(getattr(c, which)) for _, which in PROBE_FIELDS},
        # Only when set: a workload without a securityContext keeps the wire form (and the
        # digest) it had before securityContext existed.
        **({} if c.security == DEFAULT_SECURITY else {"security": {
            "run_as_user": c.security.run_as_user,
            "run_as_group": c.security.run_as_group,
            "run_as_non_root": c.security.run_as_non_root,
            "read_only_root_filesystem": c.security.read_only_root_filesystem,
            "cap_add": list(c.security.cap_add),
            "cap_drop": list(c.security.cap_drop),
        }}),
        **({"image_pull_policy": c.image_pull_policy} if c.image_pull_policy else {}),
        **({"mounts": [m.to_dict() for m in c.mounts]} if c.mounts else {}),
        **({"post_start": list(c.post_start)} if c.post_start else {}),
        **({"pre_stop": list(c.pre_stop)} if c.pre_stop else {}),
        **({"env_refs": [r.to_dict() for r in c.env_refs]} if c.env_refs else {}),
        **({"env_from": [e.to_dict() for e in c.env_from]} if c.env_from else {}),
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
        **{attr: getattr(p, attr) for _, attr, _, _ in PROBE_TIMING},
    }


class _Fields:
    """Typed access to one wire mapping: exact key set, each value's type checked by path."""

    def __init__(self, value: Any, path: str, keys: tuple[str, ...], fail: Fail,
                 optional: tuple[str, ...] = ()) -> None:
        """optional: keys of `keys` that may be absent."""
        self.path, self.fail = path, fail
        if not isinstance(value, dict):
            fail(path or None, f"expected a mapping, got {describe(value)}",
                 "send WorkloadSpec.to_dict() output")
        extra = sorted(str(k) for k in value if k not in keys)
        missing = [k for k in keys if k not in value and k not in optional]
        if extra:
            fail(join(path, extra[0]), "unexpected field", "send WorkloadSpec.to_dict() output")
        if missing:
            fail(join(path, missing[0]), "missing", "send WorkloadSpec.to_dict() output")
        self.value = value

    def at(self, key: str) -> str:
        return join(self.path, key)

    def text(self, key: str, *, optional: bool = False) -> Any:
        value = self.value[key]
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(self.at(key), f"expected a string, got {describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def integer(self, key: str, *, optional: bool = False) -> Any:
        value = self.value[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            self.fail(self.at(key), f"expected a non-negative integer, got {describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def boolean(self, key: str, *, absent: bool | None = None) -> bool:
        """`absent`: the value of an optional key that is not there (None: required)."""
        if absent is not None and key not in self.value:
            return absent
        value = self.value[key]
        if not isinstance(value, bool):
            self.fail(self.at(key), f"expected true or false, got {describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.value[key]
        if not isinstance(value, list):
            self.fail(self.at(key), f"expected a list, got {describe(value)}",
                      "send WorkloadSpec.to_dict() output")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.items(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"{self.at(key)}[{i}]", f"expected a string, got {describe(item)}",
                          "send WorkloadSpec.to_dict() output")
        return tuple(items)


_SPEC_KEYS = ("kind", "name", "namespace", "replicas", "labels", "node_selector", "containers",
              "restart_policy", "warnings", "strategy", "restarted_at", "volumes", "grace_s",
              "roll_on_config", "config_digest", "parallel", "delete_claims_on_delete",
              "delete_claims_on_scale")
_CONTAINER_KEYS = ("name", "image", "command", "args", "env", "ports", "cpu_request_milli",
                   "memory_request_bytes", "cpu_limit_milli", "memory_limit_bytes",
                   *(which for _, which in PROBE_FIELDS), "security", "image_pull_policy",
                   "mounts", "post_start", "pre_stop", "env_refs", "env_from")
_SECURITY_KEYS = ("run_as_user", "run_as_group", "run_as_non_root", "read_only_root_filesystem",
                  "cap_add", "cap_drop")
_PORT_KEYS = ("container_port", "host_port", "protocol", "name")
_PROBE_KEYS = ("action", "port", "path", "headers", "command",
               *(attr for _, attr, _, _ in PROBE_TIMING))
# The fields each action does not use; they must hold ProbeSpec's defaults.
_PROBE_UNUSED = {"http": ("command",), "tcp": ("path", "headers", "command"),
                 "exec": ("port", "path", "headers")}


def _spec_from_dict(d: Any) -> WorkloadSpec:
    where = Where("workload spec")
    fail = where.fail
    f = _Fields(d, "", _SPEC_KEYS, fail,
                optional=("strategy", "restarted_at", "volumes", "grace_s", "roll_on_config",
                          "config_digest", "parallel", "delete_claims_on_delete",
                          "delete_claims_on_scale"))
    digest = f.text("config_digest") if "config_digest" in d else ""
    if digest and not (len(digest) == 64 and all(ch in "0123456789abcdef" for ch in digest)):
        fail("config_digest", "must be 64 hex digits", "send WorkloadSpec.to_dict() output")
    grace = f.integer("grace_s") if "grace_s" in d else None
    if grace is not None and grace > MAX_GRACE_S:
        fail("grace_s", f"{grace} is more than {MAX_GRACE_S}", "send a shorter grace")
    kind = f.text("kind")
    if kind not in KINDS:
        fail("kind", f"{kind!r} is not a supported kind", f"use {', '.join(KINDS)}")
    where.kind = kind
    name = dns_label(f.text("name"), "name", "name", MAX_WORKLOAD_NAME, fail)
    where.name = name
    namespace = dns_label(f.text("namespace"), "namespace", "namespace", MAX_LABEL, fail)
    replicas = f.integer("replicas")
    if replicas > MAX_REPLICAS:
        fail("replicas", f"{replicas} is more than {MAX_REPLICAS}", "send a smaller replicas")
    if kind == "Pod" and replicas != 1:
        fail("replicas", f"a Pod has exactly 1 replica, got {replicas}", "send replicas: 1")
    raw_containers = f.items("containers")
    if not raw_containers:
        fail("containers", "must not be empty", "send at least one container")
    containers = tuple(
        _container_from_dict(item, f"containers[{i}]", fail)
        for i, item in enumerate(raw_containers)
    )
    check_pod(containers, "", "host_port", fail)
    volumes = tuple(volume_from_dict(v, f"volumes[{i}]", fail)
                    for i, v in enumerate(f.items("volumes") if "volumes" in d else ()))
    if len(volumes) > 2 * MAX_VOLUMES:
        fail("volumes", f"more than {2 * MAX_VOLUMES} volumes", "send fewer")
    if kind != "StatefulSet" and any(v.source == "claim" for v in volumes):
        fail("volumes", "only a StatefulSet has claims", "send WorkloadSpec.to_dict() output")
    check_mounts(volumes, [(f"containers[{i}].mounts", c.mounts)
                           for i, c in enumerate(containers)], "", "volumes", fail)
    return WorkloadSpec(
        kind=kind, name=name, namespace=namespace, replicas=replicas,
        labels=label_map(d["labels"], "labels", fail),
        node_selector=label_map(d["node_selector"], "node_selector", fail),
        containers=containers,
        restart_policy=pod_restart_policy(d["restart_policy"], kind, "restart_policy", fail),
        warnings=f.strings("warnings"),
        strategy=(strategy_from_dict(d["strategy"], "strategy", kind, fail)
                  if "strategy" in d else DEFAULT_STRATEGY),
        restarted_at=restarted_at(d.get("restarted_at", ""), "restarted_at", fail),
        volumes=volumes, grace_s=grace, config_digest=digest,
        roll_on_config=f.boolean("roll_on_config", absent=False),
        parallel=f.boolean("parallel", absent=False),
        delete_claims_on_delete=f.boolean("delete_claims_on_delete", absent=False),
        delete_claims_on_scale=f.boolean("delete_claims_on_scale", absent=False),
    )


def _container_from_dict(raw: Any, path: str, fail: Fail) -> ContainerSpec:
    f = _Fields(raw, path, _CONTAINER_KEYS, fail,
                optional=("security", "image_pull_policy", "mounts", "post_start", "pre_stop",
                          "env_refs", "env_from"))
    refs = f.items("env_refs") if "env_refs" in f.value else []
    froms = f.items("env_from") if "env_from" in f.value else []
    if len(refs) > MAX_ITEMS or len(froms) > MAX_ITEMS:
        fail(f.at("env_refs"), "too many references", "send fewer")
    raw_mounts = f.items("mounts") if "mounts" in f.value else []
    if len(raw_mounts) > MAX_VOLUMES:
        fail(f.at("mounts"), f"more than {MAX_VOLUMES} mounts", "send fewer")
    name = dns_label(f.text("name"), f.at("name"), "container name", MAX_LABEL, fail)
    image = f.text("image")
    if not image or any(ch.isspace() for ch in image):
        fail(f.at("image"), f"{image!r} is not an image reference", "send a non-empty image")
    env = []
    for i, pair in enumerate(f.items("env")):
        pair_path = f"{f.at('env')}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            fail(pair_path, f"expected a [name, value] pair of strings, got {describe(pair)}",
                 "send WorkloadSpec.to_dict() output")
        env.append((env_name(pair[0], pair_path, fail), pair[1]))
    ports = []
    for i, item in enumerate(f.items("ports")):
        p = _Fields(item, f"{f.at('ports')}[{i}]", _PORT_KEYS, fail)
        host = p.value["host_port"]
        ports.append(PortSpec(
            container_port=port_number(p.value["container_port"], p.at("container_port"),
                                       "container_port", fail),
            host_port=None if host is None else port_number(host, p.at("host_port"),
                                                            "host_port", fail),
            protocol=port_protocol(p.value["protocol"], p.at("protocol"), fail),
            name=p.text("name", optional=True),
        ))
    probes = {which: _probe_from_dict(f.value[which], f.at(which), which, fail)
              for _, which in PROBE_FIELDS}
    spec = ContainerSpec(
        name=name, image=image, command=f.strings("command"), args=f.strings("args"),
        env=tuple(env), ports=tuple(ports),
        cpu_request_milli=f.integer("cpu_request_milli"),
        memory_request_bytes=f.integer("memory_request_bytes"),
        cpu_limit_milli=f.integer("cpu_limit_milli", optional=True),
        memory_limit_bytes=f.integer("memory_limit_bytes", optional=True),
        startup=probes["startup"], readiness=probes["readiness"], liveness=probes["liveness"],
        security=(_security_from_dict(f.value["security"], f.at("security"), fail)
                  if "security" in f.value else DEFAULT_SECURITY),
        image_pull_policy=f.value.get("image_pull_policy", ""),
        mounts=tuple(mount_from_dict(m, f"{f.at('mounts')}[{i}]", fail)
                     for i, m in enumerate(raw_mounts)),
        post_start=f.strings("post_start") if "post_start" in f.value else (),
        pre_stop=f.strings("pre_stop") if "pre_stop" in f.value else (),
        env_refs=tuple(KeyRef.from_dict(r, f"{f.at('env_refs')}[{i}]", fail)
                       for i, r in enumerate(refs)),
        env_from=tuple(EnvFrom.from_dict(e, f"{f.at('env_from')}[{i}]", fail)
                       for i, e in enumerate(froms)),
    )
    if spec.image_pull_policy not in ("", *PULL_POLICIES):
        fail(f.at("image_pull_policy"), f"{describe(spec.image_pull_policy)} is not a pull "
             "policy", "send WorkloadSpec.to_dict() output")
    check_limit(spec.cpu_request_milli, spec.cpu_limit_milli, f.at("cpu_limit_milli"), "cpu",
                show_cpu, fail)
    check_limit(spec.memory_request_bytes, spec.memory_limit_bytes, f.at("memory_limit_bytes"),
                "memory", show_memory, fail)
    return spec


def _security_from_dict(raw: Any, path: str, fail: Fail) -> SecuritySpec:
    """Re-checked like a manifest's securityContext: an added SYS_ADMIN is refused here too."""
    f = _Fields(raw, path, _SECURITY_KEYS, fail)
    user, group = (None if f.value[key] is None else id_number(f.value[key], f.at(key), fail)
                   for key in ("run_as_user", "run_as_group"))
    non_root = f.boolean("run_as_non_root")
    check_users(user, group, non_root, {"user": f.at("run_as_user"),
                                        "group": f.at("run_as_group"),
                                        "non_root": f.at("run_as_non_root")}, fail)
    cap_add, cap_drop = capability_lists(f.value["cap_add"], f.value["cap_drop"],
                                         f.at("cap_add"), f.at("cap_drop"), fail)
    return SecuritySpec(run_as_user=user, run_as_group=group, run_as_non_root=non_root,
                        read_only_root_filesystem=f.boolean("read_only_root_filesystem"),
                        cap_add=cap_add, cap_drop=cap_drop)


def _probe_from_dict(raw: Any, path: str, which: str, fail: Fail) -> ProbeSpec | None:
    """A probe as the parser makes it: ports already numbers, timing already defaulted."""
    if raw is None:
        return None
    f = _Fields(raw, path, _PROBE_KEYS, fail)
    action = f.text("action")
    if action not in _PROBE_UNUSED:
        fail(f.at("action"), f"expected http, tcp or exec, got {describe(action)}",
             "send WorkloadSpec.to_dict() output")
    port = f.value["port"]
    headers = []
    for i, pair in enumerate(f.items("headers")):
        pair_path = f"{f.at('headers')}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            fail(pair_path, f"expected a [name, value] pair, got {describe(pair)}",
                 "send WorkloadSpec.to_dict() output")
        headers.append(http_header(pair[0], pair[1], pair_path, pair_path, fail))
    probe = ProbeSpec(
        action=action,
        port=None if port is None else port_number(port, f.at("port"), "port", fail),
        path=http_request_path(f.value["path"], f.at("path"), fail),
        headers=tuple(headers),
        command=f.strings("command"),
        **{attr: probe_int(f.value[attr], f.at(attr), minimum, fail)
           for _, attr, _, minimum in PROBE_TIMING},
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
    check_success_threshold(probe.success_threshold, which, f.at("success_threshold"), fail)
    return probe
