"""Scheduling on a real 5-machine mesh (one Podman per machine): latency, bids, messages.

Single-replica Pods are applied at a steady rate through one agent; every machine's event
log gives, per task, when the origin saw it, when the winner decided, and when the origin
learned it was Deployed (one host, so one clock). Also measured: CPU per kind of process
(agents, work planes, Podmans, containers) from the first apply until every pod runs, how
many machines each agent knew meanwhile, and what every Podman really runs at the end.

Sized for one 2-core host: `make bench` applies 20 Pods at 1/s (the issue's 100 is
`run.py --tasks 100`). Five machines with their agents, work planes and Podmans keep both
cores busy during the burst, so gossip queues and machine records arrive seconds late (the
"heard late" row). Before agents measured that lateness (membership.lateness), records
lapsed, every agent took live machines for dead and healed everything, and 20 Pods ended as
60-80 running copies; now heals pause and auction windows stretch while records are late: no
heals, a few duplicates dropped, at the cost of seconds of latency per Pod (the window waits out the
lateness). Polling goes through the agent API, not CLI processes, which would eat a
noticeable share of the host.
"""

from __future__ import annotations

import base64
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import proc_cpu

from beemesh import wire
from beemesh.api.client import call
from beemesh.errors import UserError
from beemesh.fleet import Fleet
from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for
from beemesh.manifest import parse_manifests
from beemesh.workloads.messages import WORKLOAD

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


def ready(agent: AgentProc, ids: set[str]) -> bool:
    """The agent sees every machine and its runtime works. Polled through the API, not the
    CLI: a CLI process every second costs a noticeable part of a 2-core host. A restarted
    agent may not answer yet on its socket (the killed one left the file behind)."""
    try:
        nodes = call(agent.api, "GET", "/v1/nodes")
        return {n["peer_id"] for n in nodes} == ids and \
            call(agent.api, "GET", "/v1/status")["runtime"] == "ok"
    except UserError:
        return False


def pods(agent: AgentProc) -> list[dict[str, Any]]:
    return call(agent.api, "GET", "/v1/pods")


def running(mesh: LocalMesh) -> list[str]:
    """Workload of every pod every machine runs, each as its agent reads its own Podman (one
    machine's view of the others is only as fresh as their records)."""
    return [p["workload"] for a in mesh.agents.values() for p in pods(a)
            if p["machine"] == a.peer_id]


class KnownMachines(threading.Thread):
    """Samples how many machines each agent knows (live records) and how late it hears machine
    records every 2 s: a mesh that loses sight of itself schedules and heals as if
    partitioned, unless it can tell that its records come late (heals pause then)."""

    def __init__(self, mesh: LocalMesh) -> None:
        super().__init__(daemon=True)
        self.agents = list(mesh.agents.values())
        self.samples: list[int] = []
        self.late: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(2):
            for a in self.agents:
                with contextlib.suppress(UserError):
                    status = call(a.api, "GET", "/v1/status", timeout=5)
                    self.samples.append(status["known_machines"])
                    self.late.append(status["lateness_s"])

    def stop(self) -> dict[str, Any]:
        self.done.set()
        self.join(10)
        whole = sum(1 for k in self.samples if k == len(self.agents))
        return {"min": min(self.samples, default=None),
                "share_of_samples_seeing_all": round(whole / max(1, len(self.samples)), 2),
                "records_late_s_median": statistics.median(self.late) if self.late else None,
                "records_late_s_max": max(self.late, default=None)}


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
            wait_for(lambda a=a: ready(a, ids), 60, f"{a.name} ready")
        before = {n: a.metrics() for n, a in mesh.agents.items()}
        key = Fleet.load(mesh.fleet).operator_key()
        cpu0 = proc_cpu.snapshot(root)
        known = KnownMachines(mesh)
        known.start()
        t0 = time.monotonic()
        for i in range(tasks):
            spec = parse_manifests(POD.format(i=i))[0]
            blob = wire.seal(key, WORKLOAD.name, {"spec": spec.to_dict()}, time.time())
            call(seed.api, "POST", "/v1/apply", {"workloads": [base64.b64encode(blob).decode()]})
            time.sleep(max(0.0, t0 + (i + 1) / rate_per_s - time.monotonic()))
        applied = time.monotonic()
        wait_for(lambda: len(set(running(mesh))) >= tasks, 300, f"{tasks} pods deployed",
                 interval=1)
        settle = time.monotonic()
        cpu = proc_cpu.used(cpu0, proc_cpu.snapshot(root))
        seen_by_agents = known.stop()
        # Duplicates drain in the background: a copy goes once the better one has been ready
        # 5 s, and its stop waits out the 10 s grace period; 30 s covers a healthy mesh.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: len(running(mesh)) == tasks, 30, "duplicates to drain", interval=1)
        result = collect(mesh, before, tasks, machines)
        result["duplicates_drained_within_s"] = round(time.monotonic() - settle, 1)
        result["apply_s"] = round(applied - t0, 1)
        result["last_apply_to_all_deployed_s"] = round(settle - applied, 1)
        result["cpu_apply_to_all_deployed"] = cpu
        result["machines_known_per_agent"] = seen_by_agents
        return result
    finally:
        mesh.close()


def collect(mesh: LocalMesh, before: dict[str, Any], tasks: int, machines: int) -> dict[str, Any]:
    seed = mesh.agents["s1"]
    events = {n: a.get_json("events") for n, a in mesh.agents.items()}
    seen: dict[str, float] = {}
    deployed: dict[str, float] = {}
    won: dict[str, float] = {}
    first_task: dict[str, str] = {}  # workload -> the task its apply published
    for e in events["s1"]:
        if e["kind"] == "TaskSeen":
            seen.setdefault(e["task"], e["ts"])
            first_task.setdefault(e["workload"], e["task"])
        elif e["kind"] == "Deployed" and "running on" in e["text"]:
            deployed.setdefault(e["task"], e["ts"])
    extra_tasks = len(seen) - len(first_task)
    seen = {t: seen[t] for t in first_task.values()}  # heals and replacements excluded
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
    drained = sum(1 for evs in events.values() for e in evs if e["kind"] == "DuplicateDropped")
    per_machine = {n: pods_on(service) for n, service in mesh.podmans.items()}
    return {
        "machines": machines,
        "tasks": tasks,
        "deployed": len(latencies),
        "heal_or_replacement_tasks": extra_tasks,
        "publish_to_deployed_s_p50": statistics.median(latencies),
        "publish_to_deployed_s_p99": percentile(latencies, 0.99),
        "publish_to_decision_s_p50": statistics.median(decide) if decide else None,
        "publish_to_decision_s_p99": percentile(decide, 0.99) if decide else None,
        "bids_per_task": delta("bids", "sent") / tasks,
        "bids_withheld_per_task": delta("bids", "withheld") / tasks,
        "scheduling_messages_per_task_seen_by_one_agent": msgs / tasks,
        "duplicates_drained": drained,
        "duplicates_running_at_end": max(0, sum(per_machine.values()) - tasks),
        "machines_used": sum(1 for c in per_machine.values() if c),
        "pods_per_machine": per_machine,
        "messages_dropped_as_stale": delta("messages_dropped", "stale"),
    }


def pods_on(service: Any) -> int:
    """Beemesh pods this machine's Podman runs (the truth, not an agent's view)."""
    res = service.run("pod", "ps", "-q", "--filter", "label=beemesh.workload",
                      "--filter", "status=running")
    return len(res.stdout.split())
