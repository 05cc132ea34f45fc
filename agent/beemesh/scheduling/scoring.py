"""Eligibility and the deterministic score a machine bids for a task.

Score = 45 % resource fit + 25 % spread/locality + 10 % reliability + 10 % price/energy + 10 %
images here, plus at most 1 % from a rendezvous hash of (machine, workload, ordinal), as an
integer in 0..1_000_000 so every machine compares bids exactly. The hash breaks the ties of
alike machines differently for each ordinal: the replicas of one apply are auctioned at once,
before any of them counts as "here", and without it the same machine would win them all.
Inputs are the task and this machine's own metrics only; nothing here reads a clock or the
system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from beemesh.runtime import local_only

SCORE_MAX = 1_000_000
ORDERED_READY = "podManagementPolicy OrderedReady"  # why an ordinal waits for the lower ones
WEIGHTS = {"fit": 0.45, "locality": 0.25, "reliability": 0.1, "price": 0.1, "images": 0.1}
RELIABILITY_HORIZON_S = 3600.0
TIE_BREAK = 0.01  # the rendezvous hash's share of the score


@dataclass(frozen=True)
class TaskRequest:
    """What a task asks of a machine."""

    workload_id: str
    cpu_milli: int
    memory_bytes: int
    arch: str | None
    node_selector: dict[str, str]
    host_ports: list[tuple[int, str]]
    ordinal: int = 0
    stateful: bool = False  # a StatefulSet replica: its ordinal must never run twice
    template: str = ""  # the pod template it runs (`WorkloadSpec.template_hash`)
    # (image as `runtime.image_name` spells it, its pull policy) of each container
    images: tuple[tuple[str, str], ...] = ()
    generation: int = 0  # the apply it came from (`store.StoredWorkload.generation`)
    host_paths: tuple[str, ...] = ()  # what its hostPath volumes name on the machine
    claims: bool = False  # it has claim volumes (a StatefulSet's volumeClaimTemplates)
    # A StatefulSet ordinal under podManagementPolicy OrderedReady: it starts only once every
    # lower ordinal is ready.
    ordered: bool = False
    storage_bytes: int = 0  # what its claim volumes request (`storage`)


@dataclass(frozen=True)
class LocalState:
    """This machine as the scorer sees it at one instant."""

    arch: str
    labels: dict[str, str]
    cordoned: bool
    runtime_ok: bool
    cpu_milli_total: int
    memory_bytes_total: int
    cpu_milli_free: int  # after reservations
    memory_bytes_free: int  # after reservations and what the kernel says is available
    replicas_here: dict[str, int] = field(default_factory=dict)  # workload id -> count
    # (workload, ordinal) of the pods here: a pod is named after its replica, so another copy
    # of one (a rolling update's surge copy) cannot start on the same machine.
    ordinals_here: frozenset[tuple[str, int]] = frozenset()
    used_host_ports: frozenset[tuple[int, str]] = frozenset()
    uptime_s: float = 0.0
    price: float = 0.5  # 0 = cheapest/greenest, 1 = most expensive
    # (workload, ordinal, template) of replicas other machines run and keep (not being
    # drained): a Task for one of them on that template is stale (delivered late, e.g. after
    # a partition healed); on another template it is a rolling update.
    running_elsewhere: frozenset[tuple[str, int, str]] = frozenset()
    # A majority of the machines has been in sight long enough to know what they run.
    stateful_quorum: bool = True
    images: frozenset[str] | None = None  # stored here (None: unknown, e.g. from a record)
    machine: str = ""  # this machine's Peer ID (the rendezvous hash)
    # workload id -> (generation, template) of the newest apply this machine keeps
    newest: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    pulls: bool = True  # this machine may pull images (`image_pulls`)
    host_path_roots: tuple[str, ...] = ()  # where hostPath volumes may point (`config`)
    # (workload, ordinal) of the claim volumes here, and of those live machines' records list
    volumes_here: frozenset[tuple[str, int]] = frozenset()
    volumes_elsewhere: Mapping[tuple[str, int], str] = field(default_factory=dict)
    # (workload, ordinal) of the replicas that are ready, here and in live records
    ready_replicas: frozenset[tuple[str, int]] = frozenset()
    disk_free_bytes: int | None = None  # where the runtime keeps volumes (None: unknown)
    disk_total_bytes: int = 0


def ineligible_reason(req: TaskRequest, m: LocalState) -> str | None:
    """Why this machine must not bid, or None when it may."""
    if not m.runtime_ok:
        return "container runtime unavailable"
    replica = replica_refusal(req, m)
    if replica is not None:
        return replica
    if m.cordoned:
        return "machine is cordoned"
    replica = (req.workload_id, req.ordinal)
    if req.claims and replica not in m.volumes_here and replica in m.volumes_elsewhere:
        return (f"the volume of ordinal {req.ordinal} is on machine "
                f"{m.volumes_elsewhere[replica]}, which is alive: it runs there (data gravity)")
    if req.ordered:
        waiting = next((k for k in range(req.ordinal)
                        if (req.workload_id, k) not in m.ready_replicas), None)
        if waiting is not None:
            return f"ordinal {waiting} is not ready yet ({ORDERED_READY})"
    if req.arch and req.arch != m.arch:
        return f"arch {m.arch} != {req.arch}"
    for key, value in req.node_selector.items():
        if key == "kubernetes.io/arch":
            continue  # checked above, with name normalisation
        if m.labels.get(key) != value:
            return f"nodeSelector {key}={value} not matched"
    if req.cpu_milli > m.cpu_milli_free:
        return f"needs {req.cpu_milli}m cpu, {m.cpu_milli_free}m free"
    if req.memory_bytes > m.memory_bytes_free:
        return f"needs {req.memory_bytes} B memory, {m.memory_bytes_free} B free"
    storage = storage_needed(req, m)
    if m.disk_free_bytes is not None and storage > m.disk_free_bytes:
        return (f"its claim volumes request {storage} B of disk, {m.disk_free_bytes} B free "
                "here")
    clash = set(req.host_ports) & m.used_host_ports
    if clash:
        return f"host port {sorted(clash)[0][0]} already in use here"
    for path in req.host_paths:
        if not any(path == root or path.startswith(root + "/") for root in m.host_path_roots):
            return (f"hostPath {path} is not under this machine's host_path_roots "
                    f"({', '.join(m.host_path_roots) or 'none'}); add its directory to "
                    "host_path_roots in agent.toml to allow it")
    return image_refusal(req, m)


def storage_needed(req: TaskRequest, m: LocalState) -> int:
    """Disk its claims take here: nothing where its volume already is."""
    return 0 if (req.workload_id, req.ordinal) in m.volumes_here else req.storage_bytes


def image_refusal(req: TaskRequest, m: LocalState) -> str | None:
    """Why a missing image keeps this machine from running the task: not stored here and not
    to be pulled (imagePullPolicy Never, pulls off, or a `localhost/` image no registry has)."""
    if m.images is None:
        return None
    for image, policy in req.images:
        if image in m.images:
            continue
        if policy == "Never":
            return f"image {image} is not on this machine and its imagePullPolicy is Never"
        if local_only(image):
            return f"image {image} is not on this machine (no registry serves localhost/)"
        if not m.pulls:
            return f"image {image} is not on this machine and pulls are off here"
    return None


def replica_refusal(req: TaskRequest, m: LocalState) -> str | None:
    """Why this replica must not start here whatever the machine's capacity: it already runs
    elsewhere or has a pod here, or it is a StatefulSet ordinal and no majority is in sight."""
    stale = stale_refusal(req, m)
    if stale is not None:
        return stale
    if (req.workload_id, req.ordinal) in m.ordinals_here:
        return f"replica {req.ordinal} has a pod on this machine already (pods are named " \
            "after their replica)"
    if (req.workload_id, req.ordinal, req.template) in m.running_elsewhere or (
            req.stateful and any(w == req.workload_id and o == req.ordinal
                                 for w, o, _ in m.running_elsewhere)):
        return f"replica {req.ordinal} already runs on another machine"
    if req.stateful and not m.stateful_quorum:
        return "StatefulSet replicas start only where a majority of machines is in sight"
    return None


def stale_refusal(req: TaskRequest, m: LocalState) -> str | None:
    """Why a task from an older apply must not start: a newer apply this machine keeps has
    another pod template (a replica never starts on a template older than one seen here;
    an older apply of the same template, e.g. before a scale, is the same pod)."""
    newest = m.newest.get(req.workload_id)
    if newest is None or newest[0] <= req.generation or newest[1] == req.template:
        return None
    return (f"the task is of an older apply (template {req.template}); the newest apply "
            f"here runs template {newest[1]}")


def score(req: TaskRequest, m: LocalState) -> int:
    """Deterministic score of an eligible machine (higher is better)."""
    cpu_left = (m.cpu_milli_free - req.cpu_milli) / max(1, m.cpu_milli_total)
    mem_left = (m.memory_bytes_free - req.memory_bytes) / max(1, m.memory_bytes_total)
    lefts = [cpu_left, mem_left]
    storage = storage_needed(req, m)
    if storage and m.disk_free_bytes is not None and m.disk_total_bytes:
        lefts.append((m.disk_free_bytes - storage) / m.disk_total_bytes)
    fit = max(0.0, min(1.0, sum(lefts) / len(lefts)))
    # Spread: a machine already holding replicas of this workload is a worse place for one more.
    locality = 1.0 / (1 + m.replicas_here.get(req.workload_id, 0))
    reliability = max(0.0, min(1.0, m.uptime_s / RELIABILITY_HORIZON_S))
    price = 1.0 - max(0.0, min(1.0, m.price))
    # Image locality: a machine that has the images starts the replica without a pull.
    images = 1.0 if m.images is None or not req.images else sum(
        image in m.images for image, _ in req.images) / len(req.images)
    total = (WEIGHTS["fit"] * fit + WEIGHTS["locality"] * locality
             + WEIGHTS["reliability"] * reliability + WEIGHTS["price"] * price
             + WEIGHTS["images"] * images)
    return round((total * (1 - TIE_BREAK) + TIE_BREAK * rendezvous(m.machine, req))
                 * SCORE_MAX)


def rendezvous(machine: str, req: TaskRequest) -> float:
    """A number in [0, 1) that every machine computes alike for (machine, replica)."""
    d = hashlib.sha256(f"{machine}/{req.workload_id}/{req.ordinal}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2**64
