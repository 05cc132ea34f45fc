"""What an apply publishes: a task per replica that runs nowhere, the same ids every time."""

from __future__ import annotations

from store_testlib import spec

from beemesh.scheduling.apply import ReplicaStep, plan_apply
from beemesh.scheduling.messages import task_id

GEN = 1_700_000_000_000


def test_every_missing_replica_gets_its_apply_task() -> None:
    web = spec(replicas=3)
    steps = plan_apply(web, GEN, {(web.workload_id, 1), ("deployment/default/other", 0)})
    assert [(s.ordinal, s.exists) for s in steps] == [(0, False), (1, True), (2, False)]
    assert [s.task_id for s in steps] == [task_id(web.workload_id, o, GEN) for o in range(3)]
    assert steps[1].to_dict() == {"task_id": steps[1].task_id, "workload": web.workload_id,
                                  "replica": 1, "state": "exists"}
    assert steps[0].to_dict()["state"] == "pending"


def test_the_same_apply_is_the_same_tasks_and_a_new_apply_new_ones() -> None:
    web = spec(replicas=2)
    assert plan_apply(web, GEN, set()) == plan_apply(web, GEN, set())
    again = {s.task_id for s in plan_apply(web, GEN + 1, set())}
    assert again.isdisjoint(s.task_id for s in plan_apply(web, GEN, set()))


def test_scaled_to_zero_publishes_nothing() -> None:
    assert plan_apply(spec(replicas=0), GEN, set()) == []
    assert ReplicaStep("t", "w", 0, True).to_dict()["state"] == "exists"
