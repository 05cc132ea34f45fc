"""Rolling a workload's replicas to its newest pod template (sans-IO: callers pass `now`).

There is no controller: every machine's work plane runs this for the workloads it runs a
replica of, from the same service records, and acts only on its own replicas: it asks for a
new-template copy of a replica it holds (`AskUpdate`, which its agent publishes as a Task
replacing that replica's task), or removes its old copy (`RemoveReplica`). Replicas are taken
in a fixed order (lowest ordinal first; StatefulSets highest first), so machines that see the
same records pick the same replicas without talking, and the rollout goes on whichever
machine started it (or dies): it lives in the records, not in a process.

Deployment, RollingUpdate (`manifest.strategy`: surge and unavailable resolved against the
replicas): while the copies of ordinals [0, replicas) number fewer than replicas + surge, the
holders of the first old-only ordinals ask for a new copy; a new copy that has been ready for
`minReadySeconds` (and the surplus rule's settle time) outranks the old one, whose machine
then removes it (`reconcile`: up to date ranks first). While more ordinals are available
than replicas - unavailable, the holders of the next old-only ordinals remove their copy and
ask for a new one. Recreate: every old copy goes first, then heals bring the new template.

StatefulSet, RollingUpdate: from the highest ordinal down to `partition`, one at a time: the
holder of the highest old ordinal removes its copy and asks for a new one once every other
ordinal is available; OnDelete rolls nothing (a replica removed by hand comes back new).

A rollout whose updated count has not grown for `progressDeadlineSeconds` stops asking and
removing, and says so (`Progress.state` "stalled"): its old replicas keep serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from beemesh.manifest.strategy import ON_DELETE, RECREATE, UpdateStrategy
from beemesh.workplane.reconcile import LocalReplica, RemoveReplica
from beemesh.workplane.records import ServiceView
from beemesh.workplane.sync import Workload

ASK_EVERY_S = 10.0


@dataclass(frozen=True)
class Copy:
    """One copy of a replica as the service records (and this machine's pods) show it."""

    ordinal: int
    template: str
    ready_s: float  # how long it has been ready without a break; -1 when not ready
    task: str
    pod: str | None = None  # its pod name when it runs on this machine


@dataclass(frozen=True)
class Target:
    """A workload as its newest signed manifest wants it."""

    workload_id: str
    replicas: int
    stateful: bool
    template: str
    strategy: UpdateStrategy


@dataclass(frozen=True)
class AskUpdate:
    workload_id: str
    ordinal: int
    epoch: str  # the task of the old copy it replaces
    template: str


@dataclass(frozen=True)
class Progress:
    """`beemesh rollout status`: how far a workload is on its newest template."""

    workload_id: str
    template: str
    desired: int
    updated: int  # ordinals with a new-template copy available (ready minReadySeconds)
    available: int  # ordinals with any copy available
    total: int  # copies of ordinals [0, replicas)
    state: str  # "complete" | "progressing" | "stalled" | "paused"
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {"workload": self.workload_id, "template": self.template,
                "desired": self.desired, "updated": self.updated, "available": self.available,
                "total": self.total, "state": self.state, "reason": self.reason}


Action = AskUpdate | RemoveReplica


@dataclass
class Rollouts:
    _progress: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    _asked: dict[tuple[str, int], float] = field(default_factory=dict)

    def step(self, t: Target, copies: list[Copy], now: float) -> tuple[list[Action], Progress]:
        s = t.strategy
        by_ord: dict[int, list[Copy]] = {o: [] for o in range(t.replicas)}
        for c in copies:
            if c.ordinal in by_ord:
                by_ord[c.ordinal].append(c)

        def available(c: Copy) -> bool:
            return c.ready_s >= 0 and c.ready_s >= s.min_ready_s

        updated = [o for o, cs in by_ord.items()
                   if any(c.template == t.template and available(c) for c in cs)]
        up = [o for o, cs in by_ord.items() if any(available(c) for c in cs)]
        total = sum(len(cs) for cs in by_ord.values())
        scope = [o for o in by_ord if not t.stateful or o >= s.partition]
        old = [o for o in scope
               if by_ord[o] and not any(c.template == t.template for c in by_ord[o])]
        progress = Progress(t.workload_id, t.template, t.replicas, len(updated), len(up),
                            total, "complete")
        for key in [k for k, at in self._asked.items() if now - at >= ASK_EVERY_S]:
            del self._asked[key]
        if all(o in updated and all(c.template == t.template for c in by_ord[o])
               for o in scope):
            self._progress.pop(t.workload_id, None)
            return [], progress
        if s.type == ON_DELETE:
            return [], _with(progress, "paused", "updateStrategy OnDelete: old replicas are "
                             "replaced when removed")
        seen = self._progress.get(t.workload_id)
        if seen is None or seen[:2] != (t.template, len(updated)):
            seen = (t.template, len(updated), now)
            self._progress[t.workload_id] = seen
        stalled_s = now - seen[2]
        if stalled_s > s.progress_deadline_s:
            return [], _with(progress, "stalled",
                             f"progress deadline exceeded: {len(updated)}/{t.replicas} updated, "
                             f"no progress for {stalled_s:.0f} s; the old replicas keep serving")
        if not old:
            actions: list[Action] = []  # new copies on their way, or heals to come
        elif t.stateful:
            actions = self._stateful(t, by_ord, old, up, now)
        elif s.type == RECREATE:
            actions = [RemoveReplica(c.pod, f"Recreate: template {t.template} replaces "
                                     f"{c.template or 'an older one'}")
                       for o in old for c in by_ord[o] if c.pod is not None]
        else:
            actions = self._rolling(t, by_ord, old, len(up), total, now)
        return actions, _with(progress, "progressing",
                              f"{len(updated)}/{t.replicas} replicas on template {t.template}")

    def _rolling(self, t: Target, by_ord: dict[int, list[Copy]], old: list[int], up: int,
                 total: int, now: float) -> list[Action]:
        surge, unavailable = t.strategy.budget(t.replicas)
        room = max(0, t.replicas + surge - total)
        asks, rest = old[:room], old[room:]
        # Old copies that are not available cost no availability: they go first.
        rest.sort(key=lambda o: any(c.ready_s >= 0 for c in by_ord[o]))
        down = up - (t.replicas - unavailable)
        out: list[Action] = []
        for o in asks:
            out += self._ask(t, by_ord[o], now)
        for o in rest:
            costs = any(c.ready_s >= 0 for c in by_ord[o])
            if costs and down <= 0:
                break
            down -= costs
            out += self._replace(t, by_ord[o], "maxUnavailable", now)
        return out

    def _stateful(self, t: Target, by_ord: dict[int, list[Copy]], old: list[int],
                  up: list[int], now: float) -> list[Action]:
        o = max(old)
        if any(p != o and p not in up for p in by_ord) or any(
                p > o and not by_ord[p] for p in by_ord):
            return []  # one at a time: every other replica available first
        return self._replace(t, by_ord[o], "highest ordinal first", now)

    def _replace(self, t: Target, copies: list[Copy], why: str, now: float) -> list[Action]:
        """Remove this machine's old copies of a replica and ask for a new one."""
        return [RemoveReplica(c.pod, f"rolling update to template {t.template} ({why})")
                for c in copies if c.pod is not None] + self._ask(t, copies, now)

    def _ask(self, t: Target, copies: list[Copy], now: float) -> list[Action]:
        """Ask for a new copy of a replica this machine holds an old copy of (once per
        `ASK_EVERY_S`)."""
        mine = [c for c in copies if c.pod is not None]
        if not mine:
            return []
        key = (t.workload_id, mine[0].ordinal)
        if key in self._asked:
            return []
        self._asked[key] = now
        return [AskUpdate(t.workload_id, mine[0].ordinal, mine[0].task, t.template)]

    def forget(self, live: set[str]) -> None:
        """Drop what is kept for workloads no longer looked after here."""
        for wid in [w for w in self._progress if w not in live]:
            del self._progress[wid]
        for key in [k for k in self._asked if k[0] not in live]:
            del self._asked[key]


def target_of(w: Workload) -> Target:
    return Target(w.workload_id, w.replicas, w.stateful, w.template, w.strategy)


def copies_of(view: ServiceView, w: Workload, local: tuple[LocalReplica, ...],
              now: float) -> list[Copy]:
    """The copies of `w`'s replicas [0, replicas) the records show, and this machine's
    replicas that have no record yet (not ready, as far as others can tell)."""
    mine = {r.peer_id: r.pod for r in local if r.peer_id is not None}
    out = [Copy(o, rec.template, view.ready_for(rec, now) if rec.ready else -1.0, rec.task,
                mine.get(rec.peer_id))
           for o in range(w.replicas) for rec in view.ordinal(w.workload_id, o, now)]
    out += [Copy(r.ordinal, r.template, -1.0, r.task, r.pod) for r in local
            if r.workload_id == w.workload_id and r.peer_id is None and r.ordinal < w.replicas]
    return out


def _with(p: Progress, state: str, reason: str) -> Progress:
    return Progress(p.workload_id, p.template, p.desired, p.updated, p.available, p.total,
                    state, reason)
