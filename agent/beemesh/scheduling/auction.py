"""The per-task auction as a pure state machine (sans-IO).

Flow (docs/architecture.md, "Scheduling"): a task is seen -> this machine decides whether it
is eligible -> it bids after a delay that shrinks as its score grows, unless a better bid was
already seen -> when its selection window (250 ms +- 100 ms, stretched by how late messages
arrive in a busy mesh) closes every machine picks the same winner, max (score, machine id) ->
the winner writes a lease hint, deploys and reports `Deployed`/`Failed` -> the others wait
lease TTL + 1 s (+ jitter); if nothing was deployed and no live lease exists they re-enter
with the next round. Duplicates are tolerated: a machine that deployed a task and learns of a
deployment by a machine a round here picked and ranked higher (`bounds.duplicate_rank`) drops
its copy. Lease hints and `Deployed` count only from a machine that bid in or won a round here
(`scheduling.bounds`).

Over 400 lines on purpose: every transition of the one task lifecycle is in this one class, so
that it can be read (and tested on a fake clock) in one place, as h11 keeps its state machine.

Callers feed events in with the current time and act on the returned actions; `tick(now)`
fires timers and `next_deadline()` says when it next needs to be called.

This is the one task lifecycle: `status()` derives what the API and the heal checks report
(pending, deployed where, which machines failed it) from the auction's own state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from beemesh import wire
from beemesh.scheduling.actions import (
    Action,
    CheckLease,
    Deploy,
    DropDuplicate,
    Forget,
    Note,
    PublishBid,
    PublishDeployed,
    PublishFailed,
    WriteLease,
)
from beemesh.scheduling.bounds import duplicate_rank, lease_refusal
from beemesh.scheduling.messages import MAX_LEASE_AHEAD_S
from beemesh.scheduling.scoring import (
    ORDERED_READY,
    SCORE_MAX,
    LocalState,
    TaskRequest,
    ineligible_reason,
    score,
)

BidKey = tuple[int, str]  # (score, machine id): the total order every machine agrees on
MAX_BIDDERS = 1_024  # bidders remembered per task (only admitted machines can bid at all)


@dataclass(frozen=True)
class Params:
    selection_s: float = 0.25
    jitter_s: float = 0.1
    lease_ttl_s: float = 3.0
    lease_renew_s: float = 1.0
    backoff_jitter_s: float = 0.5
    keep_done_s: float = 600.0  # remember finished tasks this long (late messages, dedupe)
    max_stretch_s: float = 10.0  # most a window stretches for messages arriving late
    max_lease_ahead_s: float = MAX_LEASE_AHEAD_S  # a later expiry is not believed
    # A winner's lease hints are believed this long after it won at most: a deploy that takes
    # longer (or a winner that renews for ever and never deploys) no longer holds others back.
    max_lease_hold_s: float = 600.0
    max_tasks: int = 10_000  # tasks followed at once (finished ones are forgotten after 10 min)
    max_tasks_per_replica: int = 8  # an apply, heals and drains of one replica: a handful
    recheck_ordered_s: float = 1.0  # how often a waiting OrderedReady ordinal is looked at
    suppression: bool = True  # withhold a bid when a better one was already seen

    @property
    def max_bid_delay_s(self) -> float:
        """Bids must leave before the shortest possible window closes."""
        return max(0.0, self.selection_s - self.jitter_s) * 0.8


class Phase(Enum):
    BIDDING = "bidding"  # window open
    WAITING = "waiting"  # someone else won (or nobody bid); timer to re-check
    CHECKING = "checking"  # asked the shell for the lease hint
    DEPLOYING = "deploying"  # we won and are deploying
    RUNNING = "running"  # we deployed it
    DONE = "done"  # another machine deployed it


@dataclass
class TaskState:
    task_id: str
    request: TaskRequest
    round: int = 0
    phase: Phase = Phase.BIDDING
    my_bid: BidKey | None = None
    bid_at: float | None = None  # when to publish my bid (None: sent, suppressed or none)
    best_other: BidKey | None = None
    window_end: float = 0.0
    deadline: float | None = None
    renew_at: float | None = None
    # An OrderedReady ordinal this machine may not bid for yet: when to look again (a lower
    # ordinal getting ready starts the next round at once, not after the lease wait)
    recheck_at: float | None = None
    deployed_by: str | None = None  # the highest-ranked winner that reported Deployed
    winners: dict[str, float] = field(default_factory=dict)  # machine -> when it first won
    # machine -> when it first bid: a bidder may have won in its own view of a round (views
    # differ by a message's delay), so its lease hint and Deployed are believed too
    bidders: dict[str, float] = field(default_factory=dict)
    excluded: bool = False  # this machine failed it; do not bid again
    bids_seen: int = 0
    bids_sent: int = 0
    bids_suppressed: int = 0
    finished_at: float | None = None
    ineligible: str | None = None
    failures: list[str] = field(default_factory=list)  # "machine: reason", oldest first

    @property
    def winner(self) -> BidKey | None:
        bids = [b for b in (self.my_bid, self.best_other) if b is not None]
        return max(bids) if bids else None

    @property
    def placing(self) -> bool:
        """Still being placed: no machine runs it yet as far as this one knows."""
        return self.phase not in (Phase.DONE, Phase.RUNNING)


@dataclass(frozen=True)
class TaskStatus:
    """What a task's auction says about it, for `beemesh apply --wait` and `get`."""

    state: str  # "pending" or "deployed"
    machine: str  # where it was deployed ("" while pending)
    failures: tuple[str, ...]  # "machine: reason" of every machine that failed it
    ineligible_here: str = ""  # why this machine does not bid for it, if it does not

    @property
    def reason(self) -> str:
        return self.failures[-1].split(": ", 1)[-1] if self.failures else ""


class Auctioneer:
    """All auctions this machine takes part in."""

    def __init__(self, machine_id: str, rng: random.Random, params: Params | None = None,
                 lateness: Callable[[float], float] = lambda _now: 0.0) -> None:
        """`lateness(now)`: how much later than usual messages arrive (membership.lateness).
        A window stretches by it, so bids queued in a busy mesh still count and one machine
        wins, not each."""
        self.machine_id = machine_id
        self.rng = rng
        self.params = params or Params()
        self.lateness = lateness
        self.tasks: dict[str, TaskState] = {}
        self.bids_sent_total = 0
        self.bids_suppressed_total = 0

    # ---- inputs ----------------------------------------------------------------------------

    def task(self, task_id: str, request: TaskRequest, now: float,
             local: Callable[[], LocalState]) -> list[Action]:
        """A Task was seen (first time or republished)."""
        st = self.tasks.get(task_id)
        if st is None:
            st = self.tasks[task_id] = TaskState(task_id, request)
            return self._enter_round(st, 1, now, local)
        if st.phase is Phase.WAITING and st.deployed_by is None and st.winner is None:
            return self._enter_round(st, st.round + 1, now, local)  # nobody bid: re-evaluate
        return []

    def bid(self, task_id: str, round_: int, bid_score: int, machine: str, now: float,
            local: Callable[[], LocalState]) -> list[Action]:
        st = self.tasks.get(task_id)
        if st is None or machine == self.machine_id:
            return []
        actions: list[Action] = []
        if len(st.bidders) < MAX_BIDDERS:
            st.bidders.setdefault(machine, now)
        if round_ > st.round and st.phase in (Phase.WAITING, Phase.CHECKING):
            # Others re-entered first: our windows close earlier than a fresh round's would,
            # so bid at once (still subject to suppression below).
            actions += self._enter_round(st, round_, now, local, bid_now=True)
        if round_ != st.round:
            return actions
        st.bids_seen += 1
        key = (bid_score, machine)
        if st.best_other is None or key > st.best_other:
            st.best_other = key
        if st.phase is not Phase.BIDDING:
            actions.append(Note(task_id, f"late bid from {machine} in round {round_}"))
        return actions

    def deployed(self, task_id: str, machine: str, now: float) -> list[Action]:
        """`machine` reports it deployed the task. Raises `wire.Rejected("not_winner")` when
        it neither bid in nor won any round of this auction: its word would stop the auction
        for a replica it may not run. Only a machine a round here picked can make this one
        drop its own running copy (ranked by a hash nobody chooses, never by a score); a
        bidder that won in its own view keeps its copy too, and the work plane's surplus rule
        removes one of the two."""
        st = self.tasks.get(task_id)
        if st is None or machine == self.machine_id:
            return []
        if machine not in st.winners and machine not in st.bidders:
            raise wire.Rejected("not_winner", f"{machine} reports task {task_id} deployed, "
                                "but it neither bid nor won here")
        if st.deployed_by is None or self._outranks(task_id, machine, st.deployed_by):
            st.deployed_by = machine
        if st.phase in (Phase.DEPLOYING, Phase.RUNNING):
            if (st.phase is Phase.RUNNING and machine in st.winners
                    and self._outranks(task_id, machine, self.machine_id)):
                return self._drop_duplicate(st, machine, now)
            return []  # DEPLOYING: decided when our deploy finishes
        self._finish(st, Phase.DONE, now)
        return [Note(task_id, f"deployed by {machine}")]

    def failed(self, task_id: str, machine: str, reason: str, now: float,
               local: Callable[[], LocalState]) -> list[Action]:
        st = self.tasks.get(task_id)
        if st is None or machine == self.machine_id:
            return []
        st.failures.append(f"{machine}: {reason}")
        if st.phase not in (Phase.WAITING, Phase.CHECKING) or st.deployed_by is not None:
            return []
        if st.winner is not None and st.winner[1] != machine:
            return []  # a stale Failed from an earlier round's winner
        return [Note(task_id, f"{machine} failed it; re-entering"),
                *self._enter_round(st, st.round + 1, now, local)]

    def lease_result(self, task_id: str, holder: str | None, expires_at: float, now: float,
                     local: Callable[[], LocalState]) -> list[Action]:
        st = self.tasks.get(task_id)
        if st is None or st.phase is not Phase.CHECKING:
            return []
        if st.deployed_by is not None:
            self._finish(st, Phase.DONE, now)
            return []
        if (holder is not None and now < expires_at
                and self._lease_refusal(st, holder, expires_at, now) is None):
            st.phase = Phase.WAITING
            st.deadline = expires_at + 1.0 + self.rng.uniform(0, self.params.backoff_jitter_s)
            return []
        return [Note(task_id, "no deployment and no live lease; re-entering"),
                *self._enter_round(st, st.round + 1, now, local)]

    def lease_seen(self, task_id: str, holder: str, expires_at: float, now: float) -> None:
        """A lease renewal announced on pub/sub: the holder is still deploying; keep waiting.
        Raises `wire.Rejected` for a hint nobody may hold: from a machine no round picked
        (`not_winner`), expiring too far ahead or held too long (`stale`)."""
        st = self.tasks.get(task_id)
        if (st is None or holder == self.machine_id or expires_at <= now
                or st.phase not in (Phase.WAITING, Phase.CHECKING)):
            return
        refusal = self._lease_refusal(st, holder, expires_at, now)
        if refusal is not None:
            raise wire.Rejected(*refusal)
        st.phase = Phase.WAITING
        later = expires_at + 1.0 + self.rng.uniform(0, self.params.backoff_jitter_s)
        st.deadline = later if st.deadline is None else max(st.deadline, later)

    def deploy_result(self, task_id: str, ok: bool, reason: str, now: float) -> list[Action]:
        st = self.tasks.get(task_id)
        if st is None or st.phase is not Phase.DEPLOYING or st.my_bid is None:
            return []
        st.renew_at = None
        if not ok:
            st.excluded = True
            st.failures.append(f"{self.machine_id}: {reason}")
            if st.deployed_by is not None:
                self._finish(st, Phase.DONE, now)  # someone else runs it already
            else:
                self._wait(st, now)
            return [PublishFailed(task_id, reason)]
        self._finish(st, Phase.RUNNING, now)
        actions: list[Action] = [PublishDeployed(task_id, st.my_bid[0])]
        if st.deployed_by is not None and self._outranks(task_id, st.deployed_by,
                                                         self.machine_id):
            actions += self._drop_duplicate(st, st.deployed_by, now)
        return actions

    def forget_workload(self, workload_id: str) -> list[str]:
        gone = [t for t, st in self.tasks.items() if st.request.workload_id == workload_id]
        for t in gone:
            del self.tasks[t]
        return gone

    def release(self, task_id: str, now: float) -> None:
        """The replica this machine ran for `task_id` is gone (removed as surplus, rolled to a
        new template, drained): finished here as if another machine ran it, and forgotten
        `keep_done_s` later, so a replica's past tasks do not pile up (`room_for`)."""
        st = self.tasks.get(task_id)
        if st is not None and st.phase is Phase.RUNNING:
            st.deployed_by = self.machine_id
            self._finish(st, Phase.DONE, now)

    def running(self, finished_before: float) -> list[str]:
        """Tasks this machine deployed, finished before `finished_before`."""
        return [t for t, st in self.tasks.items() if st.phase is Phase.RUNNING
                and st.finished_at is not None and st.finished_at < finished_before]

    # ---- queries -----------------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus | None:
        """Pending or deployed (and where), derived from the auction; None: not followed."""
        st = self.tasks.get(task_id)
        if st is None:
            return None
        if st.phase is Phase.RUNNING:
            return TaskStatus("deployed", self.machine_id, tuple(st.failures))
        if st.phase is Phase.DONE and st.deployed_by is not None:
            return TaskStatus("deployed", st.deployed_by, tuple(st.failures))
        return TaskStatus("pending", "", tuple(st.failures), st.ineligible or "")

    def winners_of(self, task_id: str) -> set[str] | None:
        """Machines a round of this task picked, and those that bid in it (a bidder may have
        won in its own view of a round: views differ by a message's delay); None: the task
        is not followed here."""
        st = self.tasks.get(task_id)
        return None if st is None else set(st.winners) | set(st.bidders)

    def picked(self, task_id: str) -> frozenset[str]:
        """Machines a round of this task picked here (none: no round closed, or not followed):
        only they may be given the task's Secrets (`podconfig.holding`)."""
        st = self.tasks.get(task_id)
        return frozenset(st.winners) if st is not None else frozenset()

    def _of_replica(self, workload_id: str, ordinal: int) -> list[TaskState]:
        """Every auction this machine follows for replica `ordinal` of `workload_id`."""
        return [st for st in self.tasks.values()
                if st.request.workload_id == workload_id and st.request.ordinal == ordinal]

    def room_for(self, task_id: str, workload_id: str, ordinal: int) -> str | None:
        """Why a new task must not be followed (a flood of fresh task ids), or None."""
        if task_id in self.tasks:
            return None
        if len(self.tasks) >= self.params.max_tasks:
            return f"already following {len(self.tasks)} tasks"
        same = len(self._of_replica(workload_id, ordinal))
        if same >= self.params.max_tasks_per_replica:
            return f"already following {same} tasks for replica {ordinal} of {workload_id}"
        return None

    def placing(self, workload_id: str, ordinal: int) -> str | None:
        """A task of that replica still being placed (no machine runs it yet), if any."""
        return next((st.task_id for st in self._of_replica(workload_id, ordinal)
                     if st.placing), None)

    def deployed_ago(self, workload_id: str, ordinal: int,
                     now: float) -> tuple[str, float] | None:
        """The newest task of that replica another machine reported Deployed, and how long
        ago (its service record may still be on the way)."""
        deployed = [(st.task_id, now - st.finished_at)
                    for st in self._of_replica(workload_id, ordinal)
                    if st.deployed_by is not None and st.finished_at is not None]
        return min(deployed, key=lambda d: d[1], default=None)

    # ---- timers --------------------------------------------------------------------------

    def tick(self, now: float, local: Callable[[], LocalState]) -> list[Action]:
        actions: list[Action] = []
        for st in list(self.tasks.values()):
            if st.bid_at is not None and now >= st.bid_at:
                st.bid_at = None
                assert st.my_bid is not None
                if (self.params.suppression and st.best_other is not None
                        and st.best_other > st.my_bid):
                    st.bids_suppressed += 1
                    self.bids_suppressed_total += 1
                else:
                    st.bids_sent += 1
                    self.bids_sent_total += 1
                    actions.append(PublishBid(st.task_id, st.round, st.my_bid[0]))
            if st.phase is Phase.BIDDING and now >= st.window_end:
                actions += self._close_window(st, now)
            elif st.phase is Phase.DEPLOYING and st.renew_at is not None and now >= st.renew_at:
                st.renew_at = now + self.params.lease_renew_s
                actions.append(WriteLease(st.task_id, self.params.lease_ttl_s))
            elif (st.phase is Phase.WAITING and st.recheck_at is not None
                  and now >= st.recheck_at and st.winner is None and st.deployed_by is None):
                actions += self._recheck(st, now, local)
            elif st.phase is Phase.WAITING and st.deadline is not None and now >= st.deadline:
                st.phase = Phase.CHECKING
                st.deadline = None
                actions.append(CheckLease(st.task_id))
            elif (st.finished_at is not None and st.phase is Phase.DONE
                  and now - st.finished_at > self.params.keep_done_s):
                del self.tasks[st.task_id]  # RUNNING tasks stay until their workload goes
                actions.append(Forget(st.task_id))
        return actions

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for st in self.tasks.values():
            times += [t for t in (st.bid_at, st.renew_at, st.deadline, st.recheck_at)
                      if t is not None]
            if st.phase is Phase.BIDDING:
                times.append(st.window_end)
            if st.phase is Phase.DONE and st.finished_at is not None:
                times.append(st.finished_at + self.params.keep_done_s)
        return min(times) if times else None

    # ---- transitions -----------------------------------------------------------------------

    def _enter_round(self, st: TaskState, round_: int, now: float,
                     local: Callable[[], LocalState], bid_now: bool = False) -> list[Action]:
        p = self.params
        st.round = round_
        st.phase = Phase.BIDDING
        st.best_other = None
        st.my_bid = None
        st.bid_at = None
        st.deadline = None
        st.window_end = (now + p.selection_s + min(self.lateness(now), p.max_stretch_s)
                         + self.rng.uniform(-p.jitter_s, p.jitter_s))
        if st.excluded:
            st.ineligible = "deploy failed here"
            return []
        state = local()
        st.ineligible = ineligible_reason(st.request, state)
        st.recheck_at = now + p.recheck_ordered_s if st.ineligible is not None and \
            ORDERED_READY in st.ineligible else None
        if st.ineligible is not None:
            return [Note(st.task_id, f"round {round_}: not bidding ({st.ineligible})")]
        s = score(st.request, state)
        st.my_bid = (s, self.machine_id)
        delay = (1 - s / SCORE_MAX) * p.max_bid_delay_s if p.suppression and not bid_now else 0.0
        st.bid_at = now + delay
        return []

    def _close_window(self, st: TaskState, now: float) -> list[Action]:
        winner = st.winner
        if winner is not None:
            st.winners.setdefault(winner[1], now)
        if winner is not None and winner[1] == self.machine_id:
            st.phase = Phase.DEPLOYING
            st.renew_at = now + self.params.lease_renew_s
            return [Note(st.task_id, f"round {st.round}: won with score {winner[0]}"),
                    WriteLease(st.task_id, self.params.lease_ttl_s), Deploy(st.task_id, winner[0])]
        self._wait(st, now)
        if winner is None:
            return [Note(st.task_id, f"round {st.round}: no bids")]
        return []

    def _recheck(self, st: TaskState, now: float,
                 local: Callable[[], LocalState]) -> list[Action]:
        """An OrderedReady ordinal nobody could bid for: the next round as soon as the lower
        ordinals are ready here (the others follow this machine's bid into it)."""
        why = ineligible_reason(st.request, local())
        if why is not None and ORDERED_READY in why:
            st.recheck_at = now + self.params.recheck_ordered_s
            return []
        st.recheck_at = None
        return self._enter_round(st, st.round + 1, now, local, bid_now=True)

    def _wait(self, st: TaskState, now: float) -> None:
        p = self.params
        st.phase = Phase.WAITING
        st.deadline = now + p.lease_ttl_s + 1.0 + self.rng.uniform(0, p.backoff_jitter_s)

    def _finish(self, st: TaskState, phase: Phase, now: float) -> None:
        st.phase = phase
        st.finished_at = now
        st.bid_at = st.deadline = st.renew_at = st.recheck_at = None

    def _lease_refusal(self, st: TaskState, holder: str, expires_at: float,
                       now: float) -> tuple[str, str] | None:
        since = st.winners.get(holder, st.bidders.get(holder))
        return lease_refusal(st.task_id, holder, since, expires_at, now, self.params)

    @staticmethod
    def _outranks(task_id: str, machine: str, other: str) -> bool:
        """Between two machines running one task, `machine` keeps it over `other`."""
        return duplicate_rank(task_id, machine) > duplicate_rank(task_id, other)

    def _drop_duplicate(self, st: TaskState, winner: str, now: float) -> list[Action]:
        self._finish(st, Phase.DONE, now)
        return [Note(st.task_id, f"duplicate: {winner} ranks higher; dropping ours"),
                DropDuplicate(st.task_id, winner)]
