"""What another machine's word on scheduling is worth (beemesh.scheduling.bounds)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from auction_sim import GIB, machine, request

from beemesh.membership.records import MachineRecord, PodSummary, RecordCapacity
from beemesh.scheduling.auction import Params
from beemesh.scheduling.bounds import PICKED_PRUNE_AT, Claims, bid_refusal, ceiling, lease_refusal
from beemesh.scheduling.messages import SCORE
from beemesh.scheduling.scoring import SCORE_MAX, score

REQ = request(cpu_milli=500, memory_bytes=GIB)


def record(cpu: int = 4000, mem: int = 8 * GIB, arch: str = "x86_64",
           pods: tuple[PodSummary, ...] = (), labels: dict[str, str] | None = None
           ) -> MachineRecord:
    return MachineRecord("rogue", (), arch, dict(labels or {}),
                         RecordCapacity(cpu, mem, mem // 2), pods=pods)


def pod(workload: str, ordinal: int) -> PodSummary:
    return PodSummary(workload, ordinal, f"t{ordinal}", f"{workload}-{ordinal}", "running", 0.0)


def test_winning_every_auction_with_an_inflated_score() -> None:
    """Scores are bounded by schema, and a bid above what the bidder's own record allows, or
    from a machine whose record cannot run the task, is refused. A bidder whose record is not
    here (yet) is believed: every machine must see the same bids to pick the same winner."""
    assert SCORE.hi == SCORE_MAX  # the schema bounds every score on the wire
    top = ceiling(REQ, record())
    assert top is not None and top < SCORE_MAX
    assert bid_refusal(REQ, record(), top) is None
    assert "above" in (bid_refusal(REQ, record(), top + 1) or "")
    assert "above" in (bid_refusal(REQ, record(), SCORE_MAX) or "")
    assert bid_refusal(REQ, None, 1) is None
    assert bid_refusal(request(arch="x86_64"), record(arch="aarch64"), 1) is not None
    assert bid_refusal(REQ, record(cpu=100), 1) is not None  # less cpu than it needs
    assert bid_refusal(request(node_selector={"gpu": "yes"}), record(), 1) is not None
    # Advertising replicas of the workload lowers the ceiling (spread), as for an honest bid.
    crowded = record(pods=(pod("web", 0), pod("web", 1)))
    assert (ceiling(REQ, crowded) or 0) < top


@pytest.mark.parametrize("seed", range(20))
def test_an_honest_bid_never_exceeds_its_records_ceiling(seed: int) -> None:
    rng = random.Random(seed)
    cpu_total, mem_total = rng.randint(600, 64000), rng.randint(2, 64) * GIB
    here = rng.randint(0, 3)
    honest = machine(cpu_free=rng.randint(500, cpu_total), mem_free=rng.randint(GIB, mem_total),
                     cpu_total=cpu_total, mem_total=mem_total, uptime_s=rng.uniform(0, 10**5),
                     price=rng.random(), replicas_here={"web": here})
    rec = record(cpu_total, mem_total, pods=tuple(pod("web", i) for i in range(here)))
    assert bid_refusal(REQ, rec, score(REQ, honest)) is None


def test_stalling_a_task_with_a_lease_hint() -> None:
    """Only a machine a round picked may hold the lease, not too far ahead nor for ever."""
    p = Params()
    assert lease_refusal("t", "w", 0.0, 3.0, 1.0, p) is None
    assert lease_refusal("t", "rogue", None, 3.0, 1.0, p)[0] == "not_winner"  # type: ignore
    assert lease_refusal("t", "w", 0.0, 1e12, 1.0, p)[0] == "stale"  # type: ignore[index]
    late = p.max_lease_hold_s + 1
    assert lease_refusal("t", "w", 0.0, late + 3, late, p)[0] == "stale"  # type: ignore


def on_refused(into: list[tuple[str, str, str]]) -> Callable[[str, str, str], None]:
    return lambda machine, task, why: into.append((machine, task, why))


class View:
    """What `Claims` reads of the MachineView: which (machine, task) arrived with the
    machine, which live records list."""

    def __init__(self) -> None:
        self.arrived: set[tuple[str, str]] = set()
        self.listed: set[tuple[str, str]] = set()

    def listed_on_arrival(self, peer: str, task: str, grace_s: float) -> bool:
        return (peer, task) in self.arrived

    def lists(self, peer: str, task: str) -> bool:
        return (peer, task) in self.listed


def test_claiming_pods_it_does_not_run() -> None:
    """A record listing a pod of a task this agent's auction placed elsewhere is not believed
    (no heal blocked, no "exists", no logs routed there), nor one of a task no round here
    placed, listed by a machine in view all along (an invented task)."""
    from beemesh.scheduling.auction import Auctioneer

    refused: list[tuple[str, str, str]] = []
    a, claims = Auctioneer("n", random.Random(1)), Claims(View(), 10, on_refused(refused))
    a.task("t0", REQ, 0.0, lambda: machine())
    a.bid("t0", 1, SCORE_MAX, "honest", 0.0, lambda: machine())
    a.tick(1.0, lambda: machine())
    assert claims.count("honest", "t0", a.winners_of("t0"))
    assert not claims.count("rogue", "t0", a.winners_of("t0"))
    assert a.winners_of("t-invented") is None
    assert not claims.count("rogue", "t-invented", a.winners_of("t-invented"))
    assert not claims.count("rogue", "t-invented", None)
    # each refused claim is reported once (counted as `claim`), however often it is asked
    assert [(m, t) for m, t, _ in refused] == [("rogue", "t0"), ("rogue", "t-invented")]


def test_a_claim_of_a_task_no_round_placed_here_counts_if_brought_along() -> None:
    """After a partition: this side's rounds saw no bids (or none ran here), the other side
    placed the replica; its machine's record, on arrival, is what keeps this side from
    starting a second copy."""
    from beemesh.scheduling.auction import Auctioneer

    view, refused = View(), []
    a, claims = Auctioneer("n", random.Random(1)), Claims(view, 10, on_refused(refused))
    a.task("t0", REQ, 0.0, lambda: machine(cordoned=True))  # this side does not bid
    a.tick(5.0, lambda: machine(cordoned=True))  # the window closes without a bid
    assert a.winners_of("t0") == set()
    assert not claims.count("far-side", "t0", a.winners_of("t0"))
    view.arrived |= {("far-side", "t0"), ("far-side", "t-far")}
    assert claims.count("far-side", "t0", a.winners_of("t0"))
    assert claims.count("far-side", "t-far", None)


def test_a_claim_a_round_here_placed_counts_after_the_task_is_forgotten() -> None:
    """The auction forgets finished tasks (keep_done_s); the machine it picked still runs
    the pod and its claim still counts. What is remembered stays bounded by what live records
    list."""
    view, refused = View(), []
    claims = Claims(view, 10, on_refused(refused))
    assert claims.count("honest", "t0", {"honest", "other"})
    assert claims.count("honest", "t0", None)  # forgotten by the auction: remembered here
    for i in range(PICKED_PRUNE_AT + 1):  # a machine listing ever new tasks
        claims.count("rogue", f"t{i}", {"rogue"})
    assert not claims.count("rogue", "t1", None)  # pruned: no live record lists it
    assert not claims.count("honest", "t0", None)  # nor this one any more
    view.listed.add(("honest", "t5"))
    claims.count("honest", "t5", {"honest"})
    assert claims.count("honest", "t5", None)


def test_a_bid_for_a_host_path_is_believed_from_a_machine_whose_record_allows_it() -> None:
    import dataclasses as dc

    from beemesh.scheduling.bounds import advertised

    req = dc.replace(request(), host_paths=("/srv/data/site",))
    allowing = dc.replace(record(), host_path_roots=("/srv/data",))
    assert advertised(allowing).host_path_roots == ("/srv/data",)
    assert bid_refusal(req, allowing, 1) is None
    refused = bid_refusal(req, record(), 1)
    assert refused is not None and "host_path_roots" in refused


@pytest.mark.parametrize("seed", range(10))
def test_a_bid_for_an_ordered_ordinal_with_claims_is_judged_by_the_record_alone(
        seed: int) -> None:
    """Whether lower ordinals are ready is the fleet's state, which the validator does not
    hold; disk is not in records: an honest bid is never refused for either."""
    import dataclasses

    rng = random.Random(seed)
    req = dataclasses.replace(REQ, ordinal=2, stateful=True, ordered=True, claims=True,
                              storage_bytes=rng.randint(1, 100) * GIB)
    honest = dataclasses.replace(
        machine(cpu_free=4000, mem_free=8 * GIB, cpu_total=4000, mem_total=8 * GIB,
                uptime_s=10**5, price=0.0),
        ready_replicas=frozenset({(req.workload_id, 0), (req.workload_id, 1)}),
        disk_free_bytes=rng.randint(100, 1000) * GIB, disk_total_bytes=1000 * GIB)
    assert bid_refusal(req, record(), score(req, honest)) is None
