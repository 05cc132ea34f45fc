"""Which replica a connection goes to (sans-IO, fake clock)."""

from __future__ import annotations

from beemesh.workplane.routing import DOWN_S, MAX_TRIES, Endpoint, Router


def ep(peer: str, local: bool = False, rtt: float | None = None, ordinal: int = 0) -> Endpoint:
    return Endpoint(peer, "deployment/default/b", ordinal, f"m-{peer}", local, rtt)


def test_same_machine_first() -> None:
    order = Router().order("s", [ep("a", rtt=0.001), ep("b", local=True)], 0.0)
    assert order[0].peer_id == "b"


def test_near_replicas_take_turns_far_ones_come_last() -> None:
    r = Router()
    eps = [ep("a", rtt=0.001), ep("b", rtt=0.004, ordinal=1), ep("c", rtt=0.200, ordinal=2)]
    firsts = [r.order("s", eps, 0.0)[0].peer_id for _ in range(4)]
    assert firsts == ["a", "b", "a", "b"]
    assert r.order("s", eps, 0.0)[-1].peer_id == "c"


def test_a_failed_replica_is_passed_over_then_tried_again() -> None:
    r = Router()
    eps = [ep("a", rtt=0.001), ep("b", rtt=0.001, ordinal=1)]
    r.failed("a", 100.0)
    assert [e.peer_id for e in r.order("s", eps, 101.0)] == ["b"]
    assert {e.peer_id for e in r.order("s", eps, 100.0 + DOWN_S)} == {"a", "b"}
    r.failed("a", 200.0)
    r.failed("b", 200.0)
    assert len(r.order("s", eps, 201.0)) == 2  # nothing else left: try them anyway


def test_at_most_max_tries_and_nothing_for_no_endpoint() -> None:
    eps = [ep(str(i), rtt=0.001, ordinal=i) for i in range(10)]
    assert len(Router().order("s", eps, 0.0)) == MAX_TRIES
    assert Router().order("s", [], 0.0) == []
