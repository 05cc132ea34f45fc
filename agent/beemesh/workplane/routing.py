"""Which replica a new workload-stream connection goes to (sans-IO: `now` is passed in).

Candidates are the live records of the workloads a Service selects (one ordinal's only, for a
headless Service's per-ordinal name). A connection goes to a ready replica: one on this machine
first, then the remote ones whose measured round-trip time (the yamux ping of the work-plane
connection to their machine) is within `NEAR_FACTOR` x + `NEAR_SLACK_S` of the best; within that
tier, connections take turns, so they spread across equally near replicas. The caller tries the
returned order until one answers; a replica that failed is passed over for `DOWN_S` (unless
nothing else is left). A record stops being a candidate when it says not ready or retiring, is
withdrawn or expires (15 s TTL), so a dead machine's replicas stop receiving new connections
within a TTL at most, and at once after a failed attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NEAR_FACTOR = 2.0
NEAR_SLACK_S = 0.010  # a busy host's Python adds milliseconds of jitter to every ping
DOWN_S = 10.0
MAX_TRIES = 3


@dataclass(frozen=True)
class Endpoint:
    peer_id: str  # the replica's workload Peer ID
    workload_id: str
    ordinal: int
    machine: str
    local: bool  # on this machine
    rtt_s: float | None  # to its machine's work plane; None: not measured (yet)
    host: str | None = None  # its machine's work-plane host; None: none announced


class Router:
    def __init__(self) -> None:
        self._down: dict[str, float] = {}  # peer id -> until
        self._turn: dict[str, int] = {}  # service id -> connections routed

    def order(self, service_id: str, endpoints: Iterable[Endpoint], now: float) -> list[Endpoint]:
        """The endpoints to try, best first (at most MAX_TRIES)."""
        for peer in [p for p, until in self._down.items() if until <= now]:
            del self._down[peer]
        eps = sorted(endpoints, key=lambda e: (e.workload_id, e.ordinal, e.peer_id))
        up = [e for e in eps if e.peer_id not in self._down] or eps
        local = [e for e in up if e.local]
        if local:
            first, rest = local, [e for e in up if not e.local]
        else:
            known = [e.rtt_s for e in up if e.rtt_s is not None]
            limit = min(known) * NEAR_FACTOR + NEAR_SLACK_S if known else None
            first = [e for e in up if limit is None or e.rtt_s is None or e.rtt_s <= limit]
            rest = [e for e in up if e not in first]
        rest.sort(key=lambda e: (e.rtt_s is None, e.rtt_s or 0.0))
        turn = self._turn.get(service_id, 0)
        self._turn[service_id] = turn + 1
        k = turn % len(first) if first else 0
        return (first[k:] + first[:k] + rest)[:MAX_TRIES]

    def failed(self, peer_id: str, now: float) -> None:
        self._down[peer_id] = now + DOWN_S

    def forget(self, services: set[str]) -> None:
        for sid in [s for s in self._turn if s not in services]:
            del self._turn[sid]
