"""Machine records: what each machine says about itself, as typed records (sans-IO).

Each agent announces a signed MachineRecord (addresses, arch, labels, capacity, protocol
version, the pods it runs, where its work plane listens) on pub/sub when it changes
(`worth_announcing`); whether the machine is alive is `membership.liveness`'s business, so a
record does not expire: it holds until a newer one, a withdrawal or a verdict. The wire body
is a CBOR map checked against the kind's schema before anything here sees it;
`MachineRecord.from_body` turns it into the typed record every reader uses, and `to_body` is
the only place that builds the map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from beemesh import schema, wire
from beemesh.identity import peer_id
from beemesh.manifest.checks import MAX_REPLICAS, TEMPLATE_LEN
from beemesh.workplane.sync import MAX_PODS, WORKPLANE_HOST, WorkPlaneHost

PROTOCOL_VERSION = 1
MAX_ADDRS = 16
MAX_RECORD_VOLUMES = 1024  # claim volumes a record lists (`volumes`)
MAX_HOST_PATH_ROOTS = 32

# What a machine says about each pod it runs, so every agent can answer `beemesh get pods`.
# `ready` is what its probes say, `peer` the replica's workload Peer ID once its work plane has
# a certified key (the machine plane refuses that key), `retiring` marks a replica being drained.
POD_SUMMARY = schema.Struct(
    # replica -1: a pod whose replica label is unreadable (one to remove, not to trust)
    required={"workload": str, "replica": schema.Int(-1, MAX_REPLICAS - 1), "task": str,
              "pod": str, "state": str,
              "created": float},
    optional={"ready": bool, "peer": str, "retiring": bool, "template": str, "afresh": bool})

MACHINE_RECORD = wire.Kind(
    "MachineRecord",
    wire.MACHINE,
    schema.Struct(
        required={
            "peer_id": str,
            "addrs": schema.ListOf(str, max_len=MAX_ADDRS),
            "arch": str,
            "labels": schema.MapOf(str, str, max_len=64),
            "capacity": schema.Struct(
                required={"cpu_milli": schema.NON_NEGATIVE, "memory_bytes": schema.NON_NEGATIVE,
                          "memory_available_bytes": schema.NON_NEGATIVE},
                optional={"cgroup": str},
            ),
            "protocol": schema.Int(0, 2**31 - 1),
        },
        optional={"cordoned": bool, "draining": bool,
                  "pods": schema.ListOf(POD_SUMMARY, max_len=MAX_PODS),
                  # where its work plane listens: peers' work planes admit exactly these
                  "workplane": WORKPLANE_HOST,
                  # its operator-signed certificate (`membership.certs`) when it has one
                  "cert": bytes,
                  # the claim volumes it holds: [workload id, ordinal] (data gravity)
                  "volumes": schema.ListOf(schema.Struct(required={
                      "workload_id": str, "ordinal": schema.Int(0, 2**31 - 1)}),
                      max_len=MAX_RECORD_VOLUMES),
                  # the directories its hostPath volumes may name (`config.host_path_roots`)
                  "host_path_roots": schema.ListOf(str, max_len=MAX_HOST_PATH_ROOTS)},
    ),
    names_signer="peer_id",
)
MACHINE_WITHDRAW = wire.Kind(
    "MachineWithdraw", wire.MACHINE, schema.Struct(required={"peer_id": str}),
    names_signer="peer_id",
)
# A monitor's accusation that `target`'s record made at `incarnation` (ms) no longer answers
# its probes (`membership.liveness`; `confirm`: the suspicion ran out here).
MACHINE_ACCUSE = wire.Kind(
    "MachineAccuse", wire.MACHINE,
    schema.Struct(required={"target": str, "incarnation": schema.Int(0, 2**62),
                            "confirm": bool}),
)


class RecordError(ValueError):
    """A record that verified as an envelope but makes no sense as a machine record."""


@dataclass(frozen=True)
class PodSummary:
    """One pod as its machine reports it (`beemesh get pods`, heal checks, delete relays)."""

    workload_id: str
    ordinal: int
    task: str
    pod: str
    state: str
    created: float
    ready: bool = False
    retiring: bool = False
    peer: str = ""  # the replica's workload Peer ID, once its work plane has one certified
    template: str = ""  # the pod template it runs (`WorkloadSpec.template_hash`)
    afresh: bool = False  # started with empty claim volumes (`runtime.LABEL_AFRESH`)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"workload": self.workload_id, "replica": self.ordinal,
                                "task": self.task, "pod": self.pod, "state": self.state,
                                "created": float(self.created), "ready": self.ready,
                                "retiring": self.retiring}
        if self.peer:
            body["peer"] = self.peer
        if self.template:
            body["template"] = self.template
        if self.afresh:
            body["afresh"] = True
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodSummary:
        return cls(body["workload"], body["replica"], body["task"], body["pod"], body["state"],
                   body["created"], body.get("ready", False), body.get("retiring", False),
                   body.get("peer", ""), body.get("template", "")[:TEMPLATE_LEN],
                   body.get("afresh", False))


@dataclass(frozen=True)
class RecordCapacity:
    cpu_milli: int
    memory_bytes: int
    memory_available_bytes: int
    cgroup: str = ""


@dataclass(frozen=True)
class MachineRecord:
    """The body of a MachineRecord, typed."""

    peer_id: str
    addrs: tuple[str, ...]
    arch: str
    labels: Mapping[str, str]
    capacity: RecordCapacity
    protocol: int = PROTOCOL_VERSION
    pods: tuple[PodSummary, ...] = ()
    cordoned: bool = False
    draining: bool = False
    workplane: WorkPlaneHost | None = None
    cert: bytes | None = None
    volumes: tuple[tuple[str, int], ...] = ()  # (workload id, ordinal) of its claim volumes
    host_path_roots: tuple[str, ...] = ()  # where hostPath volumes may point there

    def to_body(self) -> dict[str, Any]:
        cap = self.capacity
        body: dict[str, Any] = {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs)[:MAX_ADDRS],
            "arch": self.arch,
            "labels": dict(self.labels),
            "capacity": {"cpu_milli": cap.cpu_milli, "memory_bytes": cap.memory_bytes,
                         "memory_available_bytes": cap.memory_available_bytes,
                         "cgroup": cap.cgroup},
            "protocol": self.protocol,
            "pods": [p.to_body() for p in self.pods],
            "cordoned": self.cordoned,
            "draining": self.draining,
        }
        if self.workplane is not None:
            body["workplane"] = self.workplane.to_json()
        if self.cert is not None:
            body["cert"] = self.cert
        if self.volumes:
            body["volumes"] = [{"workload_id": w, "ordinal": o}
                               for w, o in self.volumes[:MAX_RECORD_VOLUMES]]
        if self.host_path_roots:
            body["host_path_roots"] = list(self.host_path_roots[:MAX_HOST_PATH_ROOTS])
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> MachineRecord:
        """From a body the MACHINE_RECORD schema accepted."""
        cap = body["capacity"]
        workplane = body.get("workplane")
        return cls(
            peer_id=body["peer_id"], addrs=tuple(body["addrs"]), arch=body["arch"],
            labels=dict(body["labels"]),
            capacity=RecordCapacity(cap["cpu_milli"], cap["memory_bytes"],
                                    cap["memory_available_bytes"], cap.get("cgroup", "")),
            protocol=body["protocol"],
            pods=tuple(PodSummary.from_body(p) for p in body.get("pods", [])),
            cordoned=body.get("cordoned", False), draining=body.get("draining", False),
            workplane=WorkPlaneHost.from_json(workplane) if workplane is not None else None,
            cert=body.get("cert"), volumes=tuple(
                (v["workload_id"], v["ordinal"]) for v in body.get("volumes", [])),
            host_path_roots=tuple(body.get("host_path_roots", [])))


@dataclass(frozen=True)
class MachineEntry:
    """What this agent believes about one machine: its newest record and when it was made."""

    peer_id: str
    record: MachineRecord
    ts: float

    def to_dict(self, now: float, self_id: str) -> dict[str, Any]:
        """A row of `beemesh nodes`."""
        rec = self.record
        return {
            "peer_id": self.peer_id,
            "arch": rec.arch,
            "cpu": rec.capacity.cpu_milli / 1000,
            "cpu_milli": rec.capacity.cpu_milli,
            "memory": rec.capacity.memory_bytes,
            "memory_available": rec.capacity.memory_available_bytes,
            "labels": dict(rec.labels),
            "addrs": list(rec.addrs),
            "cordoned": rec.cordoned,
            "draining": rec.draining,
            "pods": len(rec.pods),
            "volumes": [{"workload_id": w, "ordinal": o} for w, o in rec.volumes],
            "age_s": round(max(0.0, now - self.ts), 1),
            "self": self.peer_id == self_id,
        }


def entry_from_envelope(env: wire.Envelope) -> MachineEntry:
    """Turn a verified MachineRecord envelope into a view entry (RecordError if inconsistent)."""
    body = env.body
    if body["peer_id"] != peer_id(env.sender):
        raise RecordError("record names a peer id other than its signer's")
    return MachineEntry(body["peer_id"], MachineRecord.from_body(body), env.ts_ms / 1000)


def worth_announcing(published: MachineRecord | None, current: MachineRecord) -> bool:
    """Whether `current` says something `published` (the last one announced) does not.

    Free memory moves all the time and others only show it (`beemesh nodes`, `explain`): it
    counts once it has moved by a sixteenth of the machine's memory."""
    if published is None:
        return True
    was, now = published.capacity, current.capacity
    if abs(was.memory_available_bytes - now.memory_available_bytes) >= now.memory_bytes / 16:
        return True
    same_free = replace(now, memory_available_bytes=was.memory_available_bytes)
    return replace(current, capacity=same_free) != published
