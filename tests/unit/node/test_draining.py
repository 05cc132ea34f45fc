"""Drain: every replicable replica is retired once; StatefulSet replicas stop first."""

from __future__ import annotations

from beemesh.node.draining import Candidate, Retire, retirements


def test_each_replica_is_retired_once_in_order() -> None:
    pods = [Candidate("web-0", True, False), Candidate("db-0", True, True)]
    assert retirements(pods, set(), set()) == [Retire("web-0", stop_first=False),
                                               Retire("db-0", stop_first=True)]
    assert retirements(pods, {"web-0", "db-0"}, set()) == []  # already on their way


def test_replicas_being_removed_or_without_a_manifest_are_left_alone() -> None:
    pods = [Candidate("web-0", True, False), Candidate("old-0", False, False),
            Candidate("web-1", True, False)]
    assert retirements(pods, set(), {"web-1"}) == [Retire("web-0", stop_first=False)]
