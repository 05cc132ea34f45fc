"""`make bench`: measure the agent on real processes; print a table and write JSON.

Groups (`--only` runs one): `agent` (import cost, join time, idle cost on loopback),
`scheduling` (scheduling_bench.py), `healing` (healing_bench.py: machine death to ready
replacement, work-plane memory), `rollout` (rollout_bench.py: a 3-replica rolling
update), `streams` (streams_bench.py: a workload stream against direct TCP between two
machines' namespaces), `etcd` (etcd_bench.py: a 3-member etcd StatefulSet, its formation,
a member's recovery and its write latency against the same containers on one Podman
network). The whole run is sized to finish in ~20 minutes on a 2-core host (see
scheduling_bench.py for why 20 pods, not 100).

Machines here are noisy, so every timing is a median (and p99) over repeats (or over agents)
and the memory figures are broken down by what is imported, to show where the memory goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beemesh.lab.localmesh import LocalMesh, wait_for

IMPORT_STEPS = {
    "python": "pass",
    "+ trio, cbor2, nacl, psutil": "import trio, cbor2, nacl.signing, psutil",
    "+ libp2p": "import trio, cbor2, nacl.signing, psutil, libp2p",
    "+ beemesh.machine.agent": "import beemesh.machine.agent",
}


def rss_of_import(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport psutil; print(psutil.Process().memory_info().rss)"],
        capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def bench_agents(n: int, idle_s: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-bench-"))
    mesh = LocalMesh.create(root)
    try:
        t0 = time.monotonic()
        seed = mesh.start("m1")
        starts = {"m1": t0}
        for i in range(2, n + 1):
            starts[f"m{i}"] = time.monotonic()
            mesh.start(f"m{i}", bootstrap=[seed.addr], wait=False)
        joined: dict[str, float] = {}
        in_process: dict[str, float] = {}
        expected = n

        def all_joined() -> bool:
            for name, a in mesh.agents.items():
                if name in joined or not a.api.exists():
                    continue
                st = a.status()
                if st["joined"] and st["known_machines"] == expected:
                    joined[name] = time.monotonic() - starts[name]
                    in_process[name] = st["joined_after_s"]
            return len(joined) == n

        wait_for(all_joined, 60, "every agent to join", interval=0.1)
        probe = mesh.agents["m2"]
        time.sleep(5)  # let start-up work settle before measuring idle cost
        s0 = probe.status()
        time.sleep(idle_s)
        s1 = probe.status()
        cpu_per_min = (s1["cpu_seconds"] - s0["cpu_seconds"]) * 60 / (s1["uptime_s"] -
                                                                      s0["uptime_s"])
        rss = [a.status()["rss_bytes"] for a in mesh.agents.values()]
        return {
            "agents": n,
            "start_to_joined_s_median": statistics.median(joined.values()),
            "start_to_joined_s_max": max(joined.values()),
            "in_process_join_s_median": statistics.median(in_process.values()),
            "idle_rss_mb_with_peers_median": statistics.median(rss) / 2**20,
            "idle_cpu_s_per_min": cpu_per_min,
            "idle_window_s": idle_s,
        }
    finally:
        mesh.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench-results.json"))
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--tasks", type=int, default=20, help="pods the scheduling group applies")
    ap.add_argument("--rate", type=float, default=1.0, help="tasks applied per second")
    ap.add_argument("--heal-rounds", type=int, default=8,
                    help="machine deaths timed by the healing group")
    ap.add_argument("--roll-rounds", type=int, default=3,
                    help="rolling updates timed by the rollout group")
    ap.add_argument("--only", choices=["agent", "scheduling", "healing", "rollout", "streams",
                                       "etcd"],
                    help="run one group only")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "arch": platform.machine(),
                    "cpus": os.cpu_count()}}
    rows: list[tuple[str, str]] = []
    if args.only in (None, "agent"):
        rows += bench_agent_group(args, results)
    if args.only in (None, "scheduling"):
        rows += bench_scheduling_group(args, results)
    if args.only in (None, "healing"):
        rows += bench_healing_group(args, results)
    if args.only in (None, "rollout"):
        rows += bench_rollout_group(args, results)
    if args.only in (None, "streams"):
        rows += bench_streams_group(results)
    if args.only in (None, "etcd"):
        rows += bench_etcd_group(results)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric'.ljust(width)}  value\n{'-' * width}  -----")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


Rows = list[tuple[str, str]]


def bench_scheduling_group(args: argparse.Namespace, results: dict[str, Any]) -> Rows:
    from scheduling_bench import run as run_scheduling

    rows: list[tuple[str, str]] = []
    for suppression in (True, False):
        label = "with" if suppression else "without"
        print(f"[bench] scheduling: {args.agents} machines, {args.tasks} tasks at "
              f"{args.rate:g}/s, bid suppression {label} ...", flush=True)
        r = run_scheduling(args.agents, args.tasks, args.rate, suppression)
        results[f"scheduling_{label}_suppression"] = r
        cpu, cores = r["cpu_apply_to_all_deployed"], os.cpu_count() or 1
        known, n = r["machines_known_per_agent"], args.agents
        rows += [
            (f"[{label} suppression] publish -> Deployed p50 / p99",
             f"{r['publish_to_deployed_s_p50']:.2f} / {r['publish_to_deployed_s_p99']:.2f} s"),
            (f"[{label} suppression] publish -> winner decided p50 / p99",
             f"{r['publish_to_decision_s_p50']:.2f} / {r['publish_to_decision_s_p99']:.2f} s"),
            (f"[{label} suppression] bids sent / withheld per task",
             f"{r['bids_per_task']:.2f} / {r['bids_withheld_per_task']:.2f}"),
            (f"[{label} suppression] scheduling messages per task (one agent)",
             f"{r['scheduling_messages_per_task_seen_by_one_agent']:.1f}"),
            (f"[{label} suppression] duplicates deployed+drained / left / machines used",
             f"{r['duplicates_drained']} / {r['duplicates_running_at_end']} / "
             f"{r['machines_used']}"),
            (f"[{label} suppression] heal/replacement tasks (no machine failed)",
             str(r["heal_or_replacement_tasks"])),
            (f"[{label} suppression] machines an agent knew: min / share of samples all {n}",
             f"{known['min']} / {known['share_of_samples_seeing_all']:.0%}"),
            (f"[{label} suppression] machine records heard late: median / max",
             f"{known['records_late_s_median']:.1f} / {known['records_late_s_max']:.1f} s"),
            (f"[{label} suppression] messages dropped as stale (> 30 s late), all agents",
             str(r["messages_dropped_as_stale"])),
            (f"[{label} suppression] CPU-s agents / work planes / Podman+containers",
             f"{cpu['agent']:.0f} / {cpu['workplane']:.0f} / "
             f"{cpu['podman service'] + cpu['conmon'] + cpu['container'] + cpu['other']:.0f} "
             f"in {cpu['wall_s']:.0f} s"),
            (f"[{label} suppression] cores used: this mesh / whole host (others' tests too)",
             f"{cpu['mesh_share_of_host'] * cores:.2f} / {cpu['host_busy_share'] * cores:.2f}"
             f" of {cores}"),
        ]
    rows.append(("Kubernetes pod-startup SLO (p99, image pull excluded)", "<= 5 s"))
    return rows


def bench_healing_group(args: argparse.Namespace, results: dict[str, Any]) -> Rows:
    from healing_bench import MACHINES, RSS_COUNTS
    from healing_bench import run as run_healing

    print(f"[bench] healing: {len(MACHINES)} machines, {args.heal_rounds} machine deaths; "
          f"work plane RSS with {', '.join(map(str, RSS_COUNTS))} replicas ...", flush=True)
    r = run_healing(args.heal_rounds)
    results["healing"] = r["healing"]
    results["workplane_memory"] = mem = r["memory"]
    h = r["healing"]
    ready, asked, after = (h["death_to_ready_s"], h["death_to_heal_asked_s"],
                           h["heal_asked_to_ready_s"])
    by_count = mem["workplane_rss_mb_by_replicas"]
    missed = h["not_ready_within_s"]
    most = str(max(RSS_COUNTS))

    def p50_p99(s: dict[str, float | None]) -> str:
        return "-" if s["p50"] is None else f"{s['p50']:.1f} / {s['p99']:.1f} s"

    def times(reference_s: float) -> str:
        return "" if not ready["p50"] else f" ({reference_s / ready['p50']:.1f}x beemesh p50)"

    rows = [
        (f"machine death -> replacement ready p50 / p99 ({args.heal_rounds} deaths, "
         f"{missed['rounds']} not ready within {missed['limit']} s)", p50_p99(ready)),
        ("  death -> heal asked p50 / p99", p50_p99(asked)),
        ("  heal asked -> replacement ready p50 / p99", p50_p99(after)),
        ("  reference, not measured: Kubernetes defaults (40 s node grace + 300 s eviction)",
         f">= 340 s{times(340)}"),
        ("  reference, not measured: Nomad defaults (10 s heartbeat TTL + 10 s grace)",
         f">= 20 s{times(20)}"),
        ("work plane RSS with " + " / ".join(by_count) + " replicas",
         " / ".join(f"{v:.1f}" for v in by_count.values()) + " MB"),
        ("work plane RSS per extra replica (least-squares slope)",
         f"{mem['workplane_rss_mb_per_extra_replica'] * 1024:.0f} KB"),
        ("per machine, no replicas: agent / work plane RSS (median of 4)",
         f"{mem['agent_rss_mb_per_machine_median']:.1f} / "
         f"{mem['workplane_rss_mb_per_machine_median']:.1f} MB"),
        (f"machine with {most} replicas: agent / work plane RSS",
         f"{mem['agent_rss_mb_by_replicas'][most]:.1f} / {by_count[most]:.1f} MB"),
    ]
    return rows


def bench_rollout_group(args: argparse.Namespace, results: dict[str, Any]) -> Rows:
    from rollout_bench import MACHINES, REPLICAS
    from rollout_bench import run as run_rollout

    print(f"[bench] rollout: {len(MACHINES)} machines, {args.roll_rounds} rolling updates of "
          f"{REPLICAS} replicas ...", flush=True)
    r = results["rollout"] = run_rollout(args.roll_rounds)
    t = r["apply_to_complete_s"]
    missed = t["not_complete_within_s"]
    return [
        (f"rolling update of {REPLICAS} replicas, apply -> complete p50 / p99 "
         f"({args.roll_rounds} updates, {missed['rounds']} not within {missed['limit']} s)",
         "-" if t["p50"] is None else f"{t['p50']:.1f} / {t['p99']:.1f} s"),
        ("  fewest ready / most copies at any sample (every 0.25 s)",
         f"{r['ready_min']} / {r['copies_max']}"),
        ("  reference, not measured: Kubernetes defaults (maxSurge 25 %, maxUnavailable 25 %)",
         f">= {REPLICAS} ready / <= {REPLICAS + 1} pods"),
    ]


def bench_streams_group(results: dict[str, Any]) -> Rows:
    from streams_bench import ROUNDS, SECONDS
    from streams_bench import run as run_streams

    print(f"[bench] streams: 2 machines, echo over a Service vs direct TCP ({ROUNDS} x "
          f"{SECONDS:.0f} s of throughput each, taking turns; medians) ...", flush=True)
    r = results["streams"] = run_streams()
    s, d = r["stream"], r["direct"]
    return [
        ("workload stream / direct TCP: throughput, one connection, both ways, median",
         f"{s['throughput_mb_s']:.1f} / {d['throughput_mb_s']:.1f} MB/s "
         f"({r['throughput_ratio'] * 100:.0f} %)"),
        ("  the libp2p fallback's ceiling: one bare py-libp2p stream, one way",
         f"{r['libp2p_one_way_mb_s']:.1f} MB/s"),
        ("  round trip of 64 bytes p50 / p99: stream", f"{s['rtt_ms']['p50']:.2f} / "
         f"{s['rtt_ms']['p99']:.2f} ms"),
        ("  round trip of 64 bytes p50 / p99: direct", f"{d['rtt_ms']['p50']:.2f} / "
         f"{d['rtt_ms']['p99']:.2f} ms"),
        ("  added latency p50 / p99", f"{r['added_rtt_ms_p50']:.2f} / "
         f"{r['added_rtt_ms_p99']:.2f} ms"),
        ("  connection set-up (connect + first echo) p50: stream / direct",
         f"{s['setup_ms']['p50']:.1f} / {d['setup_ms']['p50']:.1f} ms"),
        ("  work-plane RSS per extra replica with a Service listener",
         f"{r['workplane_rss_mb_per_extra_replica']:.2f} MB"),
    ]


def bench_etcd_group(results: dict[str, Any]) -> Rows:
    from etcd_bench import WRITES
    from etcd_bench import run as run_etcd

    print(f"[bench] etcd: a 3-member StatefulSet on 3 machines vs the same containers on one "
          f"Podman network ({WRITES} sequential writes each) ...", flush=True)
    r = results["etcd"] = run_etcd()
    b, o = r["beemesh"], r["one_network"]
    return [
        ("etcd: apply -> 3 members healthy", f"{b['apply_to_healthy_s']:.1f} s"),
        ("etcd: a member's pod removed -> healthy again (same machine, its data)",
         f"{b['killed_to_healthy_s']:.1f} s"),
        ("etcd write latency p50 / p99: over Beemesh workload streams",
         f"{b['write_ms']['p50']:.2f} / {b['write_ms']['p99']:.2f} ms"),
        ("etcd write latency p50 / p99: one Podman network",
         f"{o['write_ms']['p50']:.2f} / {o['write_ms']['p99']:.2f} ms"),
        ("  ratio of the p50s", f"{r['write_p50_ratio']:.2f} x"),
    ]


def bench_agent_group(args: argparse.Namespace, results: dict[str, Any]) -> Rows:

    print(f"[bench] memory by import step ({len(IMPORT_STEPS)} runs) ...", flush=True)
    imports = {name: rss_of_import(code) / 2**20 for name, code in IMPORT_STEPS.items()}
    print(f"[bench] {args.agents} agents on loopback, {args.idle_seconds:.0f} s idle window ...",
          flush=True)
    agents = bench_agents(args.agents, args.idle_seconds)
    results["rss_mb_by_import"] = imports
    results["agent_mesh"] = agents
    rows = [(f"RSS after import: {k}", f"{v:.1f} MB") for k, v in imports.items()]
    rows += [
        (f"idle agent RSS with {args.agents - 1} peers (median)",
         f"{agents['idle_rss_mb_with_peers_median']:.1f} MB"),
        ("process start -> joined (median / max)",
         f"{agents['start_to_joined_s_median']:.2f} / {agents['start_to_joined_s_max']:.2f} s"),
        ("agent init -> joined, in process (median)",
         f"{agents['in_process_join_s_median']:.2f} s"),
        ("idle CPU per minute", f"{agents['idle_cpu_s_per_min']:.2f} CPU-s"),
    ]
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
