"""Self-healing time and work-plane memory on a real 4-machine mesh (agent, work plane and
Podman per machine, each machine in its own network namespace), default TTLs throughout.

Healing: a 1-replica Deployment (busybox httpd with a readinessProbe) runs on one machine;
that machine dies (agent and work plane SIGKILLed, its pods removed). A round times death ->
a replacement runs on a survivor's Podman AND a survivor's `get endpoints` shows its service
record ready (a new workload Peer ID: the dead replica's record stays in view until its TTL
runs out), split at the earliest `HealAsked` event on any survivor. The dead machine then
comes back empty and the next round kills the machine running the replacement. Before every
kill each agent has been up longer than `heal_settle_s` (a restarted agent heals nothing for
20 s), so rounds measure the steady state, not the benchmark's own restarts.

Readiness is polled every 0.25 s through the agent API the CLI uses (`/v1/endpoints`), not by
running the CLI: its Python start-up (~0.3 s here) would otherwise set the resolution.

Memory: RSS of one machine's work plane with 0, 1, 4 and 8 single-replica Deployments pinned
to that machine (nodeSelector on the `machine` label each agent is started with), and every
machine's agent next to its work plane.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from beemesh.api.client import call
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for

# The self-healing tests' own helpers: a machine dies and pods are counted the same way there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from healing_lib import apply, kill_machine, manifest, real_pods, wait_settled
from scheduling_bench import percentile, ready

MACHINES = ("h1", "h2", "h3", "h4")
WORKLOAD = "deployment/default/solo"
POLL_S = 0.25
ROUND_TIMEOUT_S = 150
RSS_COUNTS = (0, 1, 4, 8)
RSS_SETTLE_S = 5
RSS_SAMPLES = 5


def start(mesh: LocalMesh, name: str, seed: str | None) -> AgentProc:
    bootstrap = [mesh.agents[seed].addr] if seed else None
    return mesh.start(name, podman=True, bootstrap=bootstrap, extra=["--labels",
                                                                      f"machine={name}"])


def wait_joined(mesh: LocalMesh, names: tuple[str, ...] = MACHINES) -> None:
    ids = {mesh.agents[n].peer_id for n in names}
    for n in names:
        wait_for(lambda n=n: ready(mesh.agents[n], ids), 90,
                 f"{n} to see every machine with a working runtime")


def wait_settled_in(mesh: LocalMesh, seconds: float) -> None:
    """Until every agent has been up `seconds` (so it may heal)."""
    for a in mesh.agents.values():  # every agent answered in wait_joined just before
        left = seconds - call(a.api, "GET", "/v1/status")["uptime_s"]
        if left > 0:
            time.sleep(left)


def ready_records(mesh: LocalMesh, via: str) -> list[dict[str, Any]]:
    try:
        rows = call(mesh.agents[via].api, "GET", f"/v1/endpoints?workload={WORKLOAD}",
                    timeout=10)
    except UserError:  # a busy agent answers late: the next poll asks again
        return []
    return [r for r in rows if r["ready"]]


def ready_elsewhere(mesh: LocalMesh, via: str, victim: str, old_peers: set[str]) -> bool:
    """A replacement's record is ready in `via`'s view and a survivor's Podman runs it."""
    fresh = {r["pod"] for r in ready_records(mesh, via) if r["peer_id"] not in old_peers}
    if not fresh:
        return False
    running = {p for m, p in real_pods(mesh, WORKLOAD, running_only=True) if m != victim}
    return bool(fresh & running)


def one_round(mesh: LocalMesh) -> dict[str, Any]:
    """Kill the machine running the replica, time its replacement, bring the machine back.
    A replacement that is not ready within ROUND_TIMEOUT_S is counted, not fatal."""
    ((victim, _pod),) = wait_settled(mesh, MACHINES[0], WORKLOAD, 1)
    survivors = [n for n in MACHINES if n != victim]
    via = survivors[0]
    old_peers = {r["peer_id"] for r in ready_records(mesh, via)}
    death = time.time()
    kill_machine(mesh, victim)
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    ready_at: float | None = None
    while time.monotonic() < deadline:
        polled = time.time()
        if ready_elsewhere(mesh, via, victim, old_peers):
            ready_at = polled
            break
        time.sleep(max(0.0, polled + POLL_S - time.time()))
    asks = [e for n in survivors for e in mesh.agents[n].get_json("events")
            if e["kind"] == "HealAsked" and e["workload"] == WORKLOAD and e["ts"] >= death]
    asked = min((e["ts"] for e in asks), default=None)
    start(mesh, victim, via)  # back, empty, as a replaced machine would be

    def span(t0: float | None, t1: float | None) -> float | None:
        return round(t1 - t0, 2) if t0 is not None and t1 is not None else None

    return {
        "victim": victim,
        "death_to_ready_s": span(death, ready_at),
        "death_to_heal_asked_s": span(death, asked),
        "heal_asked_to_ready_s": span(asked, ready_at),
        "machines_asking": len({e["machine"] for e in asks}),
        "heal_tasks": len({e["task"] for e in asks}),
    }


def heal_rounds(mesh: LocalMesh, tmp: Path, rounds: int) -> dict[str, Any]:
    apply(mesh, tmp, "h1", manifest("Deployment", "solo", 1, host_port=None))
    settle_s = AgentConfig().heal_settle_s + 2
    results = []
    for i in range(rounds):
        wait_joined(mesh)
        wait_settled_in(mesh, settle_s)
        r = one_round(mesh)
        print(f"[bench] healing round {i + 1}/{rounds}: {r}", flush=True)
        results.append(r)
    wait_joined(mesh)
    done = mesh.operator(mesh.agents["h1"].api, "delete", "deployment", "solo")
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    wait_for(lambda: not real_pods(mesh, WORKLOAD), 60, "solo gone")

    def stats(key: str) -> dict[str, float | None]:
        vals = [r[key] for r in results if r[key] is not None]
        if not vals:
            return {"p50": None, "p99": None}
        return {"p50": round(statistics.median(vals), 2), "p99": percentile(vals, 0.99),
                "min": min(vals), "max": max(vals)}

    return {
        "rounds": results,
        "not_ready_within_s": {"limit": ROUND_TIMEOUT_S, "rounds": sum(
            r["death_to_ready_s"] is None for r in results)},
        "death_to_ready_s": stats("death_to_ready_s"),
        "death_to_heal_asked_s": stats("death_to_heal_asked_s"),
        "heal_asked_to_ready_s": stats("heal_asked_to_ready_s"),
    }


def workplane_of(agent: AgentProc) -> psutil.Process:
    """The agent's child running `beemesh workplane`."""
    for child in psutil.Process(agent.proc.pid).children(recursive=True):
        if "workplane" in " ".join(child.cmdline()):
            return child
    raise RuntimeError(f"{agent.name} has no work plane process")


def rss_mb(mesh: LocalMesh, names: list[str]) -> dict[str, tuple[float, float]]:
    """Per machine, (agent, work plane) RSS in MB: medians of RSS_SAMPLES samples 1 s apart."""
    procs = {n: (psutil.Process(mesh.agents[n].proc.pid), workplane_of(mesh.agents[n]))
             for n in names}
    samples: dict[str, list[tuple[int, int]]] = {n: [] for n in names}
    for _ in range(RSS_SAMPLES):
        for n, (agent, plane) in procs.items():
            samples[n].append((agent.memory_info().rss, plane.memory_info().rss))
        time.sleep(1)
    return {n: (statistics.median(a for a, _ in got) / 2**20,
                statistics.median(w for _, w in got) / 2**20) for n, got in samples.items()}


def pinned(name: str, machine: str) -> str:
    doc = yaml.safe_load(manifest("Deployment", name, 1, host_port=None))
    doc["spec"]["template"]["spec"]["nodeSelector"] = {"machine": machine}
    return yaml.safe_dump(doc)


def memory(mesh: LocalMesh, tmp: Path, target: str) -> dict[str, Any]:
    per_machine = rss_mb(mesh, list(MACHINES))
    by_count: dict[int, tuple[float, float]] = {}
    applied = 0
    for count in RSS_COUNTS:
        if count > applied:
            docs = [pinned(f"rss-{i}", target) for i in range(applied, count)]
            apply(mesh, tmp, target, "---\n".join(docs))
            applied = count
        wait_for(lambda count=count: sum(
            r["ready"] for r in call(mesh.agents[target].api, "GET", "/v1/endpoints")
            if r["workload"].startswith("deployment/default/rss-")) == count, 90,
            f"{count} ready records on {target}", interval=1)
        time.sleep(RSS_SETTLE_S)
        by_count[count] = rss_mb(mesh, [target])[target]
        print(f"[bench] agent / work plane RSS on {target} with {count} replicas: "
              f"{by_count[count][0]:.1f} / {by_count[count][1]:.1f} MB", flush=True)
    xs, ys = list(by_count), [w for _, w in by_count.values()]
    slope = statistics.linear_regression(xs, ys).slope
    agents = [a for a, _ in per_machine.values()]
    planes = [w for _, w in per_machine.values()]
    return {
        "machine": target,
        "workplane_rss_mb_by_replicas": {str(k): round(w, 1) for k, (_, w) in by_count.items()},
        "agent_rss_mb_by_replicas": {str(k): round(a, 1) for k, (a, _) in by_count.items()},
        "workplane_rss_mb_per_extra_replica": round(slope, 2),
        "agent_rss_mb_per_machine_median": round(statistics.median(agents), 1),
        "workplane_rss_mb_per_machine_median": round(statistics.median(planes), 1),
        "per_machine_mb": {n: {"agent": round(a, 1), "workplane": round(w, 1)}
                           for n, (a, w) in per_machine.items()},
    }


def run(rounds: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-bench-heal-"))
    mesh = LocalMesh.create(root)
    try:
        start(mesh, MACHINES[0], None)
        for name in MACHINES[1:]:
            start(mesh, name, MACHINES[0])
        wait_joined(mesh)
        healing = heal_rounds(mesh, root, rounds)
        target = healing["rounds"][-1]["victim"] if rounds else MACHINES[-1]
        return {"healing": healing, "memory": memory(mesh, root, target)}
    finally:
        mesh.close()
