"""Liveness: ring monitors, accusations with authority, refutation, verdicts (fake clock)."""

from __future__ import annotations

import itertools

import pytest

from beemesh.membership.liveness import (
    Accuse,
    Dead,
    Liveness,
    Params,
    Probe,
    Refused,
    Refute,
    Status,
)

T0 = 1_000_000.0
INC = int(T0 * 1000)
PEERS = [f"machine-{i:02d}" for i in range(12)]


def fleet(me: str, peers: list[str] = PEERS) -> Liveness:
    live = Liveness(me, Params())
    live.alive(me, INC, T0)
    for p in peers:
        live.alive(p, INC, T0)
    return live


def probes(actions: list) -> dict[str, int]:
    return {a.target: a.seq for a in actions if isinstance(a, Probe)}


def test_a_machine_probes_its_ring_successors_only() -> None:
    live = fleet(PEERS[0])
    targets = live.targets()
    assert targets == live.successors(PEERS[0], 3) and len(targets) == 3
    assert set(probes(live.tick(T0))) == set(targets)
    # every machine is probed by exactly `monitors` others
    rings = {p: fleet(p) for p in PEERS}
    for p in PEERS:
        assert sum(p in rings[q].targets() for q in PEERS) == 3


def test_answered_probes_keep_every_target_alive() -> None:
    live = fleet(PEERS[0])
    now = T0
    for _ in range(30):
        for target, seq in probes(live.tick(now)).items():
            live.acked(target, seq, now + 0.1)
        now += 0.5
    assert all(live.status(p) is Status.ALIVE for p in PEERS[1:])


def test_two_missed_probes_accuse_then_the_verdict_comes_after_the_suspicion() -> None:
    live = fleet(PEERS[0])
    silent = live.targets()[0]
    now, actions = T0, []
    while now < T0 + 20:
        out = live.tick(now)
        actions += [(now, a) for a in out if not isinstance(a, Probe)]
        for target, seq in probes(out).items():
            if target != silent:
                live.acked(target, seq, now + 0.1)
        now += 0.25
    (t_accuse, accuse), (_, confirm), (t_dead, dead) = actions
    assert accuse == Accuse(silent, INC) and 2.0 <= t_accuse - T0 <= 3.0
    assert confirm == Accuse(silent, INC, confirm=True) and dead == Dead(silent, INC)
    assert t_dead - t_accuse == pytest.approx(3.0, abs=0.25)
    assert live.status(silent) is Status.DEAD and silent not in live.live()
    assert silent not in live.targets() and len(live.targets()) == 3  # the next one is watched


def test_a_broken_connection_is_a_miss_at_once_and_a_new_record_a_clean_slate() -> None:
    live = fleet(PEERS[0])
    target = live.targets()[0]
    live.tick(T0)
    live.unreachable(target, T0 + 0.1)
    assert probes(live.tick(T0 + 0.1)) == {}
    assert probes(live.tick(T0 + 0.35)) == {target: 2}  # asked again after retry_s
    live.unreachable(target, T0 + 0.4)
    assert Accuse(target, INC) in live.tick(T0 + 0.4)
    live.alive(target, INC + 1, T0 + 0.5)  # it refuted: misses start again from zero
    out = live.tick(T0 + 0.7)
    assert probes(out) == {target: 3} and not [a for a in out if isinstance(a, Accuse)]
    live.unreachable(target, T0 + 0.8)
    assert not [a for a in live.tick(T0 + 0.8) if isinstance(a, Accuse)]  # one miss only


def test_an_accusation_counts_only_from_a_monitor_of_the_target() -> None:
    live = fleet(PEERS[0])
    target = PEERS[5]
    stranger = next(p for p in PEERS[1:] if p != target
                    and p not in live.predecessors(target, 5))
    with pytest.raises(Refused) as e:
        live.accused(stranger, target, INC, False, T0)
    assert e.value.reason == "authority" and live.status(target) is Status.ALIVE
    monitor = live.predecessors(target, 1)[0]
    assert live.accused(monitor, target, INC, False, T0) == []
    assert live.status(target) is Status.SUSPECT and live.suspects() == {target}
    assert live.tick(T0 + 2.9) == [] or all(isinstance(a, Probe) for a in live.tick(T0 + 2.9))
    assert Dead(target, INC) in live.tick(T0 + 3.0)


def test_stale_future_and_unknown_accusations_are_refused() -> None:
    live = fleet(PEERS[0])
    target = PEERS[5]
    monitor = live.predecessors(target, 1)[0]
    live.alive(target, INC + 500, T0)
    cases = {"stale": (target, INC), "future": (target, INC + 10**9),
             "unknown": ("machine-99", INC)}
    for reason, (who, inc) in cases.items():
        with pytest.raises(Refused) as e:
            live.accused(monitor, who, inc, False, T0)
        assert e.value.reason == reason


def test_an_accused_machine_refutes_once_and_a_newer_record_clears_the_suspicion() -> None:
    target = PEERS[5]
    me = fleet(target)
    monitor = me.predecessors(target, 1)[0]
    assert me.accused(monitor, target, INC, False, T0) == [Refute(INC)]
    assert me.accused(monitor, target, INC, True, T0) == []  # answered already
    other = fleet(PEERS[0])
    other.accused(monitor, target, INC, False, T0)
    assert other.alive(target, INC + 1, T0 + 1) is True  # the refutation
    assert other.status(target) is Status.ALIVE
    assert not [a for a in other.tick(T0 + 10) if isinstance(a, Dead)]


def test_a_confirmation_of_a_verdict_already_in_changes_nothing() -> None:
    """Two monitors reach the verdict side by side: the other's confirmation is no hostile
    message (not refused) and does not make the dead machine a suspect again."""
    live = fleet(PEERS[0])
    target = PEERS[5]
    monitor = live.predecessors(target, 1)[0]
    live.accused(monitor, target, INC, False, T0)
    assert Dead(target, INC) in live.tick(T0 + 3)
    assert live.accused(monitor, target, INC, True, T0 + 3.1) == []
    assert live.status(target) is Status.DEAD and target not in live.suspects()
    with pytest.raises(Refused):  # a newer incarnation than the verdict's is still unknown
        live.accused(monitor, target, INC + 1, True, T0 + 3.2)


def test_a_machine_held_up_holds_nothing_it_could_not_hear_against_others() -> None:
    """A process that did not run for 4 s wakes with a suspicion overdue and its probes
    unanswered: the refutation may be waiting to be read, so the suspicion waits as long
    again; the probes count one miss each, which accuses no one."""
    live = fleet(PEERS[0])
    target = PEERS[5]
    live.accused(live.predecessors(target, 1)[0], target, INC, False, T0)
    live.tick(T0)
    live.stalled(4.0)
    out = live.tick(T0 + 4.5)  # woken 4 s late
    assert not [a for a in out if isinstance(a, (Accuse, Dead))]
    for t, seq in probes(out).items():  # probed again at once, and answered
        live.acked(t, seq, T0 + 4.6)
    live.alive(target, INC + 1, T0 + 4.6)  # the refutation it had not read
    assert live.status(target) is Status.ALIVE
    now = T0 + 4.75
    while now < T0 + 9:
        out = live.tick(now)
        assert not [a for a in out if isinstance(a, (Accuse, Dead))]
        for t, seq in probes(out).items():
            live.acked(t, seq, now + 0.1)
        now += 0.25


def test_a_verdict_shadows_older_records_and_a_newer_one_brings_the_machine_back() -> None:
    live = fleet(PEERS[0])
    target = PEERS[5]
    live.accused(live.predecessors(target, 1)[0], target, INC, False, T0)
    assert Dead(target, INC) in live.tick(T0 + 3)
    assert live.alive(target, INC, T0 + 4) is False
    assert live.alive(target, INC + 5_000, T0 + 5) is True and target in live.live()


def test_a_withdrawal_takes_the_machine_off_the_ring_and_forget_drops_it_later() -> None:
    live = fleet(PEERS[0])
    live.left(PEERS[3], INC + 1, T0)
    assert live.status(PEERS[3]) is Status.LEFT and PEERS[3] not in live.live()
    live.forget(T0 + 1)
    assert live.status(PEERS[3]) is None


def test_next_deadline_covers_probes_and_suspicions() -> None:
    live = fleet(PEERS[0])
    assert live.next_deadline() == T0
    for target, seq in probes(live.tick(T0)).items():
        live.acked(target, seq, T0)
    assert live.next_deadline() == T0 + 1.0


def test_the_suspicion_fits_the_configured_bound() -> None:
    assert Params.within(10).suspicion_s == 3.0  # the default: a verdict within ~10 s
    assert Params.within(300).suspicion_s == 293.0
    assert Params.within(2).suspicion_s == 1.0


def test_an_accusation_of_this_machine_from_the_future_is_refused() -> None:
    """Answering it would sign a record dated past the clock skew everyone accepts."""
    target = PEERS[5]
    me = fleet(target)
    with pytest.raises(Refused) as e:
        me.accused(me.predecessors(target, 1)[0], target, INC + 10**9, False, T0)
    assert e.value.reason == "future"


def test_a_link_broken_between_two_machines_alone_is_not_accused_every_few_seconds() -> None:
    """The target answers each accusation (others reach it) while this monitor's probes keep
    failing: the next accusation waits 4 s, then 8, 16, ... and an ack starts afresh."""
    live = fleet(PEERS[0])
    target = live.targets()[0]
    now, inc, accusations = T0, INC, []
    while now < T0 + 60:
        out = live.tick(now)
        for a in out:
            if isinstance(a, Accuse) and not a.confirm:
                accusations.append(now)
                inc += 1
                live.alive(target, inc, now + 0.1)  # refuted over the other links
        for t, seq in probes(out).items():
            if t != target:
                live.acked(t, seq, now + 0.05)
        now += 0.25
    gaps = [b - a for a, b in itertools.pairwise(accusations)]
    assert len(accusations) <= 6, accusations
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert live.status(target) is Status.ALIVE
