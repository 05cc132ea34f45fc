"""A replica as a Podman pod: the Pod manifest ``kube play`` runs, and PodInfo read back.

Both directions meet in the labels of ``beemesh.runtime``: ``pod_manifest`` puts the workload,
replica, task and reserved resources on the pod (kube play copies them onto every application
container), and ``pod_info`` rebuilds a PodInfo from them, which is how a restarted agent
re-adopts its pods.

What a container is told: the ENV_* variables of ``beemesh.runtime`` (replacing a workload's
own variable of the same name) and, with a discovery directory, a read-only hostPath mount of
it at DISCOVERY_MOUNT_PATH.

How it is confined (``security_context``): no-new-privileges and never privileged, always;
Podman's default seccomp profile (no annotation asks for another); and capabilities as
``beemesh.manifest.security`` resolves them. Every capability the kernel knows and the container
does not keep is dropped by name, so a machine's containers.conf that grants more by default
grants nothing here; only ``capabilities.add`` is sent as added, because Podman makes added
capabilities ambient (effective) for a container that does not run as root, which is what
Kubernetes does for none else.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beemesh.manifest.checks import DEFAULT_GRACE_S, TEMPLATE_LEN
from beemesh.manifest.security import CAPABILITIES
from beemesh.runtime import (
    DISCOVERY_MOUNT_PATH,
    ENV_DISCOVERY_DIR,
    ENV_ORDINAL,
    ENV_POD,
    ENV_WORKLOAD,
    LABEL_AFRESH,
    LABEL_CPU,
    LABEL_GRACE,
    LABEL_MEMORY,
    LABEL_PRE_STOP,
    LABEL_REPLICA,
    LABEL_TASK,
    LABEL_TEMPLATE,
    LABEL_WORKLOAD,
    PodConfig,
    PodInfo,
    PodNetwork,
)
from beemesh.runtime.podman_volumes import manifest_volume

if TYPE_CHECKING:
    from beemesh.manifest import ContainerSpec, SecuritySpec, WorkloadSpec

__all__ = ["kernel_capabilities", "pod_info", "pod_manifest", "pod_state", "security_context",
           "short_name"]

DISCOVERY_VOLUME = "beemesh-discovery"
HOSTS_VOLUME = "beemesh-hosts"

_STATES = {
    "running": "running",
    "created": "created",
    "exited": "exited",
    "stopped": "exited",
    "dead": "exited",
    "degraded": "degraded",
    "paused": "paused",
    "error": "error",
}


def pod_manifest(spec: WorkloadSpec, ordinal: int, task_id: str,
                 discovery_dir: Path | None = None,
                 known_capabilities: tuple[str, ...] = CAPABILITIES,
                 network: PodNetwork | None = None,
                 config: PodConfig | None = None, afresh: bool = False) -> dict[str, Any]:
    """The single-replica Pod that ``kube play`` runs (JSON is YAML, so it is sent as JSON).

    beemesh labels win over the workload's own labels of the same key, and the ENV_*
    variables over its env vars of the same name. discovery_dir (absolute) is mounted
    read-only at DISCOVERY_MOUNT_PATH in every container. known_capabilities: the ones this
    machine's kernel has (Podman refuses to drop one it does not know). network: its hosts
    file is mounted read-only at /etc/hosts (Podman then leaves /etc/hosts alone) and its
    Service env vars are set (the workload's own of the same name win, as in Kubernetes).
    The hostname is the pod name (Podman's doing) and $HOSTNAME says so. config: each
    container's variables (in place of its literal env) and the directories of its configMap
    and secret volumes, mounted read-only.
    """
    cpu_milli, memory_bytes = spec.requests()
    name = spec.pod_name(ordinal)
    labels = dict(spec.labels)
    labels.update({
        LABEL_WORKLOAD: spec.workload_id,
        LABEL_REPLICA: str(ordinal),
        LABEL_TASK: task_id,
        LABEL_CPU: str(cpu_milli),
        LABEL_MEMORY: str(memory_bytes),
        LABEL_TEMPLATE: spec.template_hash,
        LABEL_GRACE: str(DEFAULT_GRACE_S if spec.grace_s is None else spec.grace_s),
    })
    if afresh:
        labels[LABEL_AFRESH] = "true"
    if hooks := {c.name: list(c.pre_stop) for c in spec.containers if c.pre_stop}:
        labels[LABEL_PRE_STOP] = json.dumps(hooks)
    env = {ENV_WORKLOAD: spec.workload_id, ENV_ORDINAL: str(ordinal), ENV_POD: name}
    mounts: list[dict[str, Any]] = []
    pod_spec: dict[str, Any] = {"restartPolicy": spec.restart_policy}
    volumes: list[dict[str, Any]] = []
    if discovery_dir is not None:
        env[ENV_DISCOVERY_DIR] = DISCOVERY_MOUNT_PATH
        mounts.append({"name": DISCOVERY_VOLUME, "mountPath": DISCOVERY_MOUNT_PATH,
                       "readOnly": True})
        volumes.append({"name": DISCOVERY_VOLUME,
                        "hostPath": {"path": str(discovery_dir), "type": "Directory"}})
    service_env = {"HOSTNAME": name}  # as Kubernetes sets it (`podman exec` would not see it)
    if network is not None:
        service_env.update(network.env)
        mounts.append({"name": HOSTS_VOLUME, "mountPath": "/etc/hosts", "readOnly": True})
        volumes.append({"name": HOSTS_VOLUME,
                        "hostPath": {"path": str(network.hosts_file), "type": "File"}})
    dirs = dict(config.dirs) if config is not None else {}
    variables = dict(config.env) if config is not None else {}
    files = {v.name for v in spec.volumes if v.files is not None}
    volumes += [manifest_volume(spec, ordinal, v, dirs.get(v.name)) for v in spec.volumes]
    if volumes:
        pod_spec["volumes"] = volumes
    pod_spec["containers"] = [_container_manifest(c, env, mounts + [
        {"name": m.name, "mountPath": m.path, "readOnly": m.read_only or m.name in files}
        for m in c.mounts], known_capabilities, service_env, variables.get(c.name, c.env))
        for c in spec.containers]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": pod_spec,
    }


def kernel_capabilities(last_cap: Path = Path("/proc/sys/kernel/cap_last_cap")
                        ) -> tuple[str, ...]:
    """The capability names this machine's kernel knows (a Pi's older kernel may lack the
    newest ones); all of CAPABILITIES if the kernel does not say."""
    try:
        last = int(last_cap.read_text().strip())
    except (OSError, ValueError):
        return CAPABILITIES
    return CAPABILITIES[:max(0, last) + 1]


def security_context(s: SecuritySpec, known: tuple[str, ...]) -> dict[str, Any]:
    """The securityContext kube play gets for a container: see the module doc."""
    kept = s.capabilities
    ctx: dict[str, Any] = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": s.read_only_root_filesystem,
        "capabilities": {"add": list(s.cap_add),
                         "drop": [name for name in known if name not in kept]},
    }
    if s.run_as_user is not None:
        ctx["runAsUser"] = s.run_as_user
    if s.run_as_group is not None:
        ctx["runAsGroup"] = s.run_as_group
    return ctx


def _container_manifest(c: ContainerSpec, env: dict[str, str], mounts: list[dict[str, Any]],
                        known_capabilities: tuple[str, ...], service_env: dict[str, str],
                        own_env: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "image": c.image, "imagePullPolicy": "Never",
                           "securityContext": security_context(c.security, known_capabilities)}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    own = {k for k, _ in own_env}
    out["env"] = [{"name": k, "value": v} for k, v in service_env.items()
                  if k not in own and k not in env]
    out["env"] += [{"name": k, "value": v} for k, v in own_env if k not in env]
    out["env"] += [{"name": k, "value": v} for k, v in env.items()]
    if mounts:
        out["volumeMounts"] = list(mounts)
    # Only ports with a hostPort: Podman 4.3's kube play also binds a bare containerPort on
    # the machine, so two replicas declaring one would clash where Kubernetes would not. A
    # bare containerPort changes nothing else (the pod's IP serves it either way).
    published = [{"containerPort": p.container_port, "protocol": p.protocol,
                  "hostPort": p.host_port} for p in c.ports if p.host_port is not None]
    if published:
        out["ports"] = published
    requests_: dict[str, str] = {}
    limits: dict[str, str] = {}
    if c.cpu_request_milli:
        requests_["cpu"] = f"{c.cpu_request_milli}m"
    if c.memory_request_bytes:
        requests_["memory"] = str(c.memory_request_bytes)
    if c.cpu_limit_milli is not None:
        limits["cpu"] = f"{c.cpu_limit_milli}m"
    if c.memory_limit_bytes is not None:
        limits["memory"] = str(c.memory_limit_bytes)
    resources = {k: v for k, v in (("requests", requests_), ("limits", limits)) if v}
    if resources:
        out["resources"] = resources
    return out


def _parse_time(value: Any) -> float:
    """Podman's RFC 3339 timestamps (nanoseconds, "Z") as a unix time; 0.0 if unreadable."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.strip().replace("Z", "+00:00")
    # Python before 3.12 accepts at most 6 fractional digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def pod_state(value: Any) -> str:
    """Podman's pod or container state in PodInfo's words ("stopped" and "dead" are exited)."""
    state = str(value or "").lower()
    return _STATES.get(state, state or "unknown")


def short_name(pod_name: str, container_name: str) -> str:
    """kube play names containers "<pod>-<container>"; show the manifest's name."""
    prefix = f"{pod_name}-"
    return container_name[len(prefix):] if container_name.startswith(prefix) else container_name


def pod_info(pod: dict[str, Any], ctrs: list[dict[str, Any]]) -> PodInfo:
    """PodInfo from Podman's JSON for a pod (/pods/json) and its application containers."""
    labels = pod.get("Labels") or {}
    name = str(pod.get("Name") or "")
    ordinal = _int_label(labels, LABEL_REPLICA, -1)
    ports: set[int] = set()
    for c in ctrs:
        for p in c.get("Ports") or []:
            host_port = p.get("host_port") or p.get("hostPort") or 0
            if host_port:
                span = int(p.get("range") or 1)
                ports.update(range(int(host_port), int(host_port) + max(span, 1)))
    return PodInfo(
        name=name,
        workload_id=str(labels.get(LABEL_WORKLOAD, "")),
        ordinal=ordinal,
        task_id=str(labels.get(LABEL_TASK, "")),
        state=pod_state(pod.get("Status")),
        created=_parse_time(pod.get("Created")),
        containers=tuple(sorted(
            short_name(name, (c.get("Names") or [""])[0]) for c in ctrs
        )),
        host_ports=tuple(sorted(ports)),
        cpu_milli=max(0, _int_label(labels, LABEL_CPU, 0)),
        memory_bytes=max(0, _int_label(labels, LABEL_MEMORY, 0)),
        template=str(labels.get(LABEL_TEMPLATE, ""))[:TEMPLATE_LEN],
        afresh=labels.get(LABEL_AFRESH) == "true",
    )


def _int_label(labels: dict[str, Any], key: str, default: int) -> int:
    try:
        return int(labels.get(key, ""))
    except ValueError:
        return default
