"""Deletes: which pods here go, and which Deletes are relayed to whom, when (fake clock)."""

from __future__ import annotations

from beemesh.runtime import PodInfo
from beemesh.workloads.deletes import FORGET_AFTER_S, RELAY_EVERY_S, RelayPolicy, doomed

T0 = 1_700_000_000.0
GONE = "deployment/default/gone"
KEPT = "deployment/default/kept"


def pod(name: str, workload: str) -> PodInfo:
    return PodInfo(name, workload, 0, "t", "running", T0, ("main",), ())


def deleted(workload_id: str) -> bool:
    return workload_id == GONE


def test_pods_of_deleted_workloads_go_unless_already_going() -> None:
    pods = [pod("gone-0", GONE), pod("kept-0", KEPT), pod("gone-1", GONE)]
    assert doomed(pods, deleted, set()) == ["gone-0", "gone-1"]
    assert doomed(pods, deleted, {"gone-0"}) == ["gone-1"]


def test_a_machine_still_listing_a_deleted_pod_is_told_every_relay_period() -> None:
    policy = RelayPolicy()
    listed = [("m1", GONE), ("m1", KEPT), ("m2", KEPT)]
    assert policy.due(listed, deleted, T0) == [GONE]
    assert policy.due(listed, deleted, T0 + RELAY_EVERY_S - 0.1) == []
    assert policy.due(listed, deleted, T0 + RELAY_EVERY_S) == [GONE]
    # A second machine listing it is told too, on its own clock.
    assert policy.due([*listed, ("m2", GONE)], deleted, T0 + RELAY_EVERY_S + 1) == [GONE]


def test_a_machine_that_asked_for_a_task_of_it_is_told_at_once() -> None:
    policy = RelayPolicy()
    policy.due([("m1", GONE)], deleted, T0)
    policy.asked(GONE)
    assert policy.due([("m1", GONE)], deleted, T0 + 1) == [GONE]
    assert policy.due([("m1", GONE)], deleted, T0 + 2) == []  # asking is answered once


def test_sent_times_are_forgotten_after_a_while() -> None:
    policy = RelayPolicy()
    policy.due([("m1", GONE)], deleted, T0)
    policy.due([], deleted, T0 + FORGET_AFTER_S + 1)
    assert policy._sent == {}
