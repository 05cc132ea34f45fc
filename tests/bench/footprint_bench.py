"""Footprint of a machine: what the agent and its work plane cost, idle, with 4 peers.

MACHINES machines on loopback, each an agent with its work plane (no Podman: the footprint
of Beemesh alone). For each process, from `beemesh status` (beemesh/footprint.py): RSS, PSS,
USS, threads and open files, medians over machines; the machine cost, agent RSS + work plane
USS (the issue's figure: shared pages paid once) and the sum of both PSS (each page counted
once, split between its users); process start -> joined; idle CPU of both over the idle
window, as a share of one core. Where the memory goes: RSS of a fresh interpreter after each
import step (the code each process loads) against the running processes (the rest is
state, buffers and the allocator's slack). The work plane's cost per replica: one Podman
machine, its work plane's RSS with no replica, one, and REPLICAS of a Deployment.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beemesh.api.client import call
from beemesh.errors import UserError
from beemesh.lab import localmesh
from beemesh.lab.localmesh import LocalMesh, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from healing_lib import apply, manifest, real_pods, start_machines

MACHINES = 5
SETTLE_S = 5.0
REJOINS = 3  # warm restarts of one machine, timed from process start to joined
REPLICAS = 6  # replicas on one machine for the work plane's per-replica cost
IMPORT_STEPS = {
    "python": "pass",
    "+ trio, cbor2, nacl, psutil": "import trio, cbor2, nacl.signing, psutil",
    "+ the libp2p parts Beemesh runs": "import beemesh.mesh.host",
    "agent: beemesh.machine.agent": "import beemesh.machine.agent",
    "work plane: beemesh.workplane.process": "import beemesh.workplane.process",
}


def rss_of_import(command: list[str], code: str) -> float:
    """MB resident after `code` in a fresh interpreter of `command`."""
    out = subprocess.run(
        [*command, "-c", f"{code}\nimport psutil; print(psutil.Process().memory_info().rss)"],
        capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 2**20


def run(idle_s: float, beemesh: list[str] | None = None,
        python: list[str] | None = None) -> dict[str, Any]:
    """`beemesh`: the command that runs Beemesh (default: this venv's); `python`: an
    interpreter that imports the same code (for the import steps)."""
    python = python or [sys.executable]
    imports = {name: round(rss_of_import(python, code), 1) for name, code in IMPORT_STEPS.items()}
    saved = list(localmesh.BEEMESH)
    if beemesh:
        localmesh.BEEMESH[:] = beemesh
    root = Path(tempfile.mkdtemp(prefix="beemesh-footprint-"))
    mesh = LocalMesh.create(root)
    try:
        starts = {"m1": time.monotonic()}
        seed = mesh.start("m1", workplane=True)
        for i in range(2, MACHINES + 1):
            starts[f"m{i}"] = time.monotonic()
            mesh.start(f"m{i}", bootstrap=[seed.addr], workplane=True, wait=False)
        joined: dict[str, float] = {}
        in_process: dict[str, float] = {}

        def all_joined() -> bool:
            for name, a in mesh.agents.items():
                if name in joined or not a.api.exists():
                    continue
                st = a.status()
                if st["joined"] and st["known_machines"] == MACHINES:
                    joined[name] = time.monotonic() - starts[name]
                    in_process[name] = st["joined_after_s"]
            return len(joined) == MACHINES

        wait_for(all_joined, 90, "every agent to join", interval=0.1)
        wait_for(lambda: all(a.status()["footprint"]["workplane"] for a in mesh.agents.values()),
                 60, "every work plane to run")
        time.sleep(SETTLE_S)
        before = {n: (time.monotonic(), a.status()["footprint"]) for n, a in mesh.agents.items()}
        time.sleep(idle_s)
        after = {n: (time.monotonic(), a.status()["footprint"]) for n, a in mesh.agents.items()}
        rejoin = [warm_rejoin(mesh, f"m{MACHINES}", seed.addr) for _ in range(REJOINS)]
    finally:
        mesh.close()
        localmesh.BEEMESH[:] = saved
    result = summarize(imports, joined, in_process, before, after)
    result["warm_start_to_joined_s_median"] = round(statistics.median(rejoin), 2)
    return result


def replica_cost() -> dict[str, Any]:
    """Work plane RSS (median of 3 reads, SETTLE_S after the change) with 0, 1 and REPLICAS
    replicas of a Deployment on one Podman machine; the cost of each past the first."""
    root = Path(tempfile.mkdtemp(prefix="beemesh-replicas-"))
    mesh = start_machines(root, ("r1",))
    agent = mesh.agents["r1"]

    def rss_with(replicas: int) -> float:
        wait_for(lambda: len(real_pods(mesh, "deployment/default/cost", running_only=True))
                 == replicas, 120, f"{replicas} replicas running")
        time.sleep(SETTLE_S)
        reads = []
        for _ in range(3):
            reads.append(agent.status()["footprint"]["workplane"]["rss_bytes"] / 2**20)
            time.sleep(1)
        return round(statistics.median(reads), 1)

    try:
        rss = {0: rss_with(0)}
        apply(mesh, root, "r1", manifest("Deployment", "cost", 1, host_port=None,
                                         readiness=False))
        rss[1] = rss_with(1)
        done = mesh.operator(agent.api, "scale", "deployment/cost", "--replicas", str(REPLICAS))
        assert done.returncode == 0, done.stderr
        rss[REPLICAS] = rss_with(REPLICAS)
    finally:
        mesh.close()
    return {"workplane_rss_mb_by_replicas": rss,
            "workplane_rss_mb_per_extra_replica": round((rss[REPLICAS] - rss[1])
                                                        / (REPLICAS - 1), 2)}


def replica_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    by = r["workplane_rss_mb_by_replicas"]
    return [(f"work plane RSS with 0 / 1 / {REPLICAS} replicas (one Podman machine)",
             " / ".join(f"{by[k]:.1f}" for k in sorted(by)) + " MB"),
            ("work plane RSS per replica past the first",
             f"{r['workplane_rss_mb_per_extra_replica']:.2f} MB")]


def warm_rejoin(mesh: LocalMesh, name: str, seed: str) -> float:
    """Stop `name`, start it again (its files and bytecode are there: a warm start) and time
    process start -> its status says joined, polling the API directly every 20 ms."""
    mesh.stop(name)
    agent = mesh.start(name, bootstrap=[seed], workplane=True, wait=False)
    started = time.monotonic()
    deadline = started + 60
    while time.monotonic() < deadline:
        if agent.api.exists():
            try:
                if call(agent.api, "GET", "/v1/status", timeout=5)["joined"]:
                    return time.monotonic() - started
            except UserError:
                pass  # the socket exists before the server answers
        time.sleep(0.02)
    raise TimeoutError(f"{name} did not join within 60 s")


def summarize(imports: dict[str, float], joined: dict[str, float], in_process: dict[str, float],
              before: dict[str, tuple[float, dict[str, Any]]],
              after: dict[str, tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    per: dict[str, dict[str, float]] = {}
    for process in ("agent", "workplane"):
        rows = [after[n][1][process] for n in after]
        cpu = [(after[n][1][process]["cpu_seconds"] - before[n][1][process]["cpu_seconds"])
               / (after[n][0] - before[n][0]) for n in after]
        per[process] = {
            "rss_mb": round(statistics.median(r["rss_bytes"] for r in rows) / 2**20, 1),
            "pss_mb": round(statistics.median(r["pss_bytes"] for r in rows) / 2**20, 1),
            "uss_mb": round(statistics.median(r["uss_bytes"] for r in rows) / 2**20, 1),
            "threads": statistics.median(r["threads"] for r in rows),
            "open_files": statistics.median(r["open_files"] for r in rows),
            "idle_cpu_percent_of_a_core": round(100 * statistics.median(cpu), 2),
        }
    costs = [after[n][1]["agent"]["rss_bytes"] + after[n][1]["workplane"]["uss_bytes"]
             for n in after]
    pss = [after[n][1]["agent"]["pss_bytes"] + after[n][1]["workplane"]["pss_bytes"]
           for n in after]
    return {
        "machines": MACHINES,
        "rss_mb_by_import": imports,
        "agent": per["agent"],
        "workplane": per["workplane"],
        "machine_cost_mb": round(statistics.median(costs) / 2**20, 1),
        "machine_pss_mb": round(statistics.median(pss) / 2**20, 1),
        "start_to_joined_s_median": round(statistics.median(joined.values()), 2),
        "start_to_joined_s_max": round(max(joined.values()), 2),
        # From the agent's start (imports done) to its first record of another machine.
        "in_process_join_s_median": round(statistics.median(
            v for k, v in in_process.items() if k != "m1"), 2),
        "idle_window_s": round(statistics.median(after[n][0] - before[n][0] for n in after), 1),
    }


def rows(r: dict[str, Any], label: str) -> list[tuple[str, str]]:
    a, w = r["agent"], r["workplane"]
    out = [(f"[{label}] RSS after import: {k}", f"{v:.1f} MB")
           for k, v in r["rss_mb_by_import"].items()]
    out += [
        (f"[{label}] agent RSS / PSS / USS, idle, {r['machines'] - 1} peers (median)",
         f"{a['rss_mb']:.1f} / {a['pss_mb']:.1f} / {a['uss_mb']:.1f} MB"),
        (f"[{label}] work plane RSS / PSS / USS, 0 replicas (median)",
         f"{w['rss_mb']:.1f} / {w['pss_mb']:.1f} / {w['uss_mb']:.1f} MB"),
        (f"[{label}] machine cost: agent RSS + work plane USS",
         f"{r['machine_cost_mb']:.1f} MB"),
        (f"[{label}] machine memory: PSS of both summed (each page counted once)",
         f"{r['machine_pss_mb']:.1f} MB"),
        (f"[{label}] {r['machines']} started at once: process start -> all listed (median / max)",
         f"{r['start_to_joined_s_median']:.2f} / {r['start_to_joined_s_max']:.2f} s"),
        (f"[{label}] agent start (imports done) -> first record of a peer (median)",
         f"{r['in_process_join_s_median']:.2f} s"),
        (f"[{label}] one machine restarted, process start -> joined (median of {REJOINS})",
         f"{r['warm_start_to_joined_s_median']:.2f} s"),
        (f"[{label}] idle CPU, agent / work plane ({r['idle_window_s']:.0f} s window)",
         f"{a['idle_cpu_percent_of_a_core']:.2f} / {w['idle_cpu_percent_of_a_core']:.2f} "
         "% of a core"),
        (f"[{label}] threads / open files: agent, work plane",
         f"{a['threads']:.0f} / {a['open_files']:.0f}, {w['threads']:.0f} / "
         f"{w['open_files']:.0f}"),
    ]
    return out
