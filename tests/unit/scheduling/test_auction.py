"""The per-task auction state machine (beemesh.scheduling.auction), driven with a fake clock.

Single-machine transitions are driven by calling the `Auctioneer` directly with explicit `now`
floats; multi-machine behaviour uses the in-memory bus of `auction_sim` (delivers every
PublishBid / PublishDeployed / PublishFailed to the other machines at the same fake time).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from auction_sim import GIB, Bus, deploys, machine, request

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
from beemesh.scheduling.auction import (
    Auctioneer,
    Params,
    Phase,
    TaskStatus,
)
from beemesh.scheduling.bounds import duplicate_rank
from beemesh.scheduling.scoring import (
    SCORE_MAX,
    TIE_BREAK,
    LocalState,
    TaskRequest,
    ineligible_reason,
    score,
)

P = Params()
REQ = request()
EPS = 1e-6
Local = Callable[[], LocalState]


class Lowest(random.Random):
    """Injected randomness pinned to the low end: shortest window, no back-off jitter."""

    def uniform(self, a: float, b: float) -> float:
        return a


class Highest(random.Random):
    """Injected randomness pinned to the high end: longest window, most back-off jitter."""

    def uniform(self, a: float, b: float) -> float:
        return b


def fixed(state: LocalState) -> Local:
    return lambda: state


def run(a: Auctioneer, until: float, local: Local,
        lease: Callable[[float], tuple[str | None, float]] | None = None) -> list[Action]:
    """Fire `a`'s timers in order up to `until`; answer CheckLease with `lease(now)` if given."""
    out: list[Action] = []
    while (t := a.next_deadline()) is not None and t <= until:
        acts = a.tick(t, local)
        out += acts
        for act in acts:
            if isinstance(act, CheckLease) and lease is not None:
                holder, expires = lease(t)
                out += a.lease_result(act.task_id, holder, expires, t, local)
    return out


def of(kind: type, actions: list[Action]) -> list[Action]:
    return [x for x in actions if isinstance(x, kind)]


def notes(actions: list[Action]) -> list[str]:
    return [x.text for x in actions if isinstance(x, Note)]


def lose_round_one(a: Auctioneer, local: Local, winner: str = "w",
                   task_id: str = "t") -> float:
    """Task seen at 0, a better bid from `winner` arrives at once, window closes -> WAITING."""
    a.task(task_id, REQ, 0.0, local)
    a.bid(task_id, 1, SCORE_MAX, winner, 0.0, local)
    assert of(PublishBid, run(a, 1.0, local)) == []
    st = a.tasks[task_id]
    assert st.phase is Phase.WAITING and st.winner == (SCORE_MAX, winner)
    return st.window_end


def win_alone(a: Auctioneer, local: Local, task_id: str = "t", now: float = 0.0) -> float:
    """Task seen at `now` with nobody else bidding -> DEPLOYING; returns the window close."""
    a.task(task_id, REQ, now, local)
    acts = run(a, now + 1.0, local)
    assert len(of(Deploy, acts)) == 1
    assert a.tasks[task_id].phase is Phase.DEPLOYING
    return a.tasks[task_id].window_end


# ---- 1. single machine: bid, window, lease renewals, deployed --------------------------------


def test_single_machine_full_lifecycle() -> None:
    a = Auctioneer("n1", random.Random(7))
    m = machine(cpu_free=3000, mem_free=6 * GIB)
    local = fixed(m)
    s = score(REQ, m)
    t0 = 100.0

    assert a.task("t1", REQ, t0, local) == []
    st = a.tasks["t1"]
    assert (st.phase, st.round, st.my_bid) == (Phase.BIDDING, 1, (s, "n1"))
    assert st.bid_at == pytest.approx(t0 + (1 - s / SCORE_MAX) * P.max_bid_delay_s)
    assert t0 < st.bid_at < st.window_end
    assert a.next_deadline() == st.bid_at

    bid_at = st.bid_at
    assert a.tick(bid_at - EPS, local) == []
    assert a.tick(bid_at, local) == [PublishBid("t1", 1, s)]
    assert (st.bids_sent, st.bid_at) == (1, None)

    window_end = st.window_end
    lo, hi = P.selection_s - P.jitter_s, P.selection_s + P.jitter_s
    assert t0 + lo <= window_end <= t0 + hi
    assert a.next_deadline() == window_end
    assert a.tick(window_end - EPS, local) == []
    assert a.tick(window_end, local) == [
        Note("t1", f"round 1: won with score {s}"),
        WriteLease("t1", P.lease_ttl_s),
        Deploy("t1", s),
    ]
    assert st.phase is Phase.DEPLOYING

    # Lease renewed every lease_renew_s while the deployment runs.
    now = window_end
    for k in range(1, 4):
        due = a.next_deadline()
        assert due == pytest.approx(window_end + k * P.lease_renew_s)
        assert due is not None
        assert a.tick(due - EPS, local) == []
        assert a.tick(due, local) == [WriteLease("t1", P.lease_ttl_s)]
        now = due

    now += 0.5
    assert a.deploy_result("t1", True, "", now) == [PublishDeployed("t1", s)]
    assert st.phase is Phase.RUNNING
    assert a.next_deadline() is None
    assert a.tick(now + 5 * P.lease_renew_s, local) == []  # no more renewals
    # A second (duplicate) result is ignored.
    assert a.deploy_result("t1", True, "", now + 1) == []


def test_bid_delay_shrinks_as_score_grows() -> None:
    big, small = machine(cpu_free=4000, mem_free=8 * GIB), machine(cpu_free=600, mem_free=GIB)
    assert score(REQ, big) > score(REQ, small)
    a_big = Auctioneer("big", random.Random(1))
    a_small = Auctioneer("small", random.Random(1))
    a_big.task("t", REQ, 10.0, fixed(big))
    a_small.task("t", REQ, 10.0, fixed(small))
    d_big = a_big.tasks["t"].bid_at
    d_small = a_small.tasks["t"].bid_at
    assert d_big is not None and d_small is not None
    assert 10.0 <= d_big < d_small <= 10.0 + P.max_bid_delay_s

    # A perfect score bids at once (up to its tie-break share).
    perfect = machine(uptime_s=1e9, price=0.0)
    a = Auctioneer("p", random.Random(1))
    a.task("t", request(cpu_milli=0, memory_bytes=0), 10.0, fixed(perfect))
    assert 10.0 <= a.tasks["t"].bid_at <= 10.0 + TIE_BREAK * P.max_bid_delay_s


def test_window_closes_within_jitter_and_after_every_bid_left() -> None:
    lo, hi = P.selection_s - P.jitter_s, P.selection_s + P.jitter_s
    assert P.max_bid_delay_s < lo  # even the slowest bid leaves before the earliest close
    lengths = []
    for seed in range(200):
        a = Auctioneer("n", random.Random(seed))
        a.task("t", REQ, 5.0, fixed(machine(cpu_free=600, mem_free=GIB)))
        st = a.tasks["t"]
        assert st.bid_at is not None and st.bid_at < st.window_end
        lengths.append(st.window_end - 5.0)
    assert all(lo - EPS <= x <= hi + EPS for x in lengths)
    assert min(lengths) < P.selection_s - P.jitter_s / 2  # the jitter is really applied
    assert max(lengths) > P.selection_s + P.jitter_s / 2


def test_same_seed_same_timeline() -> None:
    def timeline(seed: int) -> list[tuple[float | None, float]]:
        a = Auctioneer("n", random.Random(seed))
        a.task("t", REQ, 0.0, fixed(machine()))
        return [(a.tasks["t"].bid_at, a.tasks["t"].window_end)]

    assert timeline(42) == timeline(42)
    assert timeline(42) != timeline(43)


# ---- 2. three machines on a bus: one winner, everybody agrees --------------------------------


def test_three_machines_agree_on_winner_and_only_it_deploys() -> None:
    bus = Bus()
    for node, cpu in [("n1", 1000), ("n2", 3000), ("n3", 2000)]:
        bus.add(node, machine(cpu_free=cpu))
    bus.publish_task("t1", REQ)
    bus.run_until(1.0)

    expected = max((score(REQ, m.state), m.machine_id) for m in bus.live())
    assert expected[1] == "n2"
    assert {m.machine_id: m.auction.tasks["t1"].winner for m in bus.live()} == {
        "n1": expected, "n2": expected, "n3": expected}
    assert deploys(bus, "t1") == ["n2"]
    assert {n: bus.auction(n).tasks["t1"].phase for n in bus.machines} == {
        "n1": Phase.WAITING, "n2": Phase.DEPLOYING, "n3": Phase.WAITING}

    bus.deploy_result("n2", "t1", True)
    assert {n: bus.auction(n).tasks["t1"].phase for n in bus.machines} == {
        "n1": Phase.DONE, "n2": Phase.RUNNING, "n3": Phase.DONE}
    bus.run_until(20.0)
    assert deploys(bus, "t1") == ["n2"]  # nobody re-enters once it is deployed
    assert bus.sent(CheckLease) == []


@pytest.mark.parametrize("order", [["peer-b", "peer-c", "peer-a"], ["peer-c", "peer-a", "peer-b"]])
def test_equal_scores_are_broken_by_machine_id(order: list[str]) -> None:
    bus = Bus()
    for i, node in enumerate(order):
        bus.add(node, machine(), seed=i + 10)
    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    s = score(REQ, machine())
    assert {m.auction.tasks["t"].winner for m in bus.live()} == {(s, "peer-c")}
    assert deploys(bus, "t") == ["peer-c"]


# ---- 3. bid suppression ---------------------------------------------------------------------


def test_better_bid_seen_before_own_delay_suppresses_own_bid() -> None:
    m_hi, m_lo = machine(cpu_free=4000), machine(cpu_free=1000)
    hi, lo = Auctioneer("hi", random.Random(1)), Auctioneer("lo", random.Random(2))
    s_hi, s_lo = score(REQ, m_hi), score(REQ, m_lo)
    hi.task("t", REQ, 0.0, fixed(m_hi))
    lo.task("t", REQ, 0.0, fixed(m_lo))
    t_hi, t_lo = hi.tasks["t"].bid_at, lo.tasks["t"].bid_at
    assert t_hi is not None and t_lo is not None and t_hi < t_lo

    assert hi.tick(t_hi, fixed(m_hi)) == [PublishBid("t", 1, s_hi)]
    assert lo.bid("t", 1, s_hi, "hi", t_hi, fixed(m_lo)) == []
    assert lo.tick(t_lo, fixed(m_lo)) == []  # suppressed: no PublishBid

    st_lo, st_hi = lo.tasks["t"], hi.tasks["t"]
    assert (st_lo.bids_seen, st_lo.bids_sent, st_lo.bids_suppressed) == (1, 0, 1)
    assert st_lo.bid_at is None and st_lo.my_bid == (s_lo, "lo")
    assert (st_hi.bids_seen, st_hi.bids_sent, st_hi.bids_suppressed) == (0, 1, 0)

    # The suppressed machine still knows the winner and does not deploy.
    assert of(Deploy, run(lo, 1.0, fixed(m_lo))) == []
    assert lo.tasks["t"].phase is Phase.WAITING and lo.tasks["t"].winner == (s_hi, "hi")


def test_worse_bid_seen_does_not_suppress() -> None:
    m = machine(cpu_free=4000)
    a = Auctioneer("a", random.Random(1))
    a.task("t", REQ, 0.0, fixed(m))
    assert a.bid("t", 1, score(REQ, m) - 1, "zz", 0.0, fixed(m)) == []
    # Equal score but a lower node id is also worse.
    assert a.bid("t", 1, score(REQ, m), "0", 0.0, fixed(m)) == []
    acts = run(a, 1.0, fixed(m))
    assert acts[0] == PublishBid("t", 1, score(REQ, m))
    st = a.tasks["t"]
    assert (st.bids_seen, st.bids_sent, st.bids_suppressed) == (2, 1, 0)
    assert of(Deploy, acts) == [Deploy("t", score(REQ, m))]


@pytest.mark.parametrize("heard_late_s", [0.0, 2.0])
def test_windows_stretch_while_messages_arrive_late(heard_late_s: float) -> None:
    """A busy mesh delivers bids 2 s late. Machines that do not know it each close a 250 ms
    window having heard no better bid and all deploy; machines that measure the lateness
    stretch their windows by it and agree on one winner."""
    bus = Bus(latency_s=2.0, heard_late_s=heard_late_s)
    for node, cpu in [("n1", 1000), ("n2", 3000), ("n3", 2000)]:
        bus.add(node, machine(cpu_free=cpu))
    bus.publish_task("t1", REQ)
    bus.run_until(3.0)
    if heard_late_s:
        assert deploys(bus, "t1") == ["n2"]
    else:
        assert sorted(deploys(bus, "t1")) == ["n1", "n2", "n3"]


def test_window_stretch_is_capped() -> None:
    a = Auctioneer("n", random.Random(1), P, lambda _now: 3600.0)
    a.task("t", REQ, 5.0, fixed(machine()))
    assert a.tasks["t"].window_end <= 5.0 + P.selection_s + P.max_stretch_s + P.jitter_s


def twenty_machines(latency_s: float) -> Bus:
    bus = Bus(latency_s=latency_s)
    for i in range(20):
        bus.add(f"m{i:02d}", machine(cpu_free=600 + 170 * i, mem_free=(1 + (i * 7) % 8) * GIB,
                                     uptime_s=60.0 * ((i * 13) % 20), price=(i % 5) / 5),
                seed=100 + i)
    return bus


@pytest.mark.parametrize("latency_s", [0.0, 0.01, 0.03])
def test_suppression_keeps_bid_count_low_with_twenty_machines(latency_s: float) -> None:
    bus = twenty_machines(latency_s)
    scores = {m.machine_id: score(REQ, m.state) for m in bus.live()}
    assert len(set(scores.values())) == 20  # varied
    bus.publish_task("t", REQ)
    bus.run_until(1.0)

    published = len(bus.sent(PublishBid, "t"))
    print(f"latency {latency_s * 1000:.0f} ms: {published} of 20 machines published a bid")
    assert 1 <= published < 20
    if latency_s == 0.0:
        assert published == 1  # the best bids first and everybody else sees it in time
    if latency_s <= 0.01:
        assert published <= 20 // 4
    sts = [m.auction.tasks["t"] for m in bus.live()]
    assert sum(st.bids_sent for st in sts) == published
    assert sum(st.bids_suppressed for st in sts) == 20 - published
    assert all(st.bids_seen == published - st.bids_sent for st in sts)
    best = max((s, n) for n, s in scores.items())
    assert {st.winner for st in sts} == {best}
    assert deploys(bus, "t") == [best[1]]


def test_without_suppression_everybody_bids_at_once() -> None:
    bus = twenty_machines(0.0)
    off = Bus(params=Params(suppression=False))
    for m in bus.live():
        off.add(m.machine_id, m.state, seed=1)
    off.publish_task("t", REQ)
    assert all(m.auction.tasks["t"].bid_at == 0.0 for m in off.live())
    off.run_until(1.0)
    assert len(off.sent(PublishBid, "t")) == 20
    best = max((score(REQ, m.state), m.machine_id) for m in off.live())
    assert deploys(off, "t") == [best[1]]

    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    assert sum(m.auction.bids_sent_total for m in bus.live()) == 1
    assert sum(m.auction.bids_suppressed_total for m in bus.live()) == 19
    assert sum(m.auction.bids_sent_total for m in off.live()) == 20


# ---- 4. not eligible ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "m", "word"),
    [
        pytest.param(request(arch="aarch64"), machine(arch="x86_64"), "arch", id="arch"),
        pytest.param(request(node_selector={"zone": "eu"}), machine(labels={"zone": "us"}),
                     "nodeSelector", id="selector"),
        pytest.param(request(memory_bytes=16 * GIB), machine(mem_free=8 * GIB), "memory",
                     id="memory"),
    ],
)
def test_ineligible_machine_never_bids_and_waits(req: TaskRequest, m: LocalState,
                                                 word: str) -> None:
    a = Auctioneer("n", random.Random(3))
    reason = ineligible_reason(req, m)
    assert reason is not None and word in reason
    assert a.task("t", req, 0.0, fixed(m)) == [Note("t", f"round 1: not bidding ({reason})")]
    st = a.tasks["t"]
    assert (st.my_bid, st.bid_at, st.ineligible) == (None, None, reason)
    assert a.next_deadline() == st.window_end

    acts = a.tick(st.window_end, fixed(m))
    assert acts == [Note("t", "round 1: no bids")]
    assert st.phase is Phase.WAITING
    assert st.deadline is not None
    base = st.window_end + P.lease_ttl_s + 1.0
    assert base <= st.deadline <= base + P.backoff_jitter_s
    # Still ineligible on every later round: never a bid, never a deploy.
    later = run(a, 30.0, fixed(m), lease=lambda now: (None, 0.0))
    assert of(PublishBid, later) == [] and of(Deploy, later) == []
    assert st.round > 1 and st.ineligible == reason


def test_ineligible_machine_follows_eligible_winner_on_bus() -> None:
    bus = Bus()
    bus.add("arm", machine(arch="aarch64"))
    bus.add("x86", machine(arch="x86_64", cpu_free=1000))
    bus.publish_task("t", request(arch="x86_64"))
    bus.run_until(1.0)
    assert [s.machine for s in bus.sent(PublishBid)] == ["x86"]
    assert deploys(bus, "t") == ["x86"]
    arm = bus.auction("arm").tasks["t"]
    assert arm.phase is Phase.WAITING and arm.winner == (score(REQ, machine(cpu_free=1000)),
                                                          "x86")


# ---- 5. winner crashes before deploying ----------------------------------------------------


def test_loser_checks_lease_at_deadline_and_reenters_when_none() -> None:
    m = machine(cpu_free=2000)
    local = fixed(m)
    a = Auctioneer("lo", random.Random(5))
    window_end = lose_round_one(a, local)
    st = a.tasks["t"]
    assert st.deadline is not None
    base = window_end + P.lease_ttl_s + 1.0
    assert base <= st.deadline <= base + P.backoff_jitter_s
    deadline = st.deadline
    assert a.next_deadline() == deadline

    assert a.tick(deadline - EPS, local) == []
    assert a.tick(deadline, local) == [CheckLease("t")]
    assert st.phase is Phase.CHECKING and a.next_deadline() is None
    assert a.tick(deadline + 10, local) == []  # waits for the answer

    acts = a.lease_result("t", None, 0.0, deadline + 0.05, local)
    assert acts == [Note("t", "no deployment and no live lease; re-entering")]
    assert (st.phase, st.round, st.best_other) == (Phase.BIDDING, 2, None)
    assert st.my_bid == (score(REQ, m), "lo")

    later = run(a, deadline + 2.0, local)
    assert of(PublishBid, later) == [PublishBid("t", 2, score(REQ, m))]
    assert of(Deploy, later) == [Deploy("t", score(REQ, m))]


def test_expired_lease_counts_as_no_lease() -> None:
    a = Auctioneer("lo", random.Random(5))
    lose_round_one(a, fixed(machine()))
    deadline = a.next_deadline()
    assert deadline is not None
    assert a.tick(deadline, fixed(machine())) == [CheckLease("t")]
    acts = a.lease_result("t", "w", deadline - 0.5, deadline, fixed(machine()))
    assert notes(acts) == ["no deployment and no live lease; re-entering"]
    assert a.tasks["t"].round == 2


def test_live_lease_sends_loser_back_to_waiting() -> None:
    local = fixed(machine())
    a = Auctioneer("lo", random.Random(5))
    lose_round_one(a, local)
    deadline = a.next_deadline()
    assert deadline is not None
    assert a.lease_result("t", None, 0.0, deadline - EPS, local) == []  # not asked: ignored
    assert a.tick(deadline, local) == [CheckLease("t")]
    expires = deadline + 2.0
    assert a.lease_result("t", "w", expires, deadline, local) == []
    st = a.tasks["t"]
    assert (st.phase, st.round) == (Phase.WAITING, 1)
    assert st.deadline is not None
    assert expires + 1.0 <= st.deadline <= expires + 1.0 + P.backoff_jitter_s
    assert a.next_deadline() == st.deadline
    assert run(a, st.deadline - EPS, local) == []
    assert a.tick(st.deadline, local) == [CheckLease("t")]  # and checks again


def test_crashed_winner_is_replaced_by_best_survivor_on_bus() -> None:
    bus = Bus()
    bus.add("a", machine(cpu_free=4000, uptime_s=3600))
    bus.add("b", machine(cpu_free=3000))
    bus.add("c", machine(cpu_free=2000))
    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    assert deploys(bus, "t") == ["a"]
    bus.crash("a")  # before deploying: no renewals, no Deployed, no Failed

    bus.run_until(4.0)  # lease (3 s) not yet past TTL + 1 s: survivors still waiting
    assert [bus.auction(n).tasks["t"].phase for n in "bc"] == [Phase.WAITING] * 2
    bus.run_until(10.0)
    assert len(bus.sent(CheckLease, "t")) >= 1
    assert deploys(bus, "t") == ["a", "b"]
    assert [bus.auction(n).tasks["t"].round for n in "bc"] == [2, 2]
    assert bus.auction("b").tasks["t"].phase is Phase.DEPLOYING
    bus.deploy_result("b", "t", True)
    assert bus.auction("c").tasks["t"].phase is Phase.DONE
    bus.run_until(30.0)
    assert deploys(bus, "t") == ["a", "b"]


# ---- 6. failed deployments -----------------------------------------------------------------


def test_winner_deploy_failure_publishes_failed_and_excludes_it() -> None:
    m = machine()
    local = fixed(m)
    a = Auctioneer("n", random.Random(9))
    window_end = win_alone(a, local)
    now = window_end + 0.3
    assert a.deploy_result("t", False, "image pull failed", now) == [
        PublishFailed("t", "image pull failed")]
    st = a.tasks["t"]
    assert st.excluded and st.phase is Phase.WAITING and st.renew_at is None
    assert of(WriteLease, a.tick(now + 2 * P.lease_renew_s, local)) == []

    # Later rounds: no bid from this machine, whatever its capacity.
    a.bid("t", 2, 1, "other", now + 0.5, local)
    assert (st.round, st.ineligible, st.my_bid, st.bid_at) == (2, "deploy failed here", None, None)
    later = run(a, now + 20, local, lease=lambda _: (None, 0.0))
    assert of(PublishBid, later) == [] and of(Deploy, later) == []


def test_others_reenter_immediately_on_failed_and_someone_else_wins() -> None:
    bus = Bus()
    bus.add("n1", machine(cpu_free=1000))
    bus.add("n2", machine(cpu_free=2000))
    bus.add("n3", machine(cpu_free=4000))
    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    assert deploys(bus, "t") == ["n3"]

    bus.now = 1.5
    bus.deploy_result("n3", "t", False, "image pull failed")
    for n in ("n1", "n2"):
        st = bus.auction(n).tasks["t"]
        assert (st.phase, st.round) == (Phase.BIDDING, 2), n
        note = Note("t", "n3 failed it; re-entering")
        assert any(s.machine == n and s.at == 1.5 and s.action == note for s in bus.log)
    bus.run_until(3.0)
    assert deploys(bus, "t") == ["n3", "n2"]
    assert [s.machine for s in bus.sent(PublishBid) if s.at >= 1.5] == ["n2"]
    assert bus.auction("n3").tasks["t"].excluded
    bus.deploy_result("n2", "t", True)
    assert {n: bus.auction(n).tasks["t"].phase for n in bus.machines} == {
        "n1": Phase.DONE, "n2": Phase.RUNNING, "n3": Phase.DONE}


def test_failed_is_ignored_outside_waiting() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(9))
    a.task("t", REQ, 0.0, local)
    assert a.failed("t", "x", "boom", 0.01, local) == []  # BIDDING
    assert a.tasks["t"].round == 1
    assert a.failed("unknown", "x", "boom", 0.01, local) == []


def test_stale_failed_from_previous_round_winner_is_ignored() -> None:
    """BUG (expected to fail): auction.py `Auctioneer.failed()` does not check that the
    failing node is the winner of the current round. A Failed from round 1's winner that arrives
    after this machine already joined round 2 (and round 2 has another winner) makes it re-enter
    round 3, bid, and - since the round-2 winner is DEPLOYING and ignores round-3 bids - deploy a
    duplicate."""
    m = machine(cpu_free=1000)
    local = fixed(m)
    c = Auctioneer("c", random.Random(11))
    c.task("t", REQ, 0.0, local)
    c.bid("t", 1, 900_000, "a", 0.01, local)  # a wins round 1
    run(c, 1.0, local)
    c.bid("t", 2, 800_000, "b", 1.0, local)  # b (which got a's Failed first) starts round 2
    assert score(REQ, m) < 800_000
    run(c, 1.5, local)
    st = c.tasks["t"]
    assert (st.phase, st.round, st.winner) == (Phase.WAITING, 2, (800_000, "b"))

    acts = c.failed("t", "a", "boom", 1.6, local)  # a's Failed, delayed by the gossip mesh
    assert acts == []
    assert (st.phase, st.round) == (Phase.WAITING, 2)


# ---- 7. late bids ---------------------------------------------------------------------------


def test_late_bid_for_current_round_is_noted_and_changes_nothing() -> None:
    m = machine()
    local = fixed(m)
    a = Auctioneer("n", random.Random(4))
    window_end = win_alone(a, local)
    now = window_end + 0.05
    assert a.bid("t", 1, SCORE_MAX, "z", now, local) == [Note("t", "late bid from z in round 1")]
    st = a.tasks["t"]
    assert st.phase is Phase.DEPLOYING
    assert of(WriteLease, a.tick(window_end + P.lease_renew_s, local)) == [
        WriteLease("t", P.lease_ttl_s)]
    assert a.deploy_result("t", True, "", now + 1.5) == [PublishDeployed("t", score(REQ, m))]
    assert st.phase is Phase.RUNNING


def test_late_bid_while_waiting_keeps_phase_and_deadline() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(4))
    window_end = lose_round_one(a, local)
    st = a.tasks["t"]
    deadline = st.deadline
    assert a.bid("t", 1, 5, "late", window_end + 0.1, local) == [
        Note("t", "late bid from late in round 1")]
    assert (st.phase, st.round, st.deadline) == (Phase.WAITING, 1, deadline)


def test_bid_for_higher_round_while_waiting_reenters_that_round() -> None:
    m = machine()
    local = fixed(m)
    a = Auctioneer("n", random.Random(4))
    window_end = lose_round_one(a, local)
    st = a.tasks["t"]
    seen = st.bids_seen
    assert a.bid("t", 3, 10, "z", window_end + 2.0, local) == []
    assert (st.phase, st.round, st.best_other) == (Phase.BIDDING, 3, (10, "z"))
    assert st.bids_seen == seen + 1 and st.my_bid == (score(REQ, m), "n")
    acts = run(a, window_end + 3.0, local)
    assert of(PublishBid, acts) == [PublishBid("t", 3, score(REQ, m))]
    assert of(Deploy, acts) == [Deploy("t", score(REQ, m))]


def test_bid_for_higher_round_while_checking_reenters_that_round() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(4))
    lose_round_one(a, local)
    deadline = a.next_deadline()
    assert deadline is not None
    assert a.tick(deadline, local) == [CheckLease("t")]
    a.bid("t", 2, 10, "z", deadline + 0.01, local)
    st = a.tasks["t"]
    assert (st.phase, st.round) == (Phase.BIDDING, 2)
    # the now-stale lease answer is ignored
    assert a.lease_result("t", None, 0.0, deadline + 0.02, local) == []
    assert st.round == 2


def test_stale_own_and_unknown_bids_are_ignored() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(4))
    lose_round_one(a, local)
    a.bid("t", 2, 10, "z", 5.0, local)
    st = a.tasks["t"]
    seen = st.bids_seen
    assert a.bid("t", 1, SCORE_MAX, "old", 5.01, local) == []  # older round
    assert a.bid("t", 2, SCORE_MAX, "n", 5.01, local) == []  # our own echo
    assert a.bid("nope", 1, SCORE_MAX, "z", 5.01, local) == []  # unknown task
    assert st.bids_seen == seen and st.best_other == (10, "z")


# ---- 8. duplicates --------------------------------------------------------------------------


def partitioned_pair() -> tuple[Auctioneer, Auctioneer]:
    """Two machines that both won the same task (each picked the other in an earlier round
    too, e.g. a lease that lapsed); both are DEPLOYING. Returned (higher rank, lower rank)."""
    top, bottom = sorted(("x", "y"), key=lambda m: duplicate_rank("t", m), reverse=True)
    hi, lo = Auctioneer(top, random.Random(1)), Auctioneer(bottom, random.Random(2))
    win_alone(hi, fixed(machine(cpu_free=1000)))  # scores rank nothing: hi scores lower
    win_alone(lo, fixed(machine(cpu_free=4000)))
    hi.tasks["t"].winners[lo.machine_id] = 0.0
    lo.tasks["t"].winners[hi.machine_id] = 0.0
    return hi, lo


def test_duplicate_both_running_lower_rank_drops() -> None:
    hi, lo = partitioned_pair()
    hi.deploy_result("t", True, "", 2.0)
    lo.deploy_result("t", True, "", 2.0)
    # The partition heals and each learns of the other's deployment.
    assert hi.deployed("t", lo.machine_id, 3.0) == []
    assert hi.tasks["t"].phase is Phase.RUNNING
    assert lo.deployed("t", hi.machine_id, 3.0) == [
        Note("t", f"duplicate: {hi.machine_id} ranks higher; dropping ours"),
        DropDuplicate("t", hi.machine_id)]
    assert lo.tasks["t"].phase is Phase.DONE
    # Learning it again does not drop twice.
    assert of(DropDuplicate, lo.deployed("t", hi.machine_id, 3.5)) == []


def test_killing_a_running_replica_with_a_forged_deployed() -> None:
    """A rogue's `Deployed` (whatever score it carries) does not stop an auction it did not win
    and never removes a running copy: only a winner's counts, ranked by `duplicate_rank`."""
    local = fixed(machine())
    n = Auctioneer("n", random.Random(1))
    window_end = win_alone(n, local)
    n.deploy_result("t", True, "", window_end + 1)
    with pytest.raises(wire.Rejected) as e:
        n.deployed("t", "rogue", window_end + 2)
    assert e.value.reason == "not_winner"
    assert n.tasks["t"].phase is Phase.RUNNING
    assert n.status("t") == TaskStatus("deployed", "n", ())
    # A waiting machine is not fooled into DONE either.
    w = Auctioneer("n", random.Random(2))
    lose_round_one(w, local, winner="honest")
    with pytest.raises(wire.Rejected):
        w.deployed("t", "rogue", 1.0)
    assert w.tasks["t"].phase is Phase.WAITING
    assert w.deployed("t", "honest", 1.1) == [Note("t", "deployed by honest")]


def test_a_bidder_that_won_in_its_own_view_is_believed_but_cannot_remove_our_copy() -> None:
    """Views of a round differ by a message's delay: a machine whose bid this one saw may have
    won where this one picked itself. Its Deployed and lease hints are believed (the auction
    does not wait or re-enter for nothing), but only a winner here can make this machine drop
    its own running copy."""
    local = fixed(machine())
    n = Auctioneer("n", random.Random(1))
    window_end = win_alone(n, local)
    n.bid("t", 1, 1, "other", window_end + 0.5, local)  # a late, lower bid
    n.deploy_result("t", True, "", window_end + 1)
    n.lease_seen("t", "other", window_end + 3, window_end + 2)  # no refusal: it bid
    assert n.deployed("t", "other", window_end + 2) == []
    assert n.tasks["t"].phase is Phase.RUNNING  # whatever the ranking says
    w = Auctioneer("w", random.Random(2))
    w.task("t", REQ, 0.0, lambda: machine(cordoned=True))  # does not bid itself
    w.bid("t", 1, 5, "other", 0.1, local)
    assert w.deployed("t", "other", 0.2) == [Note("t", "deployed by other")]


def test_better_ranked_deployed_while_still_deploying_drops_after_deploy_result() -> None:
    hi, lo = partitioned_pair()
    hi.deploy_result("t", True, "", 2.0)
    assert lo.deployed("t", hi.machine_id, 2.1) == []  # lo still DEPLOYING: decided later
    assert lo.tasks["t"].phase is Phase.DEPLOYING
    acts = lo.deploy_result("t", True, "", 2.5)
    assert of(DropDuplicate, acts) == [DropDuplicate("t", hi.machine_id)]
    assert lo.tasks["t"].phase is Phase.DONE
    # hi, hearing of lo's (lower-ranked) copy, keeps running.
    assert hi.deployed("t", lo.machine_id, 2.6) == []
    assert hi.tasks["t"].phase is Phase.RUNNING


def test_lower_ranked_deployed_while_deploying_keeps_ours() -> None:
    hi, lo = partitioned_pair()
    assert hi.deployed("t", lo.machine_id, 2.0) == []
    assert of(DropDuplicate, hi.deploy_result("t", True, "", 2.5)) == []
    assert hi.tasks["t"].phase is Phase.RUNNING


def test_partitioned_bus_deploys_twice_and_leaves_the_surplus_to_the_work_plane() -> None:
    """Across a partition neither side picked the other: each refuses the other's `Deployed`
    (counted), and the work plane's surplus rule (`workplane/reconcile.py`) removes a copy."""
    bus = Bus()
    bus.add("hi", machine(cpu_free=4000))
    bus.add("lo", machine(cpu_free=1000))
    bus.blocked.add(frozenset(("hi", "lo")))
    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    assert sorted(deploys(bus, "t")) == ["hi", "lo"]
    bus.deploy_result("hi", "t", True)
    bus.blocked.clear()
    bus.deploy_result("lo", "t", True)
    assert bus.sent(DropDuplicate) == []
    assert bus.refused == [("hi", "not_winner")]
    assert {bus.auction(m).tasks["t"].phase for m in ("hi", "lo")} == {Phase.RUNNING}


# ---- 9. done, garbage collection, next_deadline --------------------------------------------


def test_deployed_elsewhere_while_waiting_is_done_and_collected() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(6))
    lose_round_one(a, local)
    assert a.deployed("t", "w", 2.0) == [Note("t", "deployed by w")]
    st = a.tasks["t"]
    assert (st.phase, st.deployed_by, st.finished_at) == (Phase.DONE, "w", 2.0)
    # The waiting timer is cancelled; the only timer left is the clean-up.
    assert a.next_deadline() == 2.0 + P.keep_done_s
    assert a.tick(2.0 + P.keep_done_s, local) == []
    assert "t" in a.tasks  # kept exactly keep_done_s for late messages
    assert a.tick(2.0 + P.keep_done_s + 0.01, local) == [Forget("t")]  # the caller's cue
    assert "t" not in a.tasks


def test_deployed_elsewhere_while_bidding_or_checking_is_done() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(6))
    a.task("t", REQ, 0.0, local)
    a.tasks["t"].winners["w"] = 0.0  # w won an earlier round
    assert a.deployed("t", "w", 0.01) == [Note("t", "deployed by w")]
    assert a.tasks["t"].phase is Phase.DONE
    assert a.tick(1.0, local) == []  # no bid, no window close

    b = Auctioneer("n", random.Random(6))
    lose_round_one(b, local)
    deadline = b.next_deadline()
    assert deadline is not None
    b.tick(deadline, local)
    assert b.deployed("t", "w", deadline) == [Note("t", "deployed by w")]
    assert b.tasks["t"].phase is Phase.DONE
    assert b.lease_result("t", None, 0.0, deadline, local) == []


def test_next_deadline_is_earliest_pending_timer_and_none_when_idle() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(8))
    assert a.next_deadline() is None
    a.task("t1", REQ, 10.0, local)
    a.task("t2", REQ, 5.0, local)
    t1, t2 = a.tasks["t1"], a.tasks["t2"]
    assert a.next_deadline() == min(t1.bid_at or 1e9, t2.bid_at or 1e9)
    assert a.next_deadline() == t2.bid_at
    timers = []
    while (d := a.next_deadline()) is not None and d < 20.0:
        timers.append(d)
        a.tick(d, local)
    assert timers == sorted(timers)
    assert t1.phase is Phase.DEPLOYING and t2.phase is Phase.DEPLOYING
    a.deploy_result("t1", True, "", 20.0)
    a.deploy_result("t2", True, "", 20.0)
    assert a.next_deadline() is None
    # Tasks running here are kept (a later, worse Deployed must still be recognised) ...
    a.tick(20.0 + P.keep_done_s + 1, local)
    assert set(a.tasks) == {"t1", "t2"}
    # ... until their workload goes.
    assert sorted(a.forget_workload(REQ.workload_id)) == ["t1", "t2"]
    assert a.next_deadline() is None


# ---- 10. republished task -------------------------------------------------------------------


def test_republished_task_is_reevaluated_when_nobody_bid() -> None:
    state = {"m": machine(mem_free=GIB // 2)}

    def local() -> LocalState:
        return state["m"]

    a = Auctioneer("n", random.Random(12))
    req = request(memory_bytes=GIB)
    assert notes(a.task("t", req, 0.0, local))[0].startswith("round 1: not bidding (needs")
    assert notes(run(a, 1.0, local)) == ["round 1: no bids"]
    st = a.tasks["t"]
    assert st.phase is Phase.WAITING and st.winner is None

    state["m"] = machine(mem_free=4 * GIB)  # capacity freed
    assert a.task("t", req, 2.0, local) == []
    assert (st.phase, st.round, st.ineligible) == (Phase.BIDDING, 2, None)
    assert st.my_bid == (score(req, state["m"]), "n")
    acts = run(a, 3.0, local)
    assert of(PublishBid, acts) == [PublishBid("t", 2, score(req, state["m"]))]
    assert of(Deploy, acts) == [Deploy("t", score(req, state["m"]))]


def test_republished_task_is_ignored_when_someone_bid_or_in_progress() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(12))
    lose_round_one(a, local)
    assert a.task("t", REQ, 2.0, local) == []
    assert (a.tasks["t"].phase, a.tasks["t"].round) == (Phase.WAITING, 1)

    b = Auctioneer("n", random.Random(12))
    b.task("t", REQ, 0.0, local)
    assert b.task("t", REQ, 0.01, local) == []  # BIDDING: same round continues
    assert b.tasks["t"].round == 1

    c = Auctioneer("n", random.Random(12))
    win_alone(c, local, task_id="u")
    assert c.task("u", REQ, 1.0, local) == []  # DEPLOYING: ignored
    assert c.tasks["u"].phase is Phase.DEPLOYING
    c.deploy_result("u", True, "", 1.5)
    assert c.task("u", REQ, 2.0, local) == []  # RUNNING: ignored
    assert (c.tasks["u"].phase, c.tasks["u"].round) == (Phase.RUNNING, 1)


# ---- 11. forget -----------------------------------------------------------------------------


def test_forget_workload_removes_all_its_tasks() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(13))
    a.task("web-0", request(workload_id="web"), 0.0, local)
    a.task("web-1", request(workload_id="web"), 0.0, local)
    a.task("db-0", request(workload_id="db"), 0.0, local)
    assert sorted(a.forget_workload("web")) == ["web-0", "web-1"]
    assert list(a.tasks) == ["db-0"]
    assert a.forget_workload("web") == []
    # Messages for forgotten tasks are ignored.
    assert a.bid("web-0", 1, 1, "z", 0.01, local) == []
    assert a.deployed("web-0", "z", 0.01) == []
    assert a.failed("web-0", "z", "boom", 0.01, local) == []
    acts = run(a, 1.0, local)
    assert {x.task_id for x in acts} == {"db-0"}
    assert a.forget_workload("db") == ["db-0"]
    assert a.tasks == {} and a.next_deadline() is None


# ---- bugs found while writing these tests ---------------------------------------------------


def test_deploy_failure_after_better_deployment_known_does_not_reenter() -> None:
    """BUG (expected to fail): a machine DEPLOYING that hears a better `Deployed` and then fails
    its own deploy goes to WAITING (`deploy_result`, `if not ok:` branch) although `deployed_by` is
    set. At its deadline it checks the lease; the winner is RUNNING and no longer renews, so the
    lease has expired and `lease_result` re-enters round after round forever,
    noting "no deployment and no live lease" although it knows the task is deployed."""
    local = fixed(machine())
    lo = Auctioneer("lo", random.Random(2))
    window_end = win_alone(lo, local)
    lo.tasks["t"].winners["hi"] = 0.0
    assert lo.deployed("t", "hi", window_end + 0.1) == []
    assert lo.deploy_result("t", False, "boom", window_end + 0.2) == [PublishFailed("t", "boom")]
    acts = run(lo, window_end + 30.0, local, lease=lambda _: (None, 0.0))
    st = lo.tasks["t"]
    assert [n for n in notes(acts) if "re-entering" in n] == []
    assert st.round == 1 and st.phase is not Phase.BIDDING


def test_reentry_via_foreign_bid_does_not_deploy_twice() -> None:
    """BUG (expected to fail): a WAITING machine that re-enters round N because it received
    another round-N bid (`bid()` -> `_enter_round`) starts its own bid delay only then. Its
    bid leaves up to 2 * max_bid_delay_s (0.24 s) after the initiator entered the round, later
    than the initiator's shortest window (selection_s - jitter_s = 0.15 s), breaking the
    invariant documented on `Params.max_bid_delay_s`. The initiator decides alone and deploys,
    the later (better) machine also wins: two deployments in one round."""
    bus = Bus()
    bus.add("w", machine(cpu_free=4000, uptime_s=3600, price=0.0), seed=1)
    # Two loaded machines: low scores -> long bid delays.
    x = machine(cpu_free=700, mem_free=GIB + GIB // 2, price=1.0, replicas_here={"web": 2})
    y = machine(cpu_free=2000, mem_free=4 * GIB, price=1.0, replicas_here={"web": 2})
    bus.add("x", x, rng=Lowest())  # shortest window, checks the lease first
    bus.add("y", y, rng=Highest())
    sx, sy = score(REQ, x), score(REQ, y)
    delay = [(1 - s / SCORE_MAX) * P.max_bid_delay_s for s in (sx, sy)]
    assert sx < sy and sum(delay) > P.selection_s - P.jitter_s  # the precondition

    bus.publish_task("t", REQ)
    bus.run_until(1.0)
    assert deploys(bus, "t") == ["w"]
    bus.crash("w")
    bus.run_until(10.0)
    assert deploys(bus, "t") == ["w", "y"]


# ---- 12. the one lifecycle: status, placing, deployed_ago ------------------------------------


def test_status_follows_the_auction() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(3))
    assert a.status("t") is None
    window_end = win_alone(a, local)
    st = a.status("t")
    assert st is not None and (st.state, st.machine) == ("pending", "")  # DEPLOYING
    assert a.placing(REQ.workload_id, REQ.ordinal) == "t"
    a.deploy_result("t", True, "", window_end + 1)
    st = a.status("t")
    assert st is not None and (st.state, st.machine) == ("deployed", "n")
    assert a.placing(REQ.workload_id, REQ.ordinal) is None
    assert a.deployed_ago(REQ.workload_id, REQ.ordinal, window_end + 5) is None  # ours


def test_status_of_a_task_deployed_elsewhere_and_its_failures() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(6))
    lose_round_one(a, local)
    a.failed("t", "w", "image missing", 1.5, local)
    st = a.status("t")
    assert st is not None and st.state == "pending"
    assert (st.failures, st.reason) == (("w: image missing",), "image missing")
    a.tasks["t"].winners["x"] = 1.6
    a.deployed("t", "x", 2.0)
    st = a.status("t")
    assert st is not None and (st.state, st.machine) == ("deployed", "x")
    assert a.deployed_ago(REQ.workload_id, REQ.ordinal, 7.5) == ("t", 5.5)
    assert a.deployed_ago(REQ.workload_id, REQ.ordinal + 1, 7.5) is None


def test_own_failed_deploy_is_a_failure_of_this_machine() -> None:
    local = fixed(machine())
    a = Auctioneer("n", random.Random(3))
    window_end = win_alone(a, local)
    a.deploy_result("t", False, "no image", window_end + 1)
    st = a.status("t")
    assert st is not None and st.state == "pending" and st.failures == ("n: no image",)


def test_a_lease_hint_far_in_the_future_is_not_believed() -> None:
    """A hostile or broken machine cannot hold a task back for ever with one lease hint."""
    local = fixed(machine())
    a = Auctioneer("n", random.Random(6))
    lose_round_one(a, local)
    st = a.tasks["t"]
    deadline = st.deadline
    with pytest.raises(wire.Rejected):
        a.lease_seen("t", "w", 1.0 + 10**9, 1.0)
    assert st.deadline == deadline  # ignored
    a.lease_seen("t", "w", 1.0 + P.max_lease_ahead_s, 1.0)
    assert st.deadline is not None and st.deadline > 1.0 + P.max_lease_ahead_s
    a.tasks["t"].phase = Phase.CHECKING
    acts = a.lease_result("t", "w", 2.0 + 10**9, 2.0, local)
    assert any(isinstance(x, Note) and "re-entering" in x.text for x in acts)


def test_room_for_new_tasks_is_bounded() -> None:
    """A flood of fresh task ids (new epochs of one signed manifest) cannot fill memory."""
    local = fixed(machine())
    a = Auctioneer("n", random.Random(1), Params(max_tasks=5, max_tasks_per_replica=2))
    a.task("t1", REQ, 0.0, local)
    a.task("t2", REQ, 0.0, local)
    assert a.room_for("t1", REQ.workload_id, REQ.ordinal) is None  # known: a republish
    reason = a.room_for("t3", REQ.workload_id, REQ.ordinal)
    assert reason is not None and "2 tasks for replica" in reason
    other = request(workload_id="other")
    for i in range(3):
        assert a.room_for(f"o{i}", "other", 0) is None
        a.task(f"o{i}", other if i == 0 else request(workload_id=f"w{i}"), 0.0, local)
    reason = a.room_for("o9", "w9", 0)
    assert reason is not None and "following 5 tasks" in reason


def test_stalling_a_task_with_a_lease_hint_from_a_machine_that_did_not_win() -> None:
    """A lease hint (pub/sub or DHT) counts only from the round's winner, and only until
    `max_lease_hold_s` after it won: then the others re-enter."""
    local = fixed(machine())
    a = Auctioneer("n", random.Random(6))
    lose_round_one(a, local, winner="w")
    st = a.tasks["t"]
    deadline = st.deadline
    with pytest.raises(wire.Rejected) as e:
        a.lease_seen("t", "rogue", 3.0, 1.0)
    assert e.value.reason == "not_winner" and st.deadline == deadline
    st.phase = Phase.CHECKING
    acts = a.lease_result("t", "rogue", 3.0, 1.0, local)
    assert any("re-entering" in n for n in notes(acts))
    # The winner renewing for ever holds it back only so long.
    b = Auctioneer("n", random.Random(6))
    lose_round_one(b, local, winner="w")
    won_at = b.tasks["t"].winners["w"]
    later = won_at + P.max_lease_hold_s + 1
    with pytest.raises(wire.Rejected):
        b.lease_seen("t", "w", later + 3, later)
    b.tasks["t"].phase = Phase.CHECKING
    assert any("re-entering" in n for n in notes(b.lease_result("t", "w", later + 3, later,
                                                                  local)))


def test_a_task_whose_pod_is_gone_is_released_then_forgotten() -> None:
    """A replica rolled to a new template (or removed as surplus) leaves its task RUNNING
    here; released, it is finished like one another machine runs and forgotten keep_done_s
    later, so a replica's past tasks never fill `max_tasks_per_replica`."""
    a, local = Auctioneer("n", random.Random(1)), fixed(machine())
    now = win_alone(a, local, "t")
    a.deploy_result("t", True, "", now)
    assert a.running(finished_before=now + 1) == ["t"]
    assert a.running(finished_before=now) == []  # not yet old enough
    a.release("t", now + 40)
    assert a.running(finished_before=now + 50) == []
    assert a.status("t") == TaskStatus("deployed", "n", ())
    a.tick(now + 40 + a.params.keep_done_s + 1, local)
    assert a.status("t") is None
    a.release("unknown", now)  # nothing to release: no error


def test_an_ordered_ordinal_is_bid_for_as_soon_as_the_lower_ones_are_ready() -> None:
    """An OrderedReady ordinal nobody may bid for yet is looked at again every second (not
    only after the lease wait of a round nobody bid in): once ordinal 0 is ready here, the
    next round starts with this machine's bid."""
    import dataclasses

    req = dataclasses.replace(REQ, workload_id="statefulset/default/db", ordinal=1,
                              stateful=True, ordered=True)
    a = Auctioneer("n1", Lowest())
    state = {"m": machine()}
    local: Local = lambda: state["m"]  # noqa: E731
    a.task("t", req, 0.0, local)
    acts = run(a, 2.5, local, lease=lambda _t: (None, 0.0))
    assert of(PublishBid, acts) == [] and a.tasks["t"].round == 1
    state["m"] = dataclasses.replace(machine(), ready_replicas=frozenset(
        {("statefulset/default/db", 0)}))
    acts = run(a, 3.6, local, lease=lambda _t: (None, 0.0))
    bids = of(PublishBid, acts)
    assert len(bids) == 1 and bids[0].round == 2  # well before the 4 s lease wait ends
