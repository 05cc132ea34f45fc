"""Scheduling on a real 5-machine mesh (one Podman per machine): latency, bids, messages.

100 single-replica Pods are applied at a steady rate through one agent; every machine's
event log gives, per task, when the origin saw it, when the winner decided, and when the
origin learned it was Deployed (one host, so one clock).
"""

from __future__ import annotations

import base64
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from beemesh import wire
from beemesh.api.client import call
from beemesh.fleet import Fleet
from beemesh.localmesh import LocalMesh, wait_for
from beemesh.manifest import parse_manifests
from beemesh.scheduler.messages import WORKLOAD

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: bench-{i}}}
spec:
  containers:
  - name: main
    image: localhost/beemesh/busybox:latest
    command: ["sleep", "3600"]
    resources: {{requests: {{cpu: 10m, memory: 8Mi}}}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(machines: int, tasks: int, rate_per_s: float, suppression: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-bench-sched-"))
    mesh = LocalMesh.create(root)
    conf = root / "agent.toml"
    conf.write_text(f"bid_suppression = {'true' if suppression else 'false'}\n")
    try:
        seed = mesh.start("s1", podman=True, extra=["--config", str(conf)])
        for i in range(2, machines + 1):
            mesh.start(f"s{i}", podman=True, bootstrap=[seed.addr], extra=["--config", str(conf)])
        ids = {a.peer_id for a in mesh.agents.values()}
        for a in mesh.agents.values():
            wait_for(lambda a=a: a.node_ids() == ids and a.status()["runtime"] == "ok", 60,
                     f"{a.name} ready")
        before = {n: a.metrics() for n, a in mesh.agents.items()}
        key = Fleet.load(mesh.fleet).operator_key()
        t0 = time.monotonic()
        for i in range(tasks):
            spec = parse_manifests(POD.format(i=i))[0]
            blob = wire.seal(key, WORKLOAD.name, {"spec": spec.to_dict()}, time.time())
            call(seed.api, "POST", "/v1/apply", {"workloads": [base64.b64encode(blob).decode()]})
            time.sleep(max(0.0, t0 + (i + 1) / rate_per_s - time.monotonic()))
        wait_for(lambda: len({p["workload"] for p in seed.get_json("get", "pods")}) >= tasks,
                 300, f"{tasks} pods deployed", interval=1)
        settle = time.monotonic()
        # Duplicates drain in the background (a stop waits out the 10 s grace period).
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: len(seed.get_json("get", "pods")) == tasks, 60,
                     "duplicates to drain", interval=1)
        result = collect(mesh, before, tasks, machines)
        result["duplicates_drained_within_s"] = round(time.monotonic() - settle, 1)
        return result
    finally:
        mesh.close()


def collect(mesh: LocalMesh, before: dict[str, Any], tasks: int, machines: int) -> dict[str, Any]:
    seed = mesh.agents["s1"]
    events = {n: a.get_json("events") for n, a in mesh.agents.items()}
    seen: dict[str, float] = {}
    deployed: dict[str, float] = {}
    won: dict[str, float] = {}
    for e in events["s1"]:
        if e["kind"] == "TaskSeen":
            seen.setdefault(e["task"], e["ts"])
        elif e["kind"] == "Deployed" and "running on" in e["text"]:
            deployed.setdefault(e["task"], e["ts"])
    for evs in events.values():
        for e in evs:
            if e["kind"] == "Note" and "won with score" in e["text"]:
                won[e["task"]] = min(won.get(e["task"], e["ts"]), e["ts"])
    latencies = [deployed[t] - seen[t] for t in seen if t in deployed]
    decide = [won[t] - seen[t] for t in seen if t in won]

    def delta(metric: str, label: str) -> int:
        total = 0
        for n, a in mesh.agents.items():
            now = a.metrics().get(metric, {})
            then = before[n].get(metric, {})
            total += now.get(label, 0) - then.get(label, 0)
        return total

    received = seed.metrics()["messages_accepted"]
    msgs = sum(v for k, v in received.items() if k != "MachineRecord") - sum(
        v for k, v in before["s1"].get("messages_accepted", {}).items() if k != "MachineRecord")
    drained = sum(1 for evs in events.values() for e in evs if e["kind"] == "Drained")
    pods = seed.get_json("get", "pods")
    per_replica: dict[str, int] = {}
    for p in pods:
        per_replica[p["workload"]] = per_replica.get(p["workload"], 0) + 1
    machines_used = {p["machine"] for p in pods}
    return {
        "machines": machines,
        "tasks": tasks,
        "deployed": len(latencies),
        "publish_to_deployed_s_p50": statistics.median(latencies),
        "publish_to_deployed_s_p99": percentile(latencies, 0.99),
        "publish_to_decision_s_p50": statistics.median(decide) if decide else None,
        "publish_to_decision_s_p99": percentile(decide, 0.99) if decide else None,
        "bids_per_task": delta("bids", "sent") / tasks,
        "bids_withheld_per_task": delta("bids", "withheld") / tasks,
        "scheduling_messages_per_task_seen_by_one_agent": msgs / tasks,
        "duplicates_drained": drained,
        "duplicates_running_at_end": sum(c - 1 for c in per_replica.values() if c > 1),
        "machines_used": len(machines_used),
    }
