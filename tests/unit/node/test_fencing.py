"""Fencing: an outnumbered machine stops its StatefulSet replicas, after a grace (fake clock)."""

from __future__ import annotations

from beemesh.membership.quorum import QuorumSample, has_majority, is_outnumbered
from beemesh.node.fencing import FENCE_GRACE_S, fences


def sample(visible: int, known: int, outnumbered_for: float) -> QuorumSample:
    return QuorumSample(visible, known, has_majority(visible, known),
                        is_outnumbered(visible, known), 0.0, outnumbered_for)


def test_outnumbered_past_the_grace_fences_every_stateful_replica() -> None:
    orders = fences(sample(1, 4, FENCE_GRACE_S), ["db-0", "db-2"])
    assert [f.pod for f in orders] == ["db-0", "db-2"]
    assert "only 1 of 4 machines in sight" in orders[0].reason


def test_a_blip_shorter_than_the_grace_fences_nothing() -> None:
    assert fences(sample(1, 4, FENCE_GRACE_S - 0.01), ["db-0"]) == []


def test_not_outnumbered_fences_nothing_whatever_the_clock_says() -> None:
    """An even split, or a majority in sight: the other side cannot act without this one."""
    for visible, known in ((2, 4), (3, 4), (4, 4), (1, 1), (0, 0)):
        assert fences(sample(visible, known, 99.0), ["db-0"]) == []
    assert fences(sample(2, 4, 0.0), ["db-0"], grace_s=0.0) == []


def test_nothing_to_fence_without_stateful_replicas() -> None:
    assert fences(sample(1, 5, 30.0), []) == []
