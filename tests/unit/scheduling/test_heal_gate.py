"""The machine plane's checks on a heal its work plane asks for (scheduling.heal_gate)."""

from __future__ import annotations

from typing import Any

import pytest

from beemesh.manifest import parse_manifests
from beemesh.scheduling.heal_gate import HealFacts, refusal
from beemesh.workloads.store import StoredWorkload

T0 = 1_700_000_000.0


def stored(kind: str = "Deployment", replicas: int = 3) -> StoredWorkload:
    extra = "  serviceName: db\n" if kind == "StatefulSet" else ""
    text = f"""
apiVersion: apps/v1
kind: {kind}
metadata: {{name: app}}
spec:
  replicas: {replicas}
{extra}  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers:
        - name: main
          image: localhost/beemesh/busybox:latest
"""
    (spec,) = parse_manifests(text, "test.yaml")
    assert spec.kind == kind
    return StoredWorkload(spec, b"signed bytes", T0)


def check(**over: Any) -> str | None:
    """`has_majority`: a majority has been in sight for longer than needed (or not at all)."""
    args: dict[str, Any] = {"uptime_s": 60.0, "settle_s": 20.0, "lateness_s": 0.4,
                            "lateness_limit_s": 3.0, "stored": stored(),
                            "deleted": False, "ordinal": 1, "running_on": (), "placing": None,
                            "deployed_ago": None, "majority_for": 30.0,
                            "majority_needed_s": 10.0}
    if "has_majority" in over:
        args["majority_for"] = 30.0 if over.pop("has_majority") else 0.0
    args.update(over)
    args["running_on"] = tuple(args["running_on"])
    return refusal(HealFacts(**args))


def test_all_well() -> None:
    assert check() is None
    assert check(stored=stored("StatefulSet")) is None
    assert check(ordinal=0) is None
    assert check(ordinal=2) is None
    assert check(uptime_s=20.0) is None  # exactly settled
    assert check(lateness_s=3.0) is None  # exactly at the limit


def test_just_deployed_elsewhere() -> None:
    """The replacement's record is on its way: a second heal would only make a duplicate."""
    reason = check(deployed_ago=("t-new", 4.2))
    assert reason is not None
    assert "t-new" in reason and "deployed 4 s ago" in reason
    assert check(deployed_ago=("t-old", 15.0)) is None  # a record TTL later: really gone


def test_hearing_the_mesh_late() -> None:
    """A backlog lets live machines' records lapse: no heals until records arrive on time."""
    reason = check(lateness_s=12.3)
    assert reason is not None
    assert "12 s late" in reason and "under 3 s" in reason


def test_agent_just_started() -> None:
    reason = check(uptime_s=5.0)
    assert reason is not None
    assert "started 5 s ago" in reason and "20 s" in reason


def test_no_signed_manifest() -> None:
    reason = check(stored=None)
    assert reason is not None and "no signed manifest" in reason


def test_deleted() -> None:
    reason = check(deleted=True)
    assert reason is not None and "deleted" in reason


@pytest.mark.parametrize("ordinal", [3, 4, 100])
def test_ordinal_beyond_replicas(ordinal: int) -> None:
    reason = check(ordinal=ordinal)
    assert reason is not None
    assert f"replica {ordinal}" in reason and "replicas=3" in reason


def test_still_running_elsewhere() -> None:
    reason = check(running_on=["machine-b", "machine-a"])
    assert reason is not None
    assert "still runs on machine-a, machine-b" in reason


def test_being_placed() -> None:
    reason = check(placing="tabc")
    assert reason is not None and "tabc" in reason and "placed" in reason


def test_statefulset_without_majority_refused() -> None:
    reason = check(stored=stored("StatefulSet"), has_majority=False)
    assert reason is not None and "majority" in reason


def test_deployment_without_majority_allowed() -> None:
    assert check(stored=stored("Deployment"), has_majority=False) is None


def test_pod_without_majority_allowed() -> None:
    (spec,) = parse_manifests("""
apiVersion: v1
kind: Pod
metadata: {name: one}
spec:
  containers: [{name: c, image: busybox}]
""")
    assert check(stored=StoredWorkload(spec, b"", T0), ordinal=0, has_majority=False) is None


def test_first_reason_wins() -> None:
    """Reasons are checked in order: the earliest says what to fix first."""
    everything = {"uptime_s": 1.0, "stored": stored("StatefulSet"), "deleted": True,
                  "ordinal": 9, "running_on": ["m"], "placing": "t", "has_majority": False}
    assert "started" in (check(**everything) or "")
    assert "deleted" in (check(**{**everything, "uptime_s": 60.0}) or "")
    assert "beyond" in (check(**{**everything, "uptime_s": 60.0, "deleted": False}) or "")


def test_negative_ordinal_refused() -> None:
    reason = check(ordinal=-1)
    assert reason is not None and "replica -1" in reason


def test_statefulset_needs_a_majority_in_sight_long_enough() -> None:
    """A majority that has just come back may not have heard every record yet."""
    sts = stored("StatefulSet")
    assert "majority" in (check(stored=sts, majority_for=9.9) or "")
    assert check(stored=sts, majority_for=10.0) is None
