"""Reconciler (sans-IO): heal asks for missing ordinals, removal of surplus copies, watchers."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from beemesh.manifest.strategy import DEFAULT_STRATEGY
from beemesh.scheduling.bounds import duplicate_rank
from beemesh.workplane.reconcile import (
    ORPHAN_EPOCH,
    AskHeal,
    LocalReplica,
    Params,
    Reconciler,
    RemoveReplica,
    Situation,
    rank,
    watchers,
)
from beemesh.workplane.records import ServiceRecord, ServiceView
from beemesh.workplane.sync import Workload

T0 = 1_700_000_000.0
WID = "deployment/default/web"
# three machines by rank for replica 0 of WID, lowest first
M1, M2, M3 = sorted(("m1", "m2", "m3"), key=lambda m: duplicate_rank(f"{WID}/0", m))
SID = "statefulset/default/db"
MACHINES = ("m1", "m2", "m3", "m4", "m5")
P = Params()


def web(replicas: int = 2) -> Workload:
    return Workload(WID, replicas, stateful=False)


def db(replicas: int = 1) -> Workload:
    return Workload(SID, replicas, stateful=True)


def rec(ordinal: int, peer: str, ts: float, *, wid: str = WID, ready: bool = True,
        retiring: bool = False, task: str | None = None, ttl: float = 15,
        version: int = 1, machine: str = "m") -> ServiceRecord:
    return ServiceRecord(workload_id=wid, ordinal=ordinal, peer_id=peer,
                         pod=f"{wid.rsplit('/', 1)[1]}-{ordinal}",
                         task=task or f"t-{ordinal}-{peer}", addrs=(), ports=(), ready=ready,
                         retiring=retiring, version=version, ts=ts, expires_at=ts + ttl,
                         machine=machine)


def local(ordinal: int, peer: str | None, *, wid: str = WID, ready: bool = True,
          retiring: bool = False, pod: str | None = None) -> LocalReplica:
    return LocalReplica(pod=pod or f"{wid.rsplit('/', 1)[1]}-{ordinal}-{peer}", workload_id=wid,
                        ordinal=ordinal, task=f"t-{ordinal}-{peer}", peer_id=peer, ready=ready,
                        retiring=retiring)


def sit(now: float, machine: str, workloads: list[Workload], *,
        local_: tuple[LocalReplica, ...] = (), machines: tuple[str, ...] = MACHINES,
        synced: bool = True) -> Situation:
    return Situation(now=now, machine=machine, machines=machines,
                     workloads={w.workload_id: w for w in workloads}, local=local_,
                     synced=synced)


def watcher(wid: str = WID) -> str:
    return watchers(wid, MACHINES, P.watchers)[0]


def bystander(wid: str = WID) -> str:
    """A live machine that neither watches `wid` nor runs it."""
    w = watchers(wid, MACHINES, P.watchers)
    return next(m for m in MACHINES if m not in w)


def asks(actions: list[object]) -> list[AskHeal]:
    return [a for a in actions if isinstance(a, AskHeal)]


def removes(actions: list[object]) -> list[RemoveReplica]:
    return [a for a in actions if isinstance(a, RemoveReplica)]


def refreshed(view: ServiceView, records: list[ServiceRecord], now: float) -> None:
    """Every replica in `records` refreshes (same content, new ts) at `now`."""
    for r in records:
        view.apply(dataclasses.replace(r, ts=now, expires_at=now + 15), now)


# --- watchers ---------------------------------------------------------------------------------


def test_watchers_deterministic_and_order_independent() -> None:
    w = watchers(WID, MACHINES, 2)
    assert len(w) == 2 and set(w) <= set(MACHINES)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = list(MACHINES) * 2  # duplicates do not count twice
        rng.shuffle(shuffled)
        assert watchers(WID, shuffled, 2) == w


def test_watchers_differ_between_workloads() -> None:
    picks = {tuple(watchers(f"deployment/default/app{i}", MACHINES, 2)) for i in range(40)}
    assert len(picks) > 3  # load is spread, not always the same two machines


def test_removing_a_non_watcher_keeps_watchers() -> None:
    w = watchers(WID, MACHINES, 2)
    for m in MACHINES:
        if m in w:
            continue
        assert watchers(WID, [x for x in MACHINES if x != m], 2) == w


def test_removing_a_watcher_moves_only_its_slot() -> None:
    w = watchers(WID, MACHINES, 2)
    rest = watchers(WID, [x for x in MACHINES if x != w[0]], 2)
    assert rest[0] == w[1]
    assert rest[1] not in w


def test_watchers_with_few_machines() -> None:
    assert watchers(WID, [], 2) == []
    assert watchers(WID, ["m1"], 2) == ["m1"]
    assert sorted(watchers(WID, ["m1", "m2"], 2)) == ["m1", "m2"]


def test_rank_order() -> None:
    # Not retiring beats retiring, then ready beats not ready, then the machine's rank.
    assert rank(True, False, False, WID, 0, M1, "a") > rank(True, True, True, WID, 0, M3, "z")
    assert rank(True, True, False, WID, 0, M1, "a") > rank(True, False, False, WID, 0, M3, "z")
    assert rank(True, True, False, WID, 0, M2, "a") > rank(True, True, False, WID, 0, M1, "z")


def test_a_minted_workload_key_does_not_rank_a_copy_higher() -> None:
    """A machine can mint workload keys until one sorts high; it cannot mint a machine key
    (certified by the operator), so the copy's rank follows its machine, for each replica."""
    assert rank(True, True, False, WID, 0, M1, "zzzz") < rank(True, True, False, WID, 0, M2, "a")
    orders = {tuple(sorted(("x", "y"), key=lambda m: rank(True, True, False, WID, o, m, "p")))
              for o in range(16)}
    assert len(orders) == 2  # no machine wins every replica


# --- deficit: heal asks ------------------------------------------------------------------------


def test_no_heal_before_synced() -> None:
    r, view = Reconciler(), ServiceView()
    m = watcher()
    for t in range(30):
        assert r.step(sit(T0 + t, m, [web()], synced=False), view) == []
    # The missing timer starts at the first synced step, not before.
    assert asks(r.step(sit(T0 + 30, m, [web()]), view)) == []
    assert asks(r.step(sit(T0 + 30 + P.heal_delay_s - 0.01, m, [web()]), view)) == []
    assert len(asks(r.step(sit(T0 + 30 + P.heal_delay_s, m, [web()]), view))) == 2


def test_missing_ordinal_asked_after_heal_delay() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0), T0)
    m = watcher()
    assert r.step(sit(T0, m, [web(2)]), view) == []
    assert r.step(sit(T0 + P.heal_delay_s / 2, m, [web(2)]), view) == []
    got = r.step(sit(T0 + P.heal_delay_s, m, [web(2)]), view)
    assert got == [AskHeal(WID, 1, ORPHAN_EPOCH)]


def test_statefulset_waits_the_extra_margin() -> None:
    r, view = Reconciler(), ServiceView()
    m = watcher(SID)
    delay = P.heal_delay_s + P.statefulset_margin_s
    assert r.step(sit(T0, m, [db()]), view) == []
    assert r.step(sit(T0 + P.heal_delay_s, m, [db()]), view) == []
    assert r.step(sit(T0 + delay - 0.01, m, [db()]), view) == []
    assert r.step(sit(T0 + delay, m, [db()]), view) == [AskHeal(SID, 0, ORPHAN_EPOCH)]


def test_custom_params() -> None:
    r, view = Reconciler(Params(heal_delay_s=3.0, statefulset_margin_s=0.0)), ServiceView()
    m = watcher(SID)
    r.step(sit(T0, m, [db()]), view)
    assert r.step(sit(T0 + 2.9, m, [db()]), view) == []
    assert r.step(sit(T0 + 3.0, m, [db()]), view) == [AskHeal(SID, 0, ORPHAN_EPOCH)]


def test_epoch_is_last_task_seen_for_the_ordinal() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0, task="t-zero"), T0)
    view.apply(rec(1, "pb", T0, task="t-one-old"), T0)
    view.apply(rec(1, "pc", T0 + 1, task="t-one-new"), T0 + 1)  # the newest for ordinal 1
    m = watcher()
    later = T0 + 20  # every record expired
    assert r.step(sit(later, m, [web(3)]), view) == []
    got = r.step(sit(later + P.heal_delay_s, m, [web(3)]), view)
    assert got == [AskHeal(WID, 0, "t-zero"), AskHeal(WID, 1, "t-one-new"),
                   AskHeal(WID, 2, ORPHAN_EPOCH)]


def test_asks_repeat_at_most_every_ask_every_s() -> None:
    r, view = Reconciler(), ServiceView()
    m = watcher()
    r.step(sit(T0, m, [web(1)]), view)
    first = T0 + P.heal_delay_s
    assert asks(r.step(sit(first, m, [web(1)]), view)) == [AskHeal(WID, 0, ORPHAN_EPOCH)]
    t = first
    while t < first + P.ask_every_s - 0.5:
        t += 0.5
        assert r.step(sit(t, m, [web(1)]), view) == [], t
    assert r.step(sit(first + P.ask_every_s, m, [web(1)]), view) == [
        AskHeal(WID, 0, ORPHAN_EPOCH)]


def test_asks_paced_per_ordinal() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0, ttl=5), T0)
    m = watcher()
    r.step(sit(T0, m, [web(2)]), view)
    assert asks(r.step(sit(T0 + 1, m, [web(2)]), view)) == [AskHeal(WID, 1, ORPHAN_EPOCH)]
    # Ordinal 0 vanishes later; its own pacing is independent of ordinal 1's.
    assert r.step(sit(T0 + 5, m, [web(2)]), view) == []
    assert asks(r.step(sit(T0 + 6, m, [web(2)]), view)) == [AskHeal(WID, 0, "t-0-pa")]


def test_reappearing_replica_restarts_the_delay() -> None:
    r, view = Reconciler(), ServiceView()
    m = watcher()
    r.step(sit(T0, m, [web(1)]), view)
    r.step(sit(T0 + 0.9, m, [web(1)]), view)
    view.apply(rec(0, "pa", T0 + 0.95, ttl=1), T0 + 0.95)  # comes back briefly
    assert r.step(sit(T0 + 1.0, m, [web(1)]), view) == []
    assert r.step(sit(T0 + 2.0, m, [web(1)]), view) == []  # gone again at T0 + 1.95
    assert r.step(sit(T0 + 2.9, m, [web(1)]), view) == []
    assert r.step(sit(T0 + 3.0, m, [web(1)]), view) == [AskHeal(WID, 0, "t-0-pa")]


def test_live_records_of_any_state_count_as_present() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0, ready=False), T0)
    view.apply(rec(1, "pb", T0, retiring=True), T0)
    m = watcher()
    for t in (0, 1, 5, 10):
        assert r.step(sit(T0 + t, m, [web(2)]), view) == []


def test_only_responsible_machines_ask() -> None:
    view = ServiceView()
    by = bystander()
    w1, w2 = watchers(WID, MACHINES, 2)
    host = next(m for m in MACHINES if m not in (w1, w2, by))
    got = {}
    for m, loc in ((w1, ()), (w2, ()), (by, ()), (host, (local(0, "pa"),))):
        r = Reconciler()
        r.step(sit(T0, m, [web(2)], local_=loc), view)
        got[m] = asks(r.step(sit(T0 + 1, m, [web(2)], local_=loc), view))
    assert got[by] == []
    # Both watchers ask for the same thing; the machine running replica 0 (no record out yet)
    # asks only for replica 1.
    assert got[w1] == got[w2] == [AskHeal(WID, 0, ORPHAN_EPOCH), AskHeal(WID, 1, ORPHAN_EPOCH)]
    assert got[host] == [AskHeal(WID, 1, ORPHAN_EPOCH)]


def test_responsible_for_a_workload_with_a_local_unkeyed_replica() -> None:
    r, view = Reconciler(), ServiceView()
    by = bystander()
    loc = (local(0, None),)
    r.step(sit(T0, by, [web(2)], local_=loc), view)
    assert asks(r.step(sit(T0 + 1, by, [web(2)], local_=loc), view)) != []


def test_bystander_responsible_for_other_workloads_only() -> None:
    view = ServiceView()
    r = Reconciler()
    m = next(x for x in watchers(SID, MACHINES, 2) if x not in watchers(WID, MACHINES, 2))
    r.step(sit(T0, m, [web(1), db(1)]), view)
    got = asks(r.step(sit(T0 + 20, m, [web(1), db(1)]), view))
    assert got == [AskHeal(SID, 0, ORPHAN_EPOCH)]


def test_watchers_agree_across_machines_on_the_same_view() -> None:
    """Every machine that saw the replica vanish asks for the same (ordinal, epoch)."""
    view = ServiceView()
    view.apply(rec(0, "pa", T0, task="t-lost"), T0)
    results = []
    for m in MACHINES:
        r = Reconciler()
        r.step(sit(T0 + 15, m, [web(1)]), view)
        results.append(asks(r.step(sit(T0 + 16, m, [web(1)]), view)))
    asking = [x for x in results if x]
    assert len(asking) == P.watchers
    assert all(x == [AskHeal(WID, 0, "t-lost")] for x in asking)


def test_watcher_leaving_hands_over() -> None:
    view = ServiceView()
    w1, w2 = watchers(WID, MACHINES, 2)
    remaining = tuple(m for m in MACHINES if m != w1)
    new = next(m for m in watchers(WID, remaining, 2) if m != w2)
    r = Reconciler()
    assert r.step(sit(T0, new, [web(1)], machines=MACHINES), view) == []
    assert r.step(sit(T0 + 5, new, [web(1)], machines=MACHINES), view) == []
    # The new watcher times the gap from when it began (T0), not from when it took over.
    assert asks(r.step(sit(T0 + 6, new, [web(1)], machines=remaining), view)) == [
        AskHeal(WID, 0, ORPHAN_EPOCH)]


def test_a_watcher_again_does_not_count_a_stale_sighting() -> None:
    """Watcher at the apply (no record yet), not a watcher while the replica ran (a better
    ranked machine was up), watcher again when the record vanished: the StatefulSet margin
    counts from the vanishing, not from the apply."""
    view = ServiceView()
    x = watchers(WID, MACHINES, 2)[1]  # second: one better-ranked newcomer displaces it
    y = next(f"mY{i}" for i in itertools.count()
             if x not in watchers(WID, (*MACHINES, f"mY{i}"), 2))
    r = Reconciler()
    sts = [Workload(WID, 1, True)]
    r.step(sit(T0, x, sts, machines=MACHINES), view)  # applied, no record yet: x watches
    view.apply(rec(0, "pa", T0 + 1, ttl=15), T0 + 1)  # the replica runs; y joined, x idle
    r.step(sit(T0 + 2, x, sts, machines=(*MACHINES, y)), view)
    gone = T0 + 16  # its record expired; y left, x watches again
    margin = P.heal_delay_s + P.statefulset_margin_s
    assert asks(r.step(sit(gone, x, sts, machines=MACHINES), view)) == []
    assert asks(r.step(sit(gone + margin - 0.5, x, sts, machines=MACHINES), view)) == []
    assert len(asks(r.step(sit(gone + margin, x, sts, machines=MACHINES), view))) == 1


def test_deleted_workload_not_healed() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0, ttl=1), T0)
    m = watcher()
    r.step(sit(T0, m, [web(1)]), view)
    # The workload is deleted (absent from workloads) before its replica's record expires.
    for t in range(1, 40):
        assert r.step(sit(T0 + t, m, []), view) == []


def test_deleted_then_reapplied_starts_a_fresh_delay() -> None:
    r, view = Reconciler(), ServiceView()
    m = watcher()
    r.step(sit(T0, m, [web(1)]), view)
    r.step(sit(T0 + 0.5, m, []), view)  # deleted: its missing timer is dropped
    assert r.step(sit(T0 + 1.5, m, [web(1)]), view) == []
    assert r.step(sit(T0 + 2.5, m, [web(1)]), view) == [AskHeal(WID, 0, ORPHAN_EPOCH)]


def test_scale_down_forgets_missing_high_ordinals() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "pa", T0), T0)
    m = watcher()
    r.step(sit(T0, m, [web(3)]), view)
    assert r.step(sit(T0 + 0.5, m, [web(1)]), view) == []  # scaled down before the delay
    assert r.step(sit(T0 + 1, m, [web(1)]), view) == []
    assert r.step(sit(T0 + 0.8 + 1, m, [web(2)]), view) == []  # up again: a fresh delay
    assert r.step(sit(T0 + 2.8, m, [web(2)]), view) == [AskHeal(WID, 1, ORPHAN_EPOCH)]


# --- surplus ----------------------------------------------------------------------------------


def test_scale_down_removes_high_ordinals() -> None:
    r, view = Reconciler(), ServiceView()
    loc = (local(0, "pa", pod="web-0"), local(1, "pb", pod="web-1"), local(2, "pc", pod="web-2"))
    got = r.step(sit(T0, bystander(), [web(1)], local_=loc), view)
    assert [a.pod for a in removes(got)] == ["web-1", "web-2"]
    assert all("scaled down to 1" in a.reason for a in removes(got))


def test_scale_down_even_before_synced() -> None:
    r, view = Reconciler(), ServiceView()
    got = r.step(sit(T0, "m1", [web(1)], local_=(local(1, "pb", pod="web-1"),), synced=False),
                 view)
    assert got == [RemoveReplica("web-1", "scaled down to 1 replica(s)")]


def test_removal_repeats_at_most_every_ask_every_s() -> None:
    r, view = Reconciler(), ServiceView()
    loc = (local(1, "pb", pod="web-1"),)
    def step(t: float) -> list[RemoveReplica]:
        return removes(r.step(sit(t, "m1", [web(1)], local_=loc), view))

    assert len(step(T0)) == 1
    assert step(T0 + P.ask_every_s - 0.1) == []
    assert len(step(T0 + P.ask_every_s)) == 1


def test_unkeyed_local_replica_never_removed() -> None:
    r, view = Reconciler(), ServiceView()
    view.apply(rec(0, "zz", T0), T0)
    loc = (local(0, None, pod="web-0"), local(5, None, pod="web-5"))
    for t in range(0, 30, 5):
        refreshed(view, view.records(T0 + t), T0 + t)
        assert removes(r.step(sit(T0 + t, "m1", [web(1)], local_=loc), view)) == []


def test_local_replica_of_deleted_workload_left_to_the_agent() -> None:
    r, view = Reconciler(), ServiceView()
    loc = (local(3, "pa", pod="web-3"),)
    assert r.step(sit(T0, "m1", [], local_=loc), view) == []


def _duplicates(view: ServiceView, machine_of: dict[str, str], records: list[ServiceRecord],
                local_of: dict[str, LocalReplica], until: float,
                step: float = 1.0) -> dict[str, list[tuple[float, RemoveReplica]]]:
    """Run one reconciler per machine on the same view; which pods each wants removed."""
    recs = {m: Reconciler() for m in machine_of.values()}
    removed: dict[str, list[tuple[float, RemoveReplica]]] = {m: [] for m in recs}
    records = [dataclasses.replace(r, machine=machine_of[r.peer_id]) for r in records]
    t = T0
    while t <= until:
        refreshed(view, records, t)
        for peer, m in machine_of.items():
            for a in removes(recs[m].step(sit(t, m, [web(1)], local_=(local_of[peer],)), view)):
                removed[m].append((t, a))
        t += step
    return removed


def test_duplicate_lower_copy_removed_after_settle_never_both() -> None:
    view = ServiceView()
    a_rec, b_rec = rec(0, "pa", T0), rec(0, "pb", T0)  # pb's machine ranks higher
    locals_ = {"pa": local(0, "pa", pod="web-0-a"), "pb": local(0, "pb", pod="web-0-b")}
    removed = _duplicates(view, {"pa": M1, "pb": M2}, [a_rec, b_rec], locals_, T0 + 20)
    assert removed[M2] == []
    assert removed[M1], "the lower copy must go"
    first_t, first = removed[M1][0]
    assert first.pod == "web-0-a"
    assert first_t == T0 + P.settle_s  # only once the better copy was ready for settle_s
    assert "pb" in first.reason



def test_an_old_template_copy_goes_once_the_new_one_is_ready_update_settle_s() -> None:
    """A rollout's new copy outranks the old whatever the machines: the old one goes after
    update_settle_s (Kubernetes: minReadySeconds, 0 by default), not the duplicates'
    settle_s; a longer minReadySeconds is waited for."""
    for min_ready, waited in ((0, P.update_settle_s), (7, 7.0)):
        r, view = Reconciler(), ServiceView()
        strategy = dataclasses.replace(DEFAULT_STRATEGY, min_ready_s=min_ready)
        w = dataclasses.replace(web(1), template="new", strategy=strategy)
        old = dataclasses.replace(local(0, "pb", pod="web-0-b"), template="old")
        records = [dataclasses.replace(rec(0, "pa", T0, machine=M1), template="new"),
                   dataclasses.replace(rec(0, "pb", T0, machine=M2), template="old")]
        gone = None
        t = T0
        while gone is None and t <= T0 + 20:
            refreshed(view, records, t)
            if removes(r.step(sit(t, M2, [w], local_=(old,)), view)):
                gone = t
            t += 0.5
        assert gone == T0 + waited, (min_ready, gone)


def test_not_ready_copy_loses_despite_higher_rank() -> None:
    view = ServiceView()
    a_rec, b_rec = rec(0, "pa", T0), rec(0, "pb", T0, ready=False)
    locals_ = {"pa": local(0, "pa"), "pb": local(0, "pb", ready=False)}
    removed = _duplicates(view, {"pa": M1, "pb": M2}, [a_rec, b_rec], locals_, T0 + 30)
    # pb is not ready: it ranks lower and goes once pa has been ready for settle_s; pa stays.
    assert removed[M1] == []
    assert [a.pod for _, a in removed[M2]][:1] == [locals_["pb"].pod]


def test_duplicate_readiness_break_restarts_settle() -> None:
    r, view = Reconciler(), ServiceView()
    mine = local(0, "pa", pod="web-0-a")
    view.apply(rec(0, "pb", T0, machine=M2), T0)
    assert r.step(sit(T0 + 4, M1, [web(1)], local_=(mine,)), view) == []
    view.apply(rec(0, "pb", T0 + 4, ready=False, machine=M2), T0 + 4)  # a probe failed
    view.apply(rec(0, "pb", T0 + 5, ready=True, machine=M2), T0 + 5)
    assert r.step(sit(T0 + 9.9, M1, [web(1)], local_=(mine,)), view) == []
    assert [a.pod for a in removes(r.step(sit(T0 + 10, M1, [web(1)], local_=(mine,)),
                                          view))] == ["web-0-a"]


def test_retiring_copy_loses_to_a_ready_one() -> None:
    view = ServiceView()
    # pz's machine would win on rank, but its machine is being drained.
    z_rec, a_rec = rec(0, "pz", T0, retiring=True), rec(0, "pa", T0)
    locals_ = {"pz": local(0, "pz", retiring=True, pod="web-0-z"),
               "pa": local(0, "pa", pod="web-0-a")}
    removed = _duplicates(view, {"pz": M1, "pa": M2}, [z_rec, a_rec], locals_, T0 + 20)
    assert removed[M2] == []
    assert removed[M1] and removed[M1][0][1].pod == "web-0-z"


def test_three_copies_only_the_best_survives() -> None:
    view = ServiceView()
    records = [rec(0, p, T0) for p in ("pa", "pb", "pc")]
    locals_ = {p: local(0, p, pod=f"web-0-{p}") for p in ("pa", "pb", "pc")}
    removed = _duplicates(view, {"pa": M1, "pb": M2, "pc": M3}, records, locals_,
                          T0 + 20)
    assert removed[M3] == []
    assert removed[M1] and removed[M2]


@pytest.mark.parametrize("ready_a, ready_b, ret_a, ret_b",
                         list(itertools.product([True, False], repeat=4)))
def test_never_both_copies_removed_when_views_agree(ready_a: bool, ready_b: bool, ret_a: bool,
                                                      ret_b: bool) -> None:
    view = ServiceView()
    records = [rec(0, "pa", T0, ready=ready_a, retiring=ret_a),
               rec(0, "pb", T0, ready=ready_b, retiring=ret_b)]
    locals_ = {"pa": local(0, "pa", ready=ready_a, retiring=ret_a, pod="web-0-a"),
               "pb": local(0, "pb", ready=ready_b, retiring=ret_b, pod="web-0-b")}
    removed = _duplicates(view, {"pa": M1, "pb": M2}, records, locals_, T0 + 30)
    assert not (removed[M1] and removed[M2])
    machine_of = {"pa": M1, "pb": M2}
    best = max(records, key=lambda r: rank(True, r.ready, r.retiring, WID, 0,
                                           machine_of[r.peer_id], r.peer_id))
    if best.ready:  # a ready better copy always settles it: the other one goes
        loser = M1 if best.peer_id == "pb" else M2
        assert removed[loser] and not removed[M2 if loser == M1 else M1]
    else:
        assert removed == {M1: [], M2: []}


def test_never_both_when_a_probe_fails_before_its_record_is_out() -> None:
    """LocalReplica carries what its last record said (process.py passes the published
    flags), so a probe failure not yet published changes nobody's ranking."""
    view = ServiceView()
    # pb's machine ranks higher and both have been ready for a while (as the view shows).
    view.apply(rec(0, "pa", T0, machine=M1), T0)
    view.apply(rec(0, "pb", T0, machine=M2), T0)
    now = T0 + 10
    # pb's probe just failed; its machine knows, but its record (ready) is what it ranks by.
    ra = Reconciler().step(sit(now, M1, [web(1)], local_=(local(0, "pa"),)), view)
    rb = Reconciler().step(sit(now, M2, [web(1)], local_=(local(0, "pb"),)), view)
    assert removes(ra) and not removes(rb)
