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
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Protocol

from beemesh.membership.records import MachineRecord
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


UNBOUNDED_DISK = 2**62


def advertised(record: MachineRecord) -> LocalState:
    """The most a machine with this record could have to offer: everything it advertises free,
    up for the whole reliability horizon, free of charge, an empty disk of unbounded size
    (records do not carry disk). Its replicas are the pods its record lists (an honest machine
    counts those and the ones it is deploying)."""
    cap = record.capacity
    return LocalState(
        arch=record.arch, labels=dict(record.labels), cordoned=False, runtime_ok=True,
        cpu_milli_total=cap.cpu_milli, memory_bytes_total=cap.memory_bytes,
        cpu_milli_free=cap.cpu_milli, memory_bytes_free=cap.memory_bytes,
        replicas_here=dict(Counter(p.workload_id for p in record.pods)),
        uptime_s=RELIABILITY_HORIZON_S, price=0.0, machine=record.peer_id,
        host_path_roots=record.host_path_roots, volumes_here=frozenset(record.volumes),
        disk_free_bytes=UNBOUNDED_DISK, disk_total_bytes=UNBOUNDED_DISK)


def ceiling(req: TaskRequest, record: MachineRecord) -> int | None:
    """The highest score a machine with this record can bid for `req`; None: it cannot bid
    at all (wrong arch, labels the nodeSelector wants, or less capacity than the task needs).
    Whether an OrderedReady ordinal may start yet is the fleet's state, not the bidder's: the
    bidder judged it from what it saw."""
    req = replace(req, ordered=False)
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


class Claims:
    """Which pods other machines' records list count (block heals, make `apply` answer
    "exists", draw `logs`, let a machine certify the replica's key on the work plane).

    A pod counts if a round of its task here picked its machine or saw it bid (`winners`:
    None when the task is not followed here, empty when no round here saw a bid). Otherwise
    only if vouched for: a round here once picked it (the auction has since forgotten the
    task: remembered here), or the machine listed it on arrival
    (`MachineView.listed_on_arrival`): after a partition the record of the machine that placed
    it on the other side is all the evidence there is, and what stops this side starting the
    replica a second time. A machine in view all along that starts listing a pod of a task
    no round here placed invented it."""

    def __init__(self, view: ClaimsView, arrival_grace_s: float,
                 on_refused: Callable[[str, str, str], None]) -> None:
        """`on_refused(machine, task, why)`: once per claim refused (counted as `claim`)."""
        self.view = view
        self.arrival_grace_s = arrival_grace_s
        self.on_refused = on_refused
        self._picked: set[tuple[str, str]] = set()  # (machine, task) a round here vouched for
        self._refused: set[tuple[str, str]] = set()  # reported to on_refused
        self._prune_at = PICKED_PRUNE_AT

    def count(self, machine: str, task: str, winners: Collection[str] | None) -> bool:
        claim = (machine, task)
        if winners:
            if machine not in winners:
                return self._refuse(claim, "a round here placed that task elsewhere")
            if claim not in self._picked:
                self._picked.add(claim)
                self._prune()
            return True
        if claim in self._picked or self.view.listed_on_arrival(machine, task,
                                                                self.arrival_grace_s):
            return True
        return self._refuse(claim, "no round here placed that task, and it was listed "
                            "after its machine came into view")

    def _refuse(self, claim: tuple[str, str], why: str) -> bool:
        if claim not in self._refused:
            self._refused.add(claim)
            self._prune()
            self.on_refused(*claim, why)
        return False

    def _prune(self) -> None:
        """Keep what live records list, in bounds."""
        if len(self._picked) + len(self._refused) > self._prune_at:
            self._picked = {c for c in self._picked if self.view.lists(*c)}
            self._refused = {c for c in self._refused if self.view.lists(*c)}
            self._prune_at = 2 * (len(self._picked) + len(self._refused)) + PICKED_PRUNE_AT


class ClaimsView(Protocol):
    def listed_on_arrival(self, peer: str, task: str, grace_s: float) -> bool: ...
    def lists(self, peer: str, task: str) -> bool: ...


# `Claims` prunes what it remembers to what live records list once it holds this many (then
# twice what is left plus this), so a machine listing ever new tasks cannot grow it.
PICKED_PRUNE_AT = 1024


def duplicate_rank(subject: str, machine: str) -> bytes:
    """Which of two machines running copies of the same task (or replica: `subject`) keeps
    its copy: the higher rank. Derived from data neither chooses (the subject and the
    machine's certified key), never from a claimed score or a key a machine can mint."""
    return hashlib.sha256(f"{subject}\0{machine}".encode()).digest()


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
