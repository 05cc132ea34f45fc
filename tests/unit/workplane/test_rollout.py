"""Rollouts: which replica each machine replaces, within the strategy's budget (fake clock).

A small simulation drives several machines' `Rollouts` from one shared list of copies: asks
become new copies on the next machine (not ready at first, ready some steps later), removals
take copies away. It checks the budgets at every step: never fewer available replicas than
replicas - maxUnavailable, never more copies than replicas + maxSurge.
"""

from __future__ import annotations

import itertools

import pytest

from beemesh.manifest.strategy import RECREATE, UpdateStrategy
from beemesh.workplane.reconcile import RemoveReplica
from beemesh.workplane.rollout import AskUpdate, Copy, Rollouts, Target

WID = "deployment/default/web"
T0 = 1_700_000_000.0
OLD, NEW = "old0000000", "new0000000"


def target(replicas: int = 3, stateful: bool = False, **strategy: object) -> Target:
    return Target(WID, replicas, stateful, NEW, UpdateStrategy(**strategy))  # type: ignore


class Fleet:
    """Copies on machines; `ready_after` steps after it is asked for, a new copy is ready."""

    def __init__(self, replicas: int, machines: int = 3, ready_after: int | None = 2) -> None:
        self.machines = [f"m{i}" for i in range(machines)]
        self.copies: list[tuple[str, int, str, int | None]] = [  # machine, ordinal, tmpl, ready@
            (self.machines[o % machines], o, OLD, 0) for o in range(replicas)]
        self.ready_after = ready_after
        self.rollouts = {m: Rollouts() for m in self.machines}
        self.step_no = 0
        self.progress: list[object] = []

    def view(self, machine: str) -> list[Copy]:
        out = []
        for i, (m, o, tmpl, ready_at) in enumerate(self.copies):
            ready = ready_at is not None and ready_at <= self.step_no
            out.append(Copy(o, tmpl, (self.step_no - ready_at) * 1.0 if ready else -1.0,
                            f"task{i}-{tmpl}", f"pod{i}" if m == machine else None))
        return out

    def step(self, t: Target) -> list[tuple[str, object]]:
        actions = []
        for m in self.machines:
            acts, progress = self.rollouts[m].step(t, self.view(m), T0 + self.step_no)
            self.progress.append(progress)
            actions += [(m, a) for a in acts]
        for m, a in actions:
            if isinstance(a, RemoveReplica):
                i = int(a.pod.removeprefix("pod"))
                self.copies[i] = ("gone", -1, "", None)
            elif isinstance(a, AskUpdate):
                other = self.machines[(self.machines.index(m) + 1) % len(self.machines)]
                ready = None if self.ready_after is None else self.step_no + self.ready_after
                self.copies.append((other, a.ordinal, a.template, ready))
        self.surplus(t)
        self.step_no += 1
        return actions

    def surplus(self, t: Target) -> None:
        """What `reconcile` does: an old copy goes once a new copy of its ordinal is ready."""
        for i, (_m, o, tmpl, _r) in enumerate(self.copies):
            if tmpl == OLD and any(
                    t2 == NEW and r2 is not None and r2 <= self.step_no and o2 == o
                    for _, o2, t2, r2 in self.copies):
                self.copies[i] = ("gone", -1, "", None)

    def live(self) -> list[tuple[str, int, str, int | None]]:
        return [c for c in self.copies if c[1] >= 0]

    def available(self) -> int:
        return len({o for _, o, _, r in self.live() if r is not None and r <= self.step_no})


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), list(itertools.product(
    (1, 2, 3, 5), ("25%", "1", "0"), ("25%", "1", "0"))))
def test_rolling_update_stays_within_its_budget(replicas: int, surge: str,
                                               unavailable: str) -> None:
    if surge == "0" and unavailable == "0":
        return  # refused by the manifest parser
    t = target(replicas, max_surge=surge, max_unavailable=unavailable)
    s, u = t.strategy.budget(replicas)
    fleet = Fleet(replicas)
    for _ in range(60):
        fleet.step(t)
        assert len(fleet.live()) <= replicas + s, fleet.live()
        assert fleet.available() >= replicas - u, (fleet.step_no, fleet.live())
    assert sorted((o, tmpl) for _, o, tmpl, _ in fleet.live()) == [
        (o, NEW) for o in range(replicas)]
    assert fleet.progress[-1].state == "complete"  # type: ignore[attr-defined]


def test_two_replicas_never_drop_to_zero_ready_with_the_defaults() -> None:
    t = target(2)
    fleet = Fleet(2)
    for _ in range(40):
        fleet.step(t)
        assert fleet.available() >= 1
    assert all(tmpl == NEW for _, _, tmpl, _ in fleet.live())


def test_each_machine_asks_only_for_its_own_replicas_once_per_interval() -> None:
    t = target(3, max_surge="1", max_unavailable="0")
    fleet = Fleet(3)
    first = fleet.step(t)
    assert first == [("m0", AskUpdate(WID, 0, "task0-" + OLD, NEW))]  # lowest ordinal first
    assert fleet.step(t) == []  # the new copy is on its way: the surge is used up


def test_a_rollout_whose_new_replicas_never_get_ready_stalls_and_says_so() -> None:
    t = target(4, max_surge="1", max_unavailable="1", progress_deadline_s=5)
    fleet = Fleet(4, ready_after=None)
    for _ in range(30):
        fleet.step(t)
        assert fleet.available() >= 3  # maxUnavailable 1: old replicas keep serving
    last = fleet.progress[-1]
    assert last.state == "stalled" and "progress deadline" in last.reason  # type: ignore
    asked = len(fleet.live())
    fleet.step(t)
    assert len(fleet.live()) == asked  # stopped: nothing more asked or removed


def test_recreate_removes_every_old_copy_first() -> None:
    t = target(3, type=RECREATE)
    fleet = Fleet(3)
    actions = fleet.step(t)
    assert sorted(a.pod for _, a in actions if isinstance(a, RemoveReplica)) == [
        "pod0", "pod1", "pod2"]
    assert not [a for _, a in actions if isinstance(a, AskUpdate)]  # heals bring the new ones


def test_statefulset_rolls_highest_ordinal_first_one_at_a_time_down_to_partition() -> None:
    t = Target("statefulset/default/db", 4, True, NEW, UpdateStrategy(partition=1))
    fleet = Fleet(4)
    order = []
    for _ in range(40):
        for _m, a in fleet.step(t):
            if isinstance(a, AskUpdate):
                order.append(a.ordinal)
        # never two copies of one ordinal, never more than one replica down
        ordinals = [o for _, o, _, _ in fleet.live()]
        assert len(ordinals) == len(set(ordinals))
        assert fleet.available() >= 3
    assert order == [3, 2, 1]
    assert sorted((o, tmpl) for _, o, tmpl, _ in fleet.live()) == [
        (0, OLD), (1, NEW), (2, NEW), (3, NEW)]
    assert fleet.progress[-1].state == "complete"  # type: ignore[attr-defined]


def test_on_delete_rolls_nothing() -> None:
    t = Target("statefulset/default/db", 2, True, NEW, UpdateStrategy(type="OnDelete"))
    fleet = Fleet(2)
    assert fleet.step(t) == []
    assert fleet.progress[-1].state == "paused"  # type: ignore[attr-defined]


def test_min_ready_seconds_holds_the_next_step() -> None:
    """A new copy counts as updated only once ready for minReadySeconds."""
    t = target(2, max_surge="1", max_unavailable="0", min_ready_s=5)
    r = Rollouts()
    copies = [Copy(0, OLD, 100.0, "a", "pod0"), Copy(1, OLD, 100.0, "b", None),
              Copy(0, NEW, 3.0, "c", None)]
    acts, progress = r.step(t, copies, T0)
    assert acts == [] and progress.updated == 0
    copies[2] = Copy(0, NEW, 5.0, "c", None)
    acts, progress = r.step(t, copies, T0 + 2)
    assert progress.updated == 1
