"""Machine records and the view of the fleet built from them (sans-IO).

Each agent announces a signed MachineRecord (addresses, arch, labels, capacity, protocol
version, TTL) on pub/sub and in the Machine DHT and refreshes it well inside its TTL. Every
agent keeps a MachineView: newest record per machine, dropped when it expires or when the
machine withdraws it on a clean shutdown. No clock is read here: callers pass `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beemesh import schema, wire
from beemesh.identity import peer_id

PROTOCOL_VERSION = 1
MAX_RECORD_TTL_S = 300
# How long a withdrawal shadows older records: the longest a record can live, plus the clock
# skew by which its timestamp may lie in the future.
TOMBSTONE_S = MAX_RECORD_TTL_S + wire.MAX_CLOCK_SKEW_S

# What a machine says about each pod it runs, so every agent can answer `beemesh get pods`.
# `ready` is what its probes say, `peer` the replica's workload Peer ID once its work plane has
# a certified key (the machine plane refuses that key), `retiring` marks a replica being drained.
POD_SUMMARY = schema.Struct(
    required={"workload": str, "replica": int, "task": str, "pod": str, "state": str,
              "created": float},
    optional={"ready": bool, "peer": str, "retiring": bool})
# Where this machine's work plane listens: peers' work planes admit exactly these hosts.
WORKPLANE_HOST = schema.Struct(required={"peer_id": str, "addrs": schema.ListOf(str, max_len=16)})

MACHINE_RECORD = wire.Kind(
    "MachineRecord",
    wire.MACHINE,
    schema.Struct(
        required={
            "peer_id": str,
            "addrs": schema.ListOf(str, max_len=16),
            "arch": str,
            "labels": schema.MapOf(str, str, max_len=64),
            "capacity": schema.Struct(
                required={"cpu_milli": int, "memory_bytes": int, "memory_available_bytes": int},
                optional={"cgroup": str},
            ),
            "protocol": int,
            "ttl_s": int,
        },
        optional={"cordoned": bool, "draining": bool,
                  "pods": schema.ListOf(POD_SUMMARY, max_len=512),
                  "workplane": WORKPLANE_HOST},
    ),
    names_signer="peer_id",
)
MACHINE_WITHDRAW = wire.Kind(
    "MachineWithdraw", wire.MACHINE, schema.Struct(required={"peer_id": str}),
    names_signer="peer_id",
)


class RecordError(ValueError):
    """A record that verified as an envelope but makes no sense as a machine record."""


@dataclass(frozen=True)
class MachineEntry:
    """What this agent believes about one machine."""

    peer_id: str
    body: dict[str, Any]
    ts: float
    expires_at: float

    def to_dict(self, now: float, self_id: str) -> dict[str, Any]:
        cap = self.body["capacity"]
        return {
            "peer_id": self.peer_id,
            "arch": self.body["arch"],
            "cpu": cap["cpu_milli"] / 1000,
            "cpu_milli": cap["cpu_milli"],
            "memory": cap["memory_bytes"],
            "memory_available": cap["memory_available_bytes"],
            "labels": dict(self.body["labels"]),
            "addrs": list(self.body["addrs"]),
            "cordoned": bool(self.body.get("cordoned", False)),
            "age_s": round(max(0.0, now - self.ts), 1),
            "expires_in_s": round(max(0.0, self.expires_at - now), 1),
            "self": self.peer_id == self_id,
        }


def entry_from_envelope(env: wire.Envelope, now: float) -> MachineEntry:
    """Turn a verified MachineRecord envelope into a view entry (RecordError if inconsistent)."""
    body = env.body
    if body["peer_id"] != peer_id(env.sender):
        raise RecordError("record names a peer id other than its signer's")
    if not 1 <= body["ttl_s"] <= MAX_RECORD_TTL_S:
        raise RecordError(f"ttl_s must be between 1 and {MAX_RECORD_TTL_S}")
    ts = env.ts_ms / 1000
    # A record is good for ttl_s from when it was made, but never from a future timestamp.
    return MachineEntry(body["peer_id"], body, ts, min(ts, now) + body["ttl_s"])


class MachineView:
    """Newest unexpired record per machine, and who was a member recently (for quorum)."""

    def __init__(self) -> None:
        self._entries: dict[str, MachineEntry] = {}
        # peer -> expiry of its newest record: machines that vanished without withdrawing stay
        # members for quorum_memory_s, so a partition cannot be mistaken for a smaller fleet.
        self._last_seen: dict[str, float] = {}
        # peer -> (withdrawal ts, forget-after): records older than a withdrawal (still in the
        # DHT or in flight on pub/sub) must not bring a departed machine back.
        self._withdrawn: dict[str, tuple[float, float]] = {}

    def apply(self, entry: MachineEntry, now: float) -> bool:
        """Store `entry` if it is newer than what we have and not expired; True if stored."""
        if entry.expires_at <= now:
            return False
        tombstone = self._withdrawn.get(entry.peer_id)
        if tombstone is not None and entry.ts <= tombstone[0]:
            return False
        current = self._entries.get(entry.peer_id)
        if current is not None and current.ts >= entry.ts:
            return False
        self._entries[entry.peer_id] = entry
        self._last_seen[entry.peer_id] = entry.expires_at
        return True

    def withdraw(self, peer: str, ts: float, now: float) -> bool:
        """Drop `peer` and ignore its records made up to `ts`."""
        self._withdrawn[peer] = (ts, max(now, ts) + TOMBSTONE_S)
        self._last_seen.pop(peer, None)  # it left on purpose: no longer counts for quorum
        return self._entries.pop(peer, None) is not None

    def expire(self, now: float) -> list[str]:
        gone = [p for p, e in self._entries.items() if e.expires_at <= now]
        for p in gone:
            del self._entries[p]
        for p in [p for p, (_, until) in self._withdrawn.items() if until <= now]:
            del self._withdrawn[p]
        return gone

    def get(self, peer: str) -> MachineEntry | None:
        return self._entries.get(peer)

    def entries(self, now: float) -> list[MachineEntry]:
        self.expire(now)
        return sorted(self._entries.values(), key=lambda e: e.peer_id)

    def membership(self, now: float, memory_s: float) -> tuple[int, int]:
        """(machines visible now, machines that count as members): a member is visible, or
        was seen within `memory_s` and did not withdraw."""
        visible = len(self.entries(now))
        for peer in [p for p, t in self._last_seen.items() if t + memory_s <= now]:
            del self._last_seen[peer]
        known = len(set(self._last_seen) | set(self._entries))
        return visible, known

    def members(self) -> dict[str, float]:
        """Peer -> expiry of its newest record, for every member remembered (to persist)."""
        return dict(self._last_seen)

    def remember(self, members: dict[str, float]) -> None:
        """Members a previous run of this agent knew: a restart must not shrink the fleet to
        the machines in sight, or a cut-off machine would count itself a majority of one."""
        for peer, expiry in members.items():
            self._last_seen[peer] = max(expiry, self._last_seen.get(peer, expiry))

    def has_majority(self, now: float, memory_s: float) -> bool:
        """This side of a partition sees a strict majority of the members."""
        visible, known = self.membership(now, memory_s)
        return visible * 2 > known

    def outnumbered(self, now: float, memory_s: float) -> bool:
        """The members out of sight are a strict majority: the other side may act without us."""
        visible, known = self.membership(now, memory_s)
        return (known - visible) * 2 > known
