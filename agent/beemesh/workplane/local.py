"""The replicas this machine runs, as its work plane publishes them: what each one's signed
ServiceRecord says, when its version moves, and its withdrawal (pure: the clock is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.workplane import sync
from beemesh.workplane.records import RECORD_TTL_S, SERVICE_RECORD, SERVICE_WITHDRAW


@dataclass
class Local:
    """One replica this machine runs (its stream identity too: `streams.Identity`)."""

    pod: str
    workload_id: str
    ordinal: int
    task: str
    key: KeyPair
    cert: bytes | None = None
    content: tuple[Any, ...] = ()  # what the last record said (`content`)
    version: int = 0
    published_at: float = 0.0


def content(mine: Local, state: sync.AgentView) -> tuple[Any, ...]:
    """What a record of `mine` says that can change: ready, retiring, addresses, ports
    (empty: the agent no longer lists the replica)."""
    r = next((r for r in state.replicas if r.pod == mine.pod), None)
    if r is None:
        return ()
    return (r.ready, r.retiring, state.addrs, r.ports)


def sealed_record(mine: Local, state: sync.AgentView, now: float) -> bytes | None:
    """The signed ServiceRecord of `mine` now (None: not certified yet, or not listed). A
    change of content moves its version to the time of the change."""
    now_content = content(mine, state)
    if mine.cert is None or not now_content:
        return None
    if now_content != mine.content:
        mine.content = now_content
        # Milliseconds of the change (shown, not ordered by: records order by their signed
        # timestamp, and receivers refuse a version ahead of it).
        mine.version = int(now * 1000)
    ready, retiring, addrs, ports = now_content
    version = min(mine.version, int(now * 1000))  # receivers refuse one ahead of `now`
    body = {"workload_id": mine.workload_id, "ordinal": mine.ordinal,
            "peer_id": mine.key.peer_id, "pod": mine.pod, "task": mine.task,
            "addrs": list(addrs), "ports": [p.to_json() for p in ports], "ready": ready,
            "retiring": retiring, "version": version, "ttl_s": RECORD_TTL_S, "cert": mine.cert}
    return wire.seal(mine.key, SERVICE_RECORD.name, body, now)


def sealed_withdrawal(mine: Local, now: float) -> bytes:
    body = {"workload_id": mine.workload_id, "ordinal": mine.ordinal,
            "peer_id": mine.key.peer_id, "cert": mine.cert}
    return wire.seal(mine.key, SERVICE_WITHDRAW.name, body, now)
