"""Service records and the work plane's view of them (sans-IO).

A ServiceRecord is what one replica says about itself: workload id, ordinal, its workload
Peer ID, where it can be reached (addresses, ports), whether its probes say it is ready,
version, timestamp. It is signed by the replica's own workload key and carries the
`WorkloadCert` its machine issued for that key, so a receiver can check that a machine of
the fleet really runs that replica under that key. Records live `ttl_s` (15 s) from their
timestamp and are refreshed every 5 s; a replica that stops withdraws its record.

Records travel on the `workplane-events` topic and are stored in the Workload DHT under one
key per (workload, ordinal), where the newest (ts, version, peer id) wins. The signed
timestamp orders records, not `version`: a timestamp is checked against the clock (never more
than the skew window ahead), and `version` (the time of the record's last change) may not be
ahead of its own record's timestamp, so no record, forged or not, outranks the next honest
refresh for longer than the skew window. The view keeps every live copy, so duplicates of an
ordinal (after a partition) are visible to reconcile. No clock is read here: callers pass
`now`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beemesh import schema, wire
from beemesh.identity import peer_id as peer_id_of
from beemesh.manifest.checks import TEMPLATE_LEN
from beemesh.workplane.sync import ORDINAL, PORT

TOPIC = "workplane-events"
DHT_PREFIX = "/beemesh/workload"
DHT_NS = "svc"
RECORD_TTL_S = 15
MAX_RECORD_TTL_S = 60

# A machine vouching that a workload key belongs to a replica it runs; embedded in every
# ServiceRecord so work planes can tell a real replica's key from anyone else's.
WORKLOAD_CERT = wire.Kind("WorkloadCert", wire.MACHINE, schema.Struct(
    required={"machine": str, "peer_id": str, "workload_id": str, "ordinal": ORDINAL,
              "pod": str, "task": str},
    # the pod template the replica runs (`WorkloadSpec.template_hash`): rollouts read it
    optional={"template": str}), names_signer="machine")
SERVICE_RECORD = wire.Kind("ServiceRecord", wire.WORKLOAD, schema.Struct(required={
    "workload_id": str, "ordinal": ORDINAL, "peer_id": str, "pod": str, "task": str,
    "addrs": schema.ListOf(str, max_len=16), "ports": schema.ListOf(PORT, max_len=64),
    "ready": bool, "retiring": bool, "version": schema.NON_NEGATIVE,
    "ttl_s": schema.Int(1, MAX_RECORD_TTL_S), "cert": bytes,
}), names_signer="peer_id")
SERVICE_WITHDRAW = wire.Kind("ServiceWithdraw", wire.WORKLOAD, schema.Struct(required={
    "workload_id": str, "ordinal": ORDINAL, "peer_id": str, "cert": bytes,
}), names_signer="peer_id")
KINDS = {k.name: k for k in (SERVICE_RECORD, SERVICE_WITHDRAW)}


def dht_key(workload_id: str, ordinal: int) -> str:
    """One DHT slot per replica ordinal; short, because py-libp2p 0.8.1 servers refuse
    FIND_NODE keys over 50 bytes."""
    digest = hashlib.sha256(workload_id.encode()).digest()[:15]
    return f"/{DHT_NS}/{base64.b32encode(digest).decode().lower()}-{ordinal}"


@dataclass(frozen=True)
class ServiceRecord:
    workload_id: str
    ordinal: int
    peer_id: str
    pod: str
    task: str
    addrs: tuple[str, ...]
    ports: tuple[dict[str, Any], ...]
    ready: bool
    retiring: bool
    version: int
    ts: float
    expires_at: float
    machine: str  # the machine whose certificate vouches for this replica's key
    template: str = ""  # the pod template it runs, as that certificate says

    @property
    def newness(self) -> tuple[float, int, str]:
        """The order the DHT and the view agree on: newest (ts, version, peer id) wins."""
        return (self.ts, self.version, self.peer_id)

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"workload": self.workload_id, "ordinal": self.ordinal, "peer_id": self.peer_id,
                "pod": self.pod, "task": self.task, "addrs": list(self.addrs),
                "ports": [dict(p) for p in self.ports], "ready": self.ready,
                "retiring": self.retiring, "version": self.version, "machine": self.machine,
                "template": self.template,
                "age_s": round(max(0.0, now - self.ts), 1),
                "expires_in_s": round(max(0.0, self.expires_at - now), 1)}


def certificate(verifier: wire.Verifier, body: dict[str, Any]) -> wire.Envelope:
    """The WorkloadCert inside a record or withdrawal, checked against the body it vouches for."""
    cert = verifier.authenticate(body["cert"])
    c = cert.body
    if (c["peer_id"], c["workload_id"], c["ordinal"]) != (
            body["peer_id"], body["workload_id"], body["ordinal"]):
        raise wire.Rejected("untrusted", "certificate is for another replica or key")
    if "pod" in body and (c["pod"], c["task"]) != (body["pod"], body["task"]):
        raise wire.Rejected("untrusted", "certificate is for another pod or task")
    return cert


def record_from_envelope(env: wire.Envelope, cert_verifier: wire.Verifier, now: float,
                         machine_of_host: Callable[[str], str | None] | None = None,
                         host: str | None = None) -> ServiceRecord:
    """Check a verified ServiceRecord envelope's certificate and turn it into a view entry.

    `host` is the work-plane host that published it on pub/sub; it must be the work plane of
    the machine that issued the certificate (`machine_of_host`), so one machine cannot publish
    records for replicas another machine vouched for.
    """
    body = env.body
    if body["peer_id"] != peer_id_of(env.sender):
        raise wire.Rejected("untrusted", "record names a peer id other than its signer's")
    cert = certificate(cert_verifier, body)
    machine = cert.body["machine"]
    if host is not None and machine_of_host is not None and machine_of_host(host) != machine:
        raise wire.Rejected("untrusted", "record published by a work plane of another machine")
    if not 1 <= body["ttl_s"] <= MAX_RECORD_TTL_S:
        raise wire.Rejected("schema", f"ttl_s must be between 1 and {MAX_RECORD_TTL_S}")
    if body["ordinal"] < 0:
        raise wire.Rejected("schema", "ordinal must not be negative")
    if env.ts_ms / 1000 > now + wire.MAX_CLOCK_SKEW_S:
        raise wire.Rejected("stale", "record timestamp is ahead of the local clock")
    if body["version"] > env.ts_ms:
        raise wire.Rejected("schema", "version is ahead of the record's own timestamp")
    ts = env.ts_ms / 1000
    return ServiceRecord(
        workload_id=body["workload_id"], ordinal=body["ordinal"], peer_id=body["peer_id"],
        pod=body["pod"], task=body["task"], addrs=tuple(body["addrs"]),
        ports=tuple(dict(p) for p in body["ports"]), ready=body["ready"],
        retiring=body["retiring"], version=body["version"], ts=ts,
        expires_at=min(ts, now) + body["ttl_s"], machine=machine,
        template=cert.body.get("template", "")[:TEMPLATE_LEN])


Slot = tuple[str, int, str]  # (workload id, ordinal, peer id): one replica instance


class ServiceView:
    """Every live record, newest per replica instance, with how long each has been ready."""

    def __init__(self) -> None:
        self._records: dict[Slot, ServiceRecord] = {}
        self._ready_since: dict[Slot, float] = {}
        self._withdrawn: dict[Slot, tuple[float, float]] = {}  # -> (ts, forget after)
        # (workload, ordinal) -> task of the newest record ever seen: the epoch of a heal.
        self._last_task: dict[tuple[str, int], tuple[tuple[int, float, str], str]] = {}

    def apply(self, rec: ServiceRecord, now: float) -> bool:
        """Keep `rec` if it is live and newer than what we have for that replica."""
        slot = (rec.workload_id, rec.ordinal, rec.peer_id)
        if rec.expires_at <= now:
            return False
        gone = self._withdrawn.get(slot)
        if gone is not None and rec.ts <= gone[0]:
            return False
        current = self._records.get(slot)
        if current is not None and current.newness >= rec.newness:
            return False
        self._records[slot] = rec
        if not rec.ready:
            self._ready_since.pop(slot, None)
        else:
            self._ready_since.setdefault(slot, now)
        last = self._last_task.get(slot[:2])
        if last is None or last[0] < rec.newness:
            self._last_task[slot[:2]] = (rec.newness, rec.task)
        return True

    def withdraw(self, workload_id: str, ordinal: int, peer: str, ts: float, now: float) -> None:
        slot = (workload_id, ordinal, peer)
        self._withdrawn[slot] = (ts, max(ts, now) + MAX_RECORD_TTL_S)
        current = self._records.get(slot)
        if current is not None and current.ts > ts:
            return  # a late withdrawal: the replica published again since (same key)
        self._records.pop(slot, None)
        self._ready_since.pop(slot, None)

    def expire(self, now: float) -> None:
        for slot in [s for s, r in self._records.items() if r.expires_at <= now]:
            del self._records[slot]
            self._ready_since.pop(slot, None)
        for slot in [s for s, (_, until) in self._withdrawn.items() if until <= now]:
            del self._withdrawn[slot]

    def records(self, now: float, workload_id: str | None = None) -> list[ServiceRecord]:
        self.expire(now)
        return sorted((r for r in self._records.values()
                       if workload_id is None or r.workload_id == workload_id),
                      key=lambda r: (r.workload_id, r.ordinal, r.peer_id))

    def ordinal(self, workload_id: str, ordinal: int, now: float) -> list[ServiceRecord]:
        return [r for r in self.records(now, workload_id) if r.ordinal == ordinal]

    def ready_for(self, rec: ServiceRecord, now: float) -> float:
        """How long this replica has been ready without a break (0 if it is not ready)."""
        since = self._ready_since.get((rec.workload_id, rec.ordinal, rec.peer_id))
        return 0.0 if since is None else now - since

    def last_task(self, workload_id: str, ordinal: int) -> str | None:
        """Task id of the newest record ever seen for that ordinal, even an expired one."""
        last = self._last_task.get((workload_id, ordinal))
        return None if last is None else last[1]

    def forget_workload(self, workload_id: str) -> None:
        for slot in [s for s in self._records if s[0] == workload_id]:
            del self._records[slot]
            self._ready_since.pop(slot, None)
        for key in [k for k in self._last_task if k[0] == workload_id]:
            del self._last_task[key]
