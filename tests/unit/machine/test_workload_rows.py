"""`beemesh get workloads` rows (beemesh.machine.pods.workload_rows): when a rollout is done."""

from __future__ import annotations

from typing import Any

from manifest_testlib import DEPLOYMENT, mutated, parse_one

from beemesh.machine.pods import workload_rows
from beemesh.workloads.store import StoredWorkload


def stored(kind: str, partition: int = 0) -> StoredWorkload:
    def change(d: dict[str, Any]) -> None:
        d["kind"] = kind
        d["spec"]["replicas"] = 3
        if kind == "StatefulSet":
            d["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                           "rollingUpdate": {"partition": partition}}
    return StoredWorkload(parse_one(mutated(DEPLOYMENT, change)), b"", 100.0)


def pods(w: StoredWorkload, templates: list[str]) -> list[dict[str, Any]]:
    return [{"workload": w.workload_id, "replica": i, "template": t, "ready": True}
            for i, t in enumerate(templates)]


def state(w: StoredWorkload, templates: list[str]) -> str:
    return workload_rows([w], pods(w, templates), {}, 200.0)[0]["state"]


def test_a_partitioned_statefulset_is_rolled_out_once_the_ordinals_above_are() -> None:
    """As kubectl's "partitioned roll out complete": ordinals below the partition keep
    their template."""
    w = stored("StatefulSet", partition=1)
    new = w.spec.template_hash
    assert state(w, ["old", new, new]) == "complete"
    assert state(w, ["old", "old", new]) == "progressing"
    assert state(w, [new, new, new]) == "complete"
    whole = stored("StatefulSet")
    assert state(whole, ["old", new, new]) == "progressing"
    deploy = stored("Deployment")
    assert state(deploy, ["old", deploy.spec.template_hash, deploy.spec.template_hash]) == \
        "progressing"
    # Not ready, or one missing: not done.
    rows = pods(w, ["old", new, new])
    rows[2]["ready"] = False
    assert workload_rows([w], rows, {}, 200.0)[0]["state"] == "progressing"
    assert state(w, ["old", new]) == "progressing"


def test_a_stalled_report_of_an_earlier_template_does_not_stall_the_new_one() -> None:
    """Right after an apply the work plane may still report the previous template's rollout
    (stalled at its deadline): the new template's rollout is progressing, not stalled."""
    w = stored("Deployment")
    rows = pods(w, ["old", "old", "old"])
    stale = {w.workload_id: {"template": "old", "state": "stalled", "reason": "deadline"}}
    row = workload_rows([w], rows, stale, 200.0)[0]
    assert (row["state"], row["reason"]) == ("progressing", "")
    current = {w.workload_id: {"template": w.spec.template_hash, "state": "stalled",
                               "reason": "deadline"}}
    assert workload_rows([w], rows, current, 200.0)[0]["state"] == "stalled"
