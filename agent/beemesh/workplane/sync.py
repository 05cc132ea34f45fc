"""What the agent and its work plane say to each other: the one contract both processes import.

They talk JSON over a unix socket in the work plane's directory (`workplane_link` serves it):
- `POST /v1/work/report`: the work plane's `Report` (its host, what it sees), sent when it
  changes;
- `POST /v1/work/view`: `ViewRequest` -> `ViewAnswer`, the agent's `AgentView` (the replicas it
  runs and their probe results, the workloads it knows, the live machines, their work-plane
  hosts and the pods their records list). The request names the version the work plane holds;
  the agent answers as soon as its view differs from it, or after `wait_s` with no view (a
  long poll: an idle machine exchanges nothing but that every few seconds, where a 1-s sync
  of both in a worker thread was most of an idle work plane's CPU);
- `POST /v1/work/certify`: `CertifyRequest` -> `Certificate` (the machine vouches for a
  replica's workload key);
- `POST /v1/work/heal`: `HealRequest` -> `HealAnswer` (the agent checks it and publishes the
  Task, which only machine keys may do);
- `POST /v1/work/remove`: `RemoveRequest` (stop a surplus replica here).

Each record checks what it is built from (`from_json`, `SyncError` naming the field), so a
message from the other side is never trusted by shape alone.

Over 400 lines: one typed record per message of the contract and its schema, kept in one
module so that both processes import exactly the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from beemesh import schema
from beemesh.manifest.checks import MAX_REPLICAS, ManifestError
from beemesh.manifest.service import ServiceSpec
from beemesh.manifest.strategy import DEFAULT_STRATEGY, UpdateStrategy, strategy_from_dict

MAX_ITEMS = 4096
MAX_PODS = 512  # pods one machine lists in its record (and hands to its work plane)


class SyncError(ValueError):
    """A sync message that does not match its record; the text names the field."""


def _sync_fail(path: str | None, problem: str, fix: str) -> NoReturn:
    raise SyncError(f"{path}: {problem}")


def _checked(data: Any, shape: schema.Struct, what: str) -> dict[str, Any]:
    try:
        schema.check(data, shape, what)
    except schema.SchemaError as e:
        raise SyncError(str(e)) from None
    return data


WORKPLANE_HOST = schema.Struct(required={"peer_id": str,
                                         "addrs": schema.ListOf(str, max_len=16)})
ORDINAL = schema.Int(0, MAX_REPLICAS - 1)
PORT = schema.Struct(required={"name": str, "port": schema.PORT_NUMBER,
                               "host_port": schema.PORT_NUMBER, "protocol": str})


@dataclass(frozen=True)
class WorkPlaneHost:
    """Where a work plane listens: its libp2p host's Peer ID and addresses (announced in its
    machine's record; peers' work planes admit exactly these hosts)."""

    peer_id: str
    addrs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "addrs": list(self.addrs)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WorkPlaneHost:
        return cls(d["peer_id"], tuple(d["addrs"]))


@dataclass(frozen=True)
class Port:
    """A port a replica offers, as its ServiceRecord lists it."""

    name: str
    port: int
    host_port: int
    protocol: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "host_port": self.host_port,
                "protocol": self.protocol}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Port:
        return cls(d["name"], d["port"], d["host_port"], d["protocol"])


@dataclass(frozen=True)
class Replica:
    """A replica this machine runs, as its agent reports it."""

    pod: str
    workload_id: str
    ordinal: int
    task: str
    state: str
    ready: bool
    retiring: bool
    removing: bool
    ports: tuple[Port, ...]
    template: str = ""  # the pod template it runs (`WorkloadSpec.template_hash`)
    address: str = ""  # the pod's IP on this machine, where workload streams connect

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "workload": self.workload_id, "ordinal": self.ordinal,
                "task": self.task, "state": self.state, "ready": self.ready,
                "retiring": self.retiring, "removing": self.removing,
                "ports": [p.to_json() for p in self.ports], "template": self.template,
                "address": self.address}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Replica:
        return cls(d["pod"], d["workload"], d["ordinal"], d["task"], d["state"], d["ready"],
                   d["retiring"], d["removing"], tuple(Port.from_json(p) for p in d["ports"]),
                   d.get("template", ""), d.get("address", ""))


@dataclass(frozen=True)
class Service:
    """A Service the agent keeps, with the workloads its selector picks."""

    spec: ServiceSpec
    workloads: tuple[str, ...]

    @property
    def service_id(self) -> str:
        return self.spec.service_id

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "workloads": list(self.workloads)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Service:
        try:
            spec = ServiceSpec.from_dict(d["spec"])
        except ManifestError as e:
            raise SyncError(f"service: {e}") from None
        return cls(spec, tuple(d["workloads"]))


@dataclass(frozen=True)
class Workload:
    """A workload the agent holds a signed manifest of (and no Delete)."""

    workload_id: str
    replicas: int
    stateful: bool
    template: str = ""  # the newest signed pod template (`workplane.rollout` rolls to it)
    strategy: UpdateStrategy = DEFAULT_STRATEGY

    def to_json(self) -> dict[str, Any]:
        return {"workload_id": self.workload_id, "replicas": self.replicas,
                "stateful": self.stateful, "template": self.template,
                "strategy": self.strategy.to_dict()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Workload:
        kind = "StatefulSet" if d["stateful"] else "Deployment"
        strategy = (strategy_from_dict(d["strategy"], "workload.strategy", kind, _sync_fail)
                    if "strategy" in d else DEFAULT_STRATEGY)
        return cls(d["workload_id"], d["replicas"], d["stateful"], d.get("template", ""),
                   strategy)


@dataclass(frozen=True)
class HeldPod:
    """A pod a machine's accepted record lists: only for these does that machine's
    WorkloadCert count (`workplane.holding`)."""

    pod: str
    workload_id: str
    ordinal: int
    task: str

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "workload": self.workload_id, "ordinal": self.ordinal,
                "task": self.task}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HeldPod:
        return cls(d["pod"], d["workload"], d["ordinal"], d["task"])


@dataclass(frozen=True)
class Machine:
    """A live machine, where its work plane listens (None: it runs none), and the pods its
    record lists."""

    peer_id: str
    workplane: WorkPlaneHost | None
    pods: tuple[HeldPod, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id,
                "workplane": self.workplane.to_json() if self.workplane else None,
                "pods": [p.to_json() for p in self.pods]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Machine:
        wp = d.get("workplane")
        return cls(d["peer_id"], WorkPlaneHost.from_json(wp) if wp is not None else None,
                   tuple(HeldPod.from_json(p) for p in d.get("pods", ())))


REPLICA = schema.Struct(required={
    "pod": str, "workload": str, "ordinal": ORDINAL, "task": str, "state": str, "ready": bool,
    "retiring": bool, "removing": bool, "ports": schema.ListOf(PORT, max_len=64)},
    optional={"template": str, "address": str})
SERVICE = schema.Struct(required={"spec": schema.MapOf(str, schema.OPAQUE),
                                  "workloads": schema.ListOf(str, max_len=MAX_ITEMS)})
WORKLOAD = schema.Struct(required={"workload_id": str,
                                   "replicas": schema.Int(0, MAX_REPLICAS), "stateful": bool},
                         optional={"template": str, "strategy": schema.OPAQUE})
HELD_POD = schema.Struct(required={"pod": str, "workload": str, "ordinal": ORDINAL,
                                   "task": str})
MACHINE = schema.Struct(required={"peer_id": str},
                        optional={"workplane": WORKPLANE_HOST,
                                  "pods": schema.ListOf(HELD_POD, max_len=MAX_PODS)})
AGENT_VIEW = schema.Struct(required={
    "machine": str, "addrs": schema.ListOf(str, max_len=64),
    "replicas": schema.ListOf(REPLICA, max_len=MAX_ITEMS),
    "workloads": schema.ListOf(WORKLOAD, max_len=MAX_ITEMS),
    "deleted": schema.ListOf(str, max_len=MAX_ITEMS),
    "machines": schema.ListOf(MACHINE, max_len=MAX_ITEMS),
    "statefulset_margin_s": float},
    optional={"services": schema.ListOf(SERVICE, max_len=MAX_ITEMS)})


@dataclass(frozen=True)
class AgentView:
    """What the work plane acts on until the agent's view changes (compared with `==`)."""

    machine: str  # this machine's Peer ID
    addrs: tuple[str, ...]  # this machine's IP addresses (where its hostPorts are)
    replicas: tuple[Replica, ...]
    workloads: tuple[Workload, ...]
    deleted: frozenset[str]
    machines: tuple[Machine, ...]
    statefulset_margin_s: float
    services: tuple[Service, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "addrs": list(self.addrs),
                "replicas": [r.to_json() for r in self.replicas],
                "workloads": [w.to_json() for w in self.workloads],
                "deleted": sorted(self.deleted),
                "machines": [self._machine_json(m) for m in self.machines],
                "statefulset_margin_s": self.statefulset_margin_s,
                "services": [s.to_json() for s in self.services]}

    @staticmethod
    def _machine_json(m: Machine) -> dict[str, Any]:
        d = m.to_json()
        if d["workplane"] is None:
            del d["workplane"]
        return d

    @classmethod
    def from_json(cls, data: Any) -> AgentView:
        d = _checked(data, AGENT_VIEW, "agent view")
        return cls(d["machine"], tuple(d["addrs"]),
                   tuple(Replica.from_json(r) for r in d["replicas"]),
                   tuple(Workload.from_json(w) for w in d["workloads"]),
                   frozenset(d["deleted"]), tuple(Machine.from_json(m) for m in d["machines"]),
                   float(d["statefulset_margin_s"]),
                   tuple(Service.from_json(s) for s in d.get("services", ())))


MAX_VIEW_WAIT_S = 30
VIEW_REQUEST = schema.Struct(required={"have": str, "wait_s": schema.Int(0, MAX_VIEW_WAIT_S)})
VIEW_ANSWER = schema.Struct(required={"version": str}, optional={"view": AGENT_VIEW})


@dataclass(frozen=True)
class ViewRequest:
    have: str  # the version of the view the work plane holds ("" for none)
    wait_s: int  # how long the agent may hold the answer while its view is that version

    def to_json(self) -> dict[str, Any]:
        return {"have": self.have, "wait_s": self.wait_s}

    @classmethod
    def from_json(cls, data: Any) -> ViewRequest:
        d = _checked(data, VIEW_REQUEST, "view request")
        return cls(d["have"], d["wait_s"])


@dataclass(frozen=True)
class ViewAnswer:
    version: str
    view: AgentView | None  # None: still the version the work plane has

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": self.version}
        if self.view is not None:
            d["view"] = self.view.to_json()
        return d

    @classmethod
    def from_json(cls, data: Any) -> ViewAnswer:
        d = _checked(data, VIEW_ANSWER, "view answer")
        return cls(d["version"], AgentView.from_json(d["view"]) if "view" in d else None)


REPORT = schema.Struct(required={
    "host": WORKPLANE_HOST,
    "records": schema.ListOf(schema.MapOf(str, schema.OPAQUE), max_len=MAX_ITEMS),
    "peers": schema.MapOf(str, str, max_len=MAX_ITEMS), "synced": bool,
    "dropped": schema.MapOf(str, schema.NON_NEGATIVE, max_len=64),
    "gated": schema.NON_NEGATIVE},
    optional={"rollouts": schema.ListOf(schema.MapOf(str, schema.OPAQUE), max_len=MAX_ITEMS),
              "streams": schema.MapOf(str, schema.MapOf(str, schema.NON_NEGATIVE, max_len=64),
                                      max_len=MAX_ITEMS)})


@dataclass(frozen=True)
class Report:
    """What the work plane tells its agent, each time it changes (`key`)."""

    host: WorkPlaneHost  # the work plane's own libp2p host (announced in the machine record)
    records: tuple[dict[str, Any], ...]  # its view of service records, for `get endpoints`
    peers: Mapping[str, str]  # pod -> the workload Peer ID of its certified key
    synced: bool  # up long enough to have heard every live replica
    dropped: Mapping[str, int] = field(default_factory=dict)  # messages dropped, by reason
    gated: int = 0  # connections refused (not an announced work plane)
    rollouts: tuple[dict[str, Any], ...] = ()  # `rollout.Progress` of each workload it knows
    # workload streams: service id (or "refused") -> counter -> count (`streams.Counters`)
    streams: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host.to_json(), "records": list(self.records),
                "peers": dict(self.peers), "synced": self.synced,
                "dropped": dict(self.dropped), "gated": self.gated,
                "rollouts": list(self.rollouts),
                "streams": {k: dict(v) for k, v in self.streams.items()}}

    def key(self) -> Any:
        """What must reach the agent: all but the records' ages, which the agent keeps
        counting (`aged`)."""
        d = self.to_json()
        d["records"] = [{k: v for k, v in r.items() if k not in AGES} for r in self.records]
        return d

    @classmethod
    def from_json(cls, data: Any) -> Report:
        d = _checked(data, REPORT, "report")
        return cls(WorkPlaneHost.from_json(d["host"]), tuple(d["records"]), dict(d["peers"]),
                   d["synced"], dict(d["dropped"]), d["gated"], tuple(d.get("rollouts", ())),
                   dict(d.get("streams", {})))


AGES = ("age_s", "expires_in_s")  # `records.ServiceRecord.to_dict`: relative to its `now`


def aged(record: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """A reported record `seconds` after its report: older, and nearer its expiry."""
    d = dict(record)
    if isinstance(d.get("age_s"), int | float):
        d["age_s"] = round(d["age_s"] + seconds, 1)
    if isinstance(d.get("expires_in_s"), int | float):
        d["expires_in_s"] = round(max(0.0, d["expires_in_s"] - seconds), 1)
    return d


CERTIFY = schema.Struct(required={"pod": str, "task": str, "public_key": str})


@dataclass(frozen=True)
class CertifyRequest:
    pod: str
    task: str  # the task the work plane knows the pod by (a replaced pod is refused)
    public_key: str  # the replica's Ed25519 workload key, hex

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "task": self.task, "public_key": self.public_key}

    @classmethod
    def from_json(cls, data: Any) -> CertifyRequest:
        d = _checked(data, CERTIFY, "certify request")
        return cls(d["pod"], d["task"], d["public_key"])


@dataclass(frozen=True)
class Certificate:
    cert: bytes  # the machine-signed WorkloadCert envelope
    peer_id: str

    def to_json(self) -> dict[str, Any]:
        return {"cert": self.cert.hex(), "peer_id": self.peer_id}

    @classmethod
    def from_json(cls, data: Any) -> Certificate:
        d = _checked(data, schema.Struct(required={"cert": str, "peer_id": str}), "certificate")
        try:
            return cls(bytes.fromhex(d["cert"]), d["peer_id"])
        except ValueError:
            raise SyncError("certificate.cert: expected hex") from None


HEAL = schema.Struct(required={"workload_id": str, "ordinal": ORDINAL, "epoch": str},
                     optional={"template": str})


@dataclass(frozen=True)
class HealRequest:
    """A lost replica to replace, or (`template` set) a replica to roll to that template."""

    workload_id: str
    ordinal: int
    epoch: str  # the task id of the lost (or old) replica, or `reconcile.ORPHAN_EPOCH`
    template: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"workload_id": self.workload_id, "ordinal": self.ordinal, "epoch": self.epoch,
                **({"template": self.template} if self.template else {})}

    @classmethod
    def from_json(cls, data: Any) -> HealRequest:
        d = _checked(data, HEAL, "heal request")
        return cls(d["workload_id"], d["ordinal"], d["epoch"], d.get("template", ""))


@dataclass(frozen=True)
class HealAnswer:
    published: bool
    task_id: str = ""  # when published
    reason: str = ""  # why not, when refused

    def to_json(self) -> dict[str, Any]:
        if self.published:
            return {"state": "published", "task_id": self.task_id}
        return {"state": "refused", "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any) -> HealAnswer:
        d = _checked(data, schema.Struct(required={"state": str},
                                         optional={"task_id": str, "reason": str}),
                     "heal answer")
        return cls(d["state"] == "published", d.get("task_id", ""), d.get("reason", ""))


REMOVE = schema.Struct(required={"pod": str, "reason": str})


@dataclass(frozen=True)
class RemoveRequest:
    pod: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any) -> RemoveRequest:
        d = _checked(data, REMOVE, "remove request")
        return cls(d["pod"], d["reason"][:300])
