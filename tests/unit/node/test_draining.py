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


def test_keep_data_stops_the_ordinals_with_claims_here_without_replacing_them() -> None:
    pods = [Candidate("web-0", True, False), Candidate("db-0", True, True, claims=True),
            Candidate("db-1", True, True)]
    assert retirements(pods, set(), set(), keep_data=True) == [
        Retire("web-0", stop_first=False), Retire("db-0", stop_first=True, replace=False),
        Retire("db-1", stop_first=True)]
    assert all(r.replace for r in retirements(pods, set(), set()))  # a plain drain moves all


def test_the_drain_marker_keeps_grace_and_keep_data(tmp_path) -> None:
    from beemesh.node.cordon import read_drain

    marker = tmp_path / "draining"
    assert read_drain(marker) == (None, False)
    marker.write_text("45 keep-data\n")
    assert read_drain(marker) == (45, True)
    marker.write_text("45\n")
    assert read_drain(marker) == (45, False)
    marker.write_text("garbage\n")
    assert read_drain(marker) == (30, False)  # a damaged marker still means draining
