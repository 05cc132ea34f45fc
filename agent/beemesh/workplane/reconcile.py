"""Reconcile: what the work plane of one machine asks for, from what it observes (sans-IO).

Each machine's work plane looks after the workloads it runs a replica of, plus the workloads
it *watches*: the two live work planes ranked highest by rendezvous hashing of (workload,
machine). Watchers are what heals a workload with a single replica when its machine dies:
the remaining machines agree, without talking, on who watches it, and every machine keeps
the operator-signed manifest on disk.

Deficit: an ordinal in [0, replicas) with no live record for `heal_delay_s` (plus
`statefulset_margin_s` for StatefulSets, which gives a cut-off machine time to fence its copy)
is asked for again, with the task id derived from (workload, ordinal, apply, epoch). The
epoch is the task id of the newest record seen for that ordinal, so every machine that saw
the same replica vanish asks for the same task, and the auction places it once. The agent
refuses asks it must not act on (deleted workload, replica still listed by a live machine,
StatefulSet without a majority), so asking again is always safe.

Surplus: a local replica whose ordinal is beyond `replicas`, or that has a better copy of the
same ordinal elsewhere, is removed; a better copy only counts once it has been ready for
`settle_s` without a break, so two copies never both go. Better = on the workload's newest
pod template (how a rollout retires old copies, `workplane.rollout`), then not retiring (a
drained machine's copy loses), then ready, then the higher `duplicate_rank` of the holding machine's
certified key for that replica (a machine can mint workload keys, not machine keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from beemesh.scheduling.bounds import duplicate_rank
from beemesh.workplane.records import ServiceRecord, ServiceView
from beemesh.workplane.sync import Workload

ORPHAN_EPOCH = "orphan"  # an ordinal nobody saw run since this work plane started


@dataclass(frozen=True)
class Params:
    heal_delay_s: float = 1.0
    statefulset_margin_s: float = 10.0
    settle_s: float = 5.0
    # A copy on the newest template replaces an older one once ready this long (or for
    # minReadySeconds): the ranking is one-sided there (the new copy never yields to the
    # old), so the duplicates' settle_s guards nothing, and Kubernetes waits only
    # minReadySeconds (0 by default).
    update_settle_s: float = 1.0
    ask_every_s: float = 10.0
    watchers: int = 2


@dataclass(frozen=True)
class LocalReplica:
    """A replica this machine runs. `ready`/`retiring` are what its last published record
    said: both machines holding copies of an ordinal must rank them from the same facts, or
    each could find the other better and both copies would go."""

    pod: str
    workload_id: str
    ordinal: int
    task: str
    peer_id: str | None  # None until its workload key is certified and a record published
    ready: bool
    retiring: bool
    template: str = ""  # the pod template it runs


@dataclass(frozen=True)
class Situation:
    now: float
    machine: str  # this machine's Peer ID
    machines: tuple[str, ...]  # live machines that run a work plane (watcher candidates)
    workloads: dict[str, Workload]  # known and not deleted
    local: tuple[LocalReplica, ...]
    synced: bool  # the view has had time to hear every live replica


@dataclass(frozen=True)
class AskHeal:
    workload_id: str
    ordinal: int
    epoch: str


@dataclass(frozen=True)
class RemoveReplica:
    pod: str
    reason: str


Action = AskHeal | RemoveReplica


def watchers(workload_id: str, machines: Iterable[str], count: int) -> list[str]:
    """Rendezvous hashing: every machine computes the same watchers from the same members,
    and a machine leaving moves only the workloads it watched."""
    def weight(machine: str) -> bytes:
        return hashlib.sha256(f"{workload_id}\0{machine}".encode()).digest()

    return sorted(set(machines), key=weight, reverse=True)[:count]


def rank(current: bool, ready: bool, retiring: bool, workload_id: str, ordinal: int,
         machine: str, peer: str) -> tuple[bool, bool, bool, bytes, str]:
    """How a copy of a replica ranks: on the newest template (a rollout), not retiring,
    ready, then by its machine's certified key (`duplicate_rank`): never by the workload
    key, which any machine can mint until it wins."""
    return (current, not retiring, ready, duplicate_rank(f"{workload_id}/{ordinal}", machine),
            peer)


@dataclass
class Reconciler:
    params: Params = field(default_factory=Params)
    _missing_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _asked: dict[tuple[str, int] | str, float] = field(default_factory=dict)

    def responsible(self, s: Situation, workload_id: str) -> bool:
        if any(r.workload_id == workload_id for r in s.local):
            return True
        return s.machine in watchers(workload_id, s.machines, self.params.watchers)

    def step(self, s: Situation, view: ServiceView) -> list[Action]:
        actions: list[Action] = []
        for w in s.workloads.values():
            # Absence is tracked for every workload, so a machine that becomes a watcher (its
            # peer died) times a gap from when the gap began, never from a stale sighting.
            overdue = self._overdue(s, w, view)
            if s.synced and self.responsible(s, w.workload_id):
                actions += [AskHeal(w.workload_id, o, view.last_task(w.workload_id, o)
                                    or ORPHAN_EPOCH)
                            for o in overdue if self._due((w.workload_id, o), s.now)]
        actions += self._surplus(s, view)
        live_keys = {(w.workload_id, o) for w in s.workloads.values() for o in range(w.replicas)}
        for key in [k for k in self._missing_since if k not in live_keys]:
            del self._missing_since[key]
        for key in [k for k, t in self._asked.items() if s.now - t >= self.params.ask_every_s]:
            del self._asked[key]
        return actions

    def _overdue(self, s: Situation, w: Workload, view: ServiceView) -> list[int]:
        """Ordinals with no live record (and not running here) for longer than the delay."""
        p = self.params
        delay = p.heal_delay_s + (p.statefulset_margin_s if w.stateful else 0.0)
        here = {r.ordinal for r in s.local if r.workload_id == w.workload_id}
        out = []
        for ordinal in range(w.replicas):
            key = (w.workload_id, ordinal)
            if ordinal in here or view.ordinal(w.workload_id, ordinal, s.now):
                self._missing_since.pop(key, None)
            elif s.synced and s.now - self._missing_since.setdefault(key, s.now) >= delay:
                out.append(ordinal)  # (unsynced, absence may only mean "not heard yet")
        return out

    def _surplus(self, s: Situation, view: ServiceView) -> list[Action]:
        out: list[Action] = []
        for mine in s.local:
            w = s.workloads.get(mine.workload_id)
            if w is None or mine.peer_id is None:
                continue  # deleted workloads are the agent's to remove; unkeyed: not yet seen
            if mine.ordinal >= w.replicas:
                reason = f"scaled down to {w.replicas} replica(s)"
            else:
                better = self._better_copy(s, view, mine)
                if better is None:
                    continue
                reason = (f"duplicate of {mine.workload_id} replica {mine.ordinal}; the copy "
                          f"{better.peer_id} ranks higher and is ready")
            if self._due(mine.pod, s.now):
                out.append(RemoveReplica(mine.pod, reason))
        return out

    def _better_copy(self, s: Situation, view: ServiceView,
                     mine: LocalReplica) -> ServiceRecord | None:
        assert mine.peer_id is not None
        w = s.workloads[mine.workload_id]
        template = w.template
        own = rank(mine.template == template, mine.ready, mine.retiring, mine.workload_id,
                   mine.ordinal, s.machine, mine.peer_id)
        for rec in view.ordinal(mine.workload_id, mine.ordinal, s.now):
            if rec.peer_id == mine.peer_id:
                continue
            update = rec.template == template != mine.template
            settle = max(self.params.update_settle_s if update else self.params.settle_s,
                         w.strategy.min_ready_s)
            if (rank(rec.template == template, rec.ready, rec.retiring, rec.workload_id,
                     rec.ordinal, rec.machine, rec.peer_id) > own
                    and view.ready_for(rec, s.now) >= settle):
                return rec
        return None

    def _due(self, key: tuple[str, int] | str, now: float) -> bool:
        last = self._asked.get(key)
        if last is not None and now - last < self.params.ask_every_s:
            return False
        self._asked[key] = now
        return True
