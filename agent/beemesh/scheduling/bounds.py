"""What another machine's word on scheduling is worth (sans-IO).

An admitted machine can still lie about itself. Everything it says about the auction is
checked against what it has already committed to in public, so a rogue machine can do no more
than its share:

- a **bid** is worth at most what the bidder's last accepted machine record allows: `ceiling`
  scores the task against the record as if the machine had all it advertises free, had been up
  for ever and cost nothing, so an honest bid never exceeds it, and a bid above it (or from a
  machine with no record, or one the record makes ineligible) is refused (`score`);
- lease hints and `Deployed` count only from the winner the auction recorded
  (`scheduling.auction`), and duplicates are ranked by `duplicate_rank`, which nobody chooses.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection
from typing import Protocol

from beemesh.membership.records import MachineRecord, PodSummary
from beemesh.scheduling.scoring import (
    RELIABILITY_HORIZON_S,
    LocalState,
    TaskRequest,
    ineligible_reason,
    score,
)


class LeaseLimits(Protocol):
    """The auction's `Params` as far as lease hints go."""

    @property
    def max_lease_ahead_s(self) -> float: ...

    @property
    def max_lease_hold_s(self) -> float: ...


def advertised(record: MachineRecord) -> LocalState:
    """The most a machine with this record could have to offer: everything it advertises free,
    up for the whole reliability horizon, free of charge. Its replicas are the pods its record
    lists (an honest machine counts those and the ones it is deploying)."""
    cap = record.capacity
    return LocalState(
        arch=record.arch, labels=dict(record.labels), cordoned=False, runtime_ok=True,
        cpu_milli_total=cap.cpu_milli, memory_bytes_total=cap.memory_bytes,
        cpu_milli_free=cap.cpu_milli, memory_bytes_free=cap.memory_bytes,
        replicas_here=dict(Counter(p.workload_id for p in record.pods)),
        uptime_s=RELIABILITY_HORIZON_S, price=0.0)


def ceiling(req: TaskRequest, record: MachineRecord) -> int | None:
    """The highest score a machine with this record can bid for `req`; None: it cannot bid
    at all (wrong arch, labels the nodeSelector wants, or less capacity than the task needs)."""
    state = advertised(record)
    if ineligible_reason(req, state) is not None:
        return None
    return score(req, state)


def bid_refusal(req: TaskRequest, record: MachineRecord | None, bid_score: int) -> str | None:
    """Why a bid of `bid_score` for `req` is not believed, or None when it may count.

    A bidder whose record this agent does not hold (yet, or any more: just after a partition
    heals, or in a backlog) is believed: every machine must see the same bids to pick the
    same winner, and dropping an honest bid here split auctions and started StatefulSet
    replicas twice. Only an admitted machine can bid at all (`membership.admission`)."""
    if record is None:
        return None
    top = ceiling(req, record)
    if top is None:
        return f"bidder's record cannot run it: {ineligible_reason(req, advertised(record))}"
    if bid_score > top:
        return f"score {bid_score} above the {top} its record allows"
    return None


def claim_counts(machine: str, pod: PodSummary, winners: Collection[str] | None) -> bool:
    """A pod another machine's record lists counts (blocks heals, makes `apply` answer
    "exists", draws `logs`) unless this agent follows the pod's task and its rounds picked
    (or saw bids from) other machines, never that one (`winners`: None when the task is not
    followed here).

    A task none of whose rounds picked anyone here (this agent was cut off, or saw no bids)
    is taken at the record's word: after a partition, the record of the machine that placed
    it on the other side is what stops this one from starting the replica a second time."""
    return not winners or machine in winners


def duplicate_rank(task_id: str, machine: str) -> bytes:
    """Which of two machines running the same task keeps it: the higher rank. Derived from
    data neither chooses (the task id and the machine's key), never from a claimed score."""
    return hashlib.sha256(f"{task_id}\0{machine}".encode()).digest()


def lease_refusal(task_id: str, holder: str, won_at: float | None, expires_at: float,
                  now: float, limits: LeaseLimits) -> tuple[str, str] | None:
    """(reason, detail) when a lease hint must not hold others back: `holder` won no round
    (`won_at` None), or it expires too far ahead, or the winner has held the task too long."""
    if won_at is None:
        return "not_winner", f"lease hint for {task_id} from {holder}, whom no round picked"
    if expires_at > now + limits.max_lease_ahead_s:
        return "stale", f"lease hint from {holder} expires {expires_at - now:.0f} s ahead"
    if now - won_at > limits.max_lease_hold_s:
        return "stale", f"{holder} has held {task_id} for {now - won_at:.0f} s, still no deploy"
    return None
