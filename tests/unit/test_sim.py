"""The simulator behind `make sim` (tests/sim): its own logic, on small fleets, in seconds.

The big sizes run only under `make sim`; nothing here is timed against the wall clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the `sim` package

from beemesh.membership.liveness import Params, Status
from sim.engine import Net, Queue, hops
from sim.membership import Fleet
from sim.scenarios import kill, partition
from sim.scheduling import Burst


def test_events_run_in_time_order_and_ties_in_push_order() -> None:
    q = Queue()
    q.push(2.0, "c")
    q.push(1.0, "a")
    q.push(1.0, "b")
    q.push_many([(1.5, "x2"), (0.5, "x1"), (3.0, "x3")])
    assert [(t, e) for t, e in q.pop_until(2.5)] == [
        (0.5, "x1"), (1.0, "a"), (1.0, "b"), (1.5, "x2"), (2.0, "c")]
    assert q.now == 2.5 and len(q) == 1
    assert list(q.pop_until(10.0)) == [(3.0, "x3")]


def test_loss_drops_about_the_given_share_and_is_reproducible() -> None:
    a, b = Net(seed=5, loss=0.05), Net(seed=5, loss=0.05)
    drops = [a.lost() for _ in range(20_000)]
    assert drops == [b.lost() for _ in range(20_000)]
    assert 0.04 < sum(drops) / len(drops) < 0.06
    assert not any(Net(seed=5).lost() for _ in range(1000))


def test_link_latency_is_fixed_per_link_symmetric_and_around_the_median() -> None:
    net = Net(seed=1, latency_ms=20.0)
    assert net.link_s("a", "b") == net.link_s("b", "a")
    links = sorted(net.link_s("m", f"p{i}") for i in range(2000))
    assert 0.017 < links[1000] < 0.023  # the median
    assert all(net.delay_s("a", "b") >= net.link_s("a", "b") for _ in range(100))
    assert [hops(n, 6) for n in (100, 1000, 10_000, 100_000)] == [3, 5, 6, 7]


def test_a_partition_cuts_only_links_between_sides_until_healed() -> None:
    net = Net(seed=1)
    assert not net.cut("a", "b")
    net.partition({"a": 0, "b": 1, "c": 0})
    assert net.cut("a", "b") and net.cut("b", "c") and not net.cut("a", "c")
    assert net.cut("b", "unknown")  # a machine with no side is on side 0
    net.heal()
    assert not net.cut("a", "b")


def test_fifty_machines_agree_a_killed_one_is_dead_and_no_live_one_is() -> None:
    result = kill(50, 50, seed=3, params=Params(), k=1)
    assert result["all_detected"] and result["false_dead_verdicts"] == 0
    # and without the scenario wrapper: every live machine's view
    f = Fleet(50, 50, Net(seed=4), Params(), seed=4)
    f.run(3.0)
    victim = f.ids[7]
    f.kill(victim)
    f.run(20.0)
    for m in f.ids:
        if m != victim:
            assert f.live[m].status(victim) is Status.DEAD
            assert len(f.live[m].live()) == 48  # everyone else is still alive here
    assert f.false_dead == []


def test_a_small_burst_places_every_task() -> None:
    figures = Burst(40, seed=2, tasks=10).run()
    assert figures["placed"] == 10 and figures["mode"] == "full"
    assert figures["bids_per_task_mean"] >= 1
    assert figures["quality_min"] is not None and figures["quality_min"] > 0.5


def test_forty_machines_split_declare_each_other_dead_and_come_back_after_the_heal() -> None:
    r = partition(40, 40, seed=5, params=Params())
    assert all(t is not None for t in r["declared_other_side_dead_s"].values())
    assert r["same_side_false_dead"] == 0
    assert r["heal_whole_again_s"] is not None and r["still_dead_somewhere_after_heal"] == 0
    assert r["heal_broadcasts_window"]["refutations"] == 40  # each machine refutes once
