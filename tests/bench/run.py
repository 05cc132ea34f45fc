"""`make bench`: measure the agent on real processes; print a table and write JSON.

Groups (`--only` runs one): `footprint` (footprint_bench.py: memory, start -> joined and idle
CPU of agents and work planes on loopback, from the venv and the .pyz),
`membership` (membership_bench.py: 5, 20 and 40 idle agents: convergence, inbound messages
and CPU per agent), `scheduling` (scheduling_bench.py), `healing` (healing_bench.py: machine
death to ready replacement, work-plane memory), `rollout` (rollout_bench.py: a 3-replica rolling
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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# One line per run: the commit and its footprint figures, so a regression shows against the
# runs of earlier commits (`make bench` prints the last other commit's figures beside these).
HISTORY = ROOT / "bench-history.jsonl"


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
    ap.add_argument("--only", choices=["footprint", "membership", "scheduling", "healing",
                                       "rollout", "streams", "etcd"],
                    help="run one group only")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "commit": commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "arch": platform.machine(),
                    "cpus": os.cpu_count()}}
    rows: list[tuple[str, str]] = []
    if args.only in (None, "footprint"):
        rows += bench_footprint_group(args, results)
    if args.only in (None, "membership"):
        rows += bench_membership_group(results)
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
    rows += history_rows(results)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


Rows = list[tuple[str, str]]


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def history_rows(results: dict[str, Any]) -> Rows:
    """Append this run's footprint to HISTORY; rows comparing it with the last other commit."""
    mine = {k: v for k, v in results.items() if k.startswith("footprint_")}
    if not mine:
        return []
    earlier = [json.loads(line) for line in HISTORY.read_text().splitlines()
               if line.strip()] if HISTORY.exists() else []
    with HISTORY.open("a") as f:
        f.write(json.dumps({"commit": results["commit"], "at": results["at"], **mine}) + "\n")
    other = next((e for e in reversed(earlier) if e.get("commit") != results["commit"]), None)
    if other is None:
        return []
    out: Rows = []
    for key, r in mine.items():
        if key in other and "machine_cost_mb" in r:  # footprint_replicas has its own figures
            o = other[key]
            out.append((f"{key}: machine cost / agent RSS, this vs {other['commit']}",
                        f"{r['machine_cost_mb']:.1f} / {r['agent']['rss_mb']:.1f} MB vs "
                        f"{o['machine_cost_mb']:.1f} / {o['agent']['rss_mb']:.1f} MB"))
    return out


def bench_membership_group(results: dict[str, Any]) -> Rows:
    from membership_bench import run as run_membership

    print("[bench] membership: 5, 20 and 40 idle agents ...", flush=True)
    r = run_membership()
    results["membership"] = r
    rows: Rows = []
    for n, f in r.items():
        rows += [
            (f"[membership {n}] all list all {n} after / fewest listed at the end",
             ("never within 180 s" if f["converged_s"] is None else f"{f['converged_s']:.1f} s")
             + f" / {f['fewest_listed_at_end']}"),
            (f"[membership {n}] inbound msgs/s per agent median / max (x smallest)",
             f"{f['inbound_msgs_per_s_median']:.2f} / {f['inbound_msgs_per_s_max']:.2f} "
             f"({f['inbound_vs_smallest']}x)"),
            (f"[membership {n}] idle CPU per agent median / max, probes answered/s",
             f"{f['cpu_percent_median']:.2f} / {f['cpu_percent_max']:.2f} %, "
             f"{f['probes_acked_per_s_median']:.1f}"),
            (f"[membership {n}] machines declared dead (none died) / processes held up",
             f"{f['machines_declared_dead']} / {f['stalls']}")]
    return rows


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


def bench_footprint_group(args: argparse.Namespace, results: dict[str, Any]) -> Rows:
    from footprint_bench import MACHINES, REPLICAS, replica_cost, replica_rows
    from footprint_bench import rows as footprint_rows
    from footprint_bench import run as run_footprint

    out: Rows = []
    builds: list[tuple[str, list[str] | None]] = [("venv", None)]
    pyz = sorted((ROOT / "dist").glob(f"beemesh-*-linux-{platform.machine()}.pyz"))
    if pyz:  # run by the interpreter the venv was made from, not whatever `env python3` finds
        builds.append(("pyz", [sys._base_executable, str(pyz[-1])]))
    for label, command in builds:
        print(f"[bench] footprint ({label}): {MACHINES} machines with work planes on loopback, "
              f"{args.idle_seconds:.0f} s idle window ...", flush=True)
        r = results[f"footprint_{label}"] = run_footprint(args.idle_seconds, command)
        out += footprint_rows(r, label)
    print(f"[bench] footprint: work plane with 0, 1 and {REPLICAS} replicas on one Podman "
          "machine ...", flush=True)
    r = results["footprint_replicas"] = replica_cost()
    return out + replica_rows(r)


if __name__ == "__main__":
    raise SystemExit(main())
