"""`beemesh describe`: the workload, its replicas, and why one does not run."""

from __future__ import annotations

from beemesh.cli.workload_cmds import describe, why_not

ROW = {"workload": "deployment/default/web", "template": "abc", "generation": 1,
       "strategy": "RollingUpdate", "desired": 2, "current": 1, "ready": 1, "up_to_date": 1,
       "state": "progressing", "reason": "1/2 replicas on template abc"}
POD = {"replica": 0, "pod": "web-0", "machine": "12D3KooWabcdefgh", "state": "running",
       "ready": True, "template": "abc", "age_s": 5}


def event(kind: str, text: str) -> dict[str, object]:
    return {"ts": 0.0, "kind": kind, "text": text, "workload": ROW["workload"], "task": "t",
            "machine": "m"}


def test_a_replica_that_does_not_run_says_why() -> None:
    events = [event("TaskSeen", "replica 1"),
              event("Note", "round 1: not bidding (image localhost/x:1 is not on this machine "
                    "(no registry serves localhost/))")]
    text = describe(ROW, [POD], events, ROW["workload"])
    assert "Replica 1:   not running: round 1: not bidding (image localhost/x:1" in text
    assert "Replica 0" not in text  # it runs
    assert "web-0" in text and "State:       progressing (1/2" in text


def test_why_not_prefers_the_newest_reason() -> None:
    assert why_not([event("Failed", "old"), event("Failed", "image pull failed")]) == \
        "image pull failed"
    assert "beemesh events" in why_not([event("TaskSeen", "replica 1")])


def test_a_waiting_replica_says_what_rules_the_machines_out() -> None:
    """A replica whose task is pending: the fleet's count by constraint, as `apply --wait`
    says it, before the events' reason."""
    events = [event("Note", "round 1: not bidding (arch x86_64 != aarch64)")]
    waiting = {1: "deployment/default/web[1]: no machine bid yet — of 2 other machine(s) in "
                  "view 0 fit; 2 arch x86_64 != aarch64"}
    text = describe(ROW, [POD], events, ROW["workload"], waiting)
    assert "Replica 1:   not running: deployment/default/web[1]: no machine bid yet — of 2 " \
        "other machine(s) in view 0 fit; 2 arch x86_64 != aarch64" in text
