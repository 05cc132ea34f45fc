"""Container runtimes: the small interface the agent drives, and what it reports back.

The agent keeps no durable cluster state: every replica a machine runs carries the labels
below, so a restarted agent re-adopts its pods by asking the runtime (``list_pods``). The
interface is a Protocol so that a runtime other than Podman (or a fake in the simulator) can
stand in; ``beemesh.runtime.podman`` is the real one. Importing this package stays cheap: it
does not import podman-py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from beemesh.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from beemesh.manifest import WorkloadSpec

__all__ = [
    "DISCOVERY_MOUNT_PATH",
    "ENV_DISCOVERY_DIR",
    "ENV_ORDINAL",
    "ENV_POD",
    "ENV_WORKLOAD",
    "EXEC_OUTPUT_LIMIT",
    "LABEL_AFRESH",
    "LABEL_CPU",
    "LABEL_GRACE",
    "LABEL_MEMORY",
    "LABEL_PRE_STOP",
    "LABEL_REPLICA",
    "LABEL_TASK",
    "LABEL_TEMPLATE",
    "LABEL_WORKLOAD",
    "ROOT_PODMAN_SOCKET",
    "ExecTimeout",
    "PodConfig",
    "PodInfo",
    "PodNetwork",
    "Runtime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "image_name",
    "local_only",
]

# Set on the pod and on every application container. The workload id keeps its slashes
# ("deployment/default/web"): Podman accepts any string as a label value, checked with 4.3.
LABEL_WORKLOAD = "beemesh.workload"
LABEL_REPLICA = "beemesh.replica"
LABEL_TASK = "beemesh.task"
LABEL_TEMPLATE = "beemesh.template"  # the spec's template_hash: which revision the pod runs
# What the replica reserves on its machine (spec.requests()), so that a restarted agent
# rebuilds its reservations from the pods alone.
LABEL_CPU = "beemesh.cpu-milli"
LABEL_MEMORY = "beemesh.memory-bytes"
# How the pod stops: its terminationGracePeriodSeconds, and {container: preStop argv} as JSON.
LABEL_GRACE = "beemesh.grace-s"
LABEL_PRE_STOP = "beemesh.pre-stop"
# "true" on a pod that replaced an earlier copy of its replica and found no claim volume here:
# it started with empty volumes (the machine that held them was gone).
LABEL_AFRESH = "beemesh.afresh"

# What every application container is told about itself. A workload's own env var of the same
# name is replaced: a replica must not be able to claim another's identity by accident.
ENV_WORKLOAD = "BEEMESH_WORKLOAD"  # workload id, e.g. "deployment/default/web"
ENV_ORDINAL = "BEEMESH_ORDINAL"  # replica ordinal, e.g. "0"
ENV_POD = "BEEMESH_POD"  # pod name, e.g. "web-0"
# Only set when the agent hands deploy a discovery directory: it is mounted read-only here
# (the agent's work plane keeps discovery files there; workloads only read them).
ENV_DISCOVERY_DIR = "BEEMESH_DISCOVERY_DIR"
DISCOVERY_MOUNT_PATH = "/run/beemesh"

# Rootful Podman's REST socket when systemd's podman.socket runs it (the agent's default as root).
ROOT_PODMAN_SOCKET = "unix:///run/podman/podman.sock"

# exec_in returns at most this much output (stdout and stderr as they came); the rest is read
# and dropped so that a chatty command cannot block on a full pipe.
EXEC_OUTPUT_LIMIT = 64 * 1024


class RuntimeFailure(UserError, RuntimeError):
    """The runtime refused or failed an operation; the message is one line naming what to do."""


class RuntimeUnavailable(RuntimeFailure):
    """The runtime cannot be reached at all (socket missing or dead); names the socket and fix."""


class ExecTimeout(RuntimeFailure):
    """exec_in stopped waiting for a command; the command may still be running in the pod."""


@dataclass(frozen=True)
class PodInfo:
    """One replica as the runtime sees it now; rebuilt from labels, never from agent memory.

    state is one of "running", "created", "exited", "degraded" (some containers stopped),
    "paused", "error" or another lower-cased runtime word. ordinal is -1 when the replica
    label is unreadable (a pod to remove, not to trust). containers are the names from the
    manifest (without the "<pod>-" prefix Podman adds). cpu_milli and memory_bytes are the
    replica's requests (what it reserves), read back from its labels.
    """

    name: str
    workload_id: str
    ordinal: int
    task_id: str
    state: str
    created: float
    containers: tuple[str, ...]
    host_ports: tuple[int, ...]
    cpu_milli: int = 0
    memory_bytes: int = 0
    template: str = ""  # WorkloadSpec.template_hash it was made from ("": before labels had it)
    afresh: bool = False  # a replacement that started with empty claim volumes (LABEL_AFRESH)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/CBOR-ready data for the control API and `beemesh get pods`."""
        return {
            "name": self.name,
            "workload_id": self.workload_id,
            "ordinal": self.ordinal,
            "task_id": self.task_id,
            "state": self.state,
            "created": self.created,
            "containers": list(self.containers),
            "host_ports": list(self.host_ports),
            "cpu_milli": self.cpu_milli,
            "memory_bytes": self.memory_bytes,
            "template": self.template,
            "afresh": self.afresh,
        }


@dataclass(frozen=True)
class PodNetwork:
    """How a pod reaches Services (`workplane.names`): the /etc/hosts file mounted read-only in
    every container (an existing file on this machine) and the env vars of its namespace's
    Services."""

    hosts_file: Path
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PodConfig:
    """What a pod takes from ConfigMaps and Secrets (`podconfig`): each container's variables
    from its env and envFrom (they replace its literal env), and the directory of each
    configMap/secret volume (its files already written; mounted read-only)."""

    env: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (container, variables)
    dirs: tuple[tuple[str, Path], ...] = ()  # (volume name, directory on this machine)


@runtime_checkable
class Runtime(Protocol):
    """What the agent needs from a container runtime. All methods block: call them in a thread.

    Every failure is a RuntimeFailure (RuntimeUnavailable when the runtime is unreachable).
    """

    def ping(self) -> None:
        """Return if the runtime answers; raise RuntimeUnavailable with the fix otherwise."""
        ...

    def deploy(self, spec: WorkloadSpec, ordinal: int, task_id: str,
               discovery_dir: Path | None = None, network: PodNetwork | None = None,
               config: PodConfig | None = None, replacing: bool = False) -> PodInfo:
        """Run replica ``ordinal`` of ``spec`` as pod ``spec.pod_name(ordinal)``
        (`replacing`: an earlier copy of the replica ran somewhere; LABEL_AFRESH).

        Every container gets the ENV_* variables; with discovery_dir (an existing directory
        on this machine) also a read-only mount of it at DISCOVERY_MOUNT_PATH; with network,
        its hosts file at /etc/hosts and its env vars; with config, its variables and
        directories (needed when the spec uses ConfigMaps or Secrets).
        """
        ...

    def list_pods(self) -> list[PodInfo]:
        """Every beemesh replica on this machine (pods without beemesh labels are not listed)."""
        ...

    def status(self, pod_name: str) -> PodInfo | None:
        """The replica called ``pod_name``, or None if there is no such beemesh pod."""
        ...

    def logs(self, pod_name: str, follow: bool = False) -> Iterator[str]:
        """Log lines of all containers of the pod, prefixed "<container>: " if more than one."""
        ...

    def remove(self, pod_name: str, grace_s: float | None = None) -> bool:
        """Run its preStop hooks, stop and remove the pod within grace_s (None: the pod's own
        terminationGracePeriodSeconds); False if it was not there (idempotent)."""
        ...

    def pod_address(self, pod_name: str) -> str | None:
        """The pod's IP on this machine (probes connect there); None if not running.

        A restart or start usually gives the pod a new address: look it up again after one.
        """
        ...

    def pod_pid(self, pod_name: str) -> int | None:
        """A process in the pod's network namespace (its infra container's); None if the pod
        is missing or not running."""
        ...

    def exec_in(self, pod_name: str, container: str, argv: Sequence[str],
                timeout_s: float) -> tuple[int, str]:
        """(exit code, output) of argv run in a container; ExecTimeout after timeout_s."""
        ...

    def restart(self, pod_name: str, grace_s: float = 10) -> PodInfo:
        """Stop the pod's containers (SIGKILL after grace_s) and start them again."""
        ...

    def start(self, pod_name: str) -> PodInfo:
        """Start a stopped, exited or degraded pod; returns once it stays running."""
        ...

    def images(self) -> frozenset[str]:
        """The images in this machine's storage, named as `image_name` spells references."""
        ...

    def claims(self) -> frozenset[tuple[str, int]]:
        """(workload id, ordinal) of every claim volume this machine holds (`podman_volumes`)."""
        ...

    def remove_claims(self, workload_id: str, ordinal: int | None = None) -> int:
        """Remove the claim volumes of a workload here (of one ordinal, or all); how many."""
        ...

    def disk(self) -> tuple[int, int] | None:
        """(free, total) bytes where the runtime keeps volumes; None if it does not say."""
        ...


def image_name(ref: str) -> str:
    """An image reference as Podman names what it stores: the registry and the tag spelled
    out (`nginx:1.27` is `docker.io/library/nginx:1.27`, `x` is `docker.io/library/x:latest`)."""
    name, at, digest = ref.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if slash else "library/" + name)
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


def local_only(ref: str) -> bool:
    """`localhost/...` images come from `podman import/build/load`; no registry has them."""
    return image_name(ref).startswith("localhost/")
