"""`make sim`: what SWIM-style membership and the task auction cost at 100 to 100,000 machines.

A discrete-event simulator (issue 21, "Scale") that drives the REAL sans-IO cores, unchanged:
`membership.liveness.Liveness` on every simulated machine, and `scheduling.auction.Auctioneer`
with `scheduling.scoring` for the auction. Only the network and the clock are simulated.
Run: `make sim` (all sizes, ~15 min on 2 cores) or
`python tests/sim/run.py --sizes 100,1000 --out sim-results.json`. One seed (`--seed`)
makes a run reproducible; it is in the JSON with every parameter.

What is modelled
- Network (engine.py): per-link one-way latency lognormal around `--latency-ms` (median 20 ms,
  shape 0.5) drawn once per link, plus exponential jitter (2 ms) per message; loss of direct
  messages (probes, acks); partitions that drop every message between two sides silently.
- Gossip (pub/sub): a reliable broadcast over a D=6 mesh. A receiver hears it after its depth
  in the mesh (tree layers D, D(D-1), ...: at most ~ceil(log_D N) hops), a fresh link draw
  per hop. Traffic assumption: every machine receives ~D copies of every broadcast (the first
  plus duplicates from its mesh peers) and sends ~D; both are counted (in + out).
- Membership (membership.py, scenarios.py): idle traffic (probes + acks on direct streams,
  accusations and refutations on gossip), false verdicts under 1 % and 5 % loss of probes or
  acks, time for every live machine to reach the verdict on k killed machines, a 50/50
  partition (time until each side has declared the other dead) and its heal (every
  confirming accusation made during the cut published once more; each machine that learns
  it was declared dead refutes with a fresh record; the broadcasts that costs).
- Scheduling (scheduling.py): a burst of 50 tasks on a fleet of varied capacity: placement
  latency, bids per task, placement quality against an omniscient best fit, duplicates.
- Message sizes (wiresize.py): real signed envelopes (`wire.seal`) of an accusation and a
  machine record, probes/acks as small CBOR maps, plus yamux/Noise/gossipsub framing.

What is left out (also listed in the JSON, `simplifications`)
- At N above `--window` (default 1,000; the partition: `--partition-window`, 500) membership
  runs that many machines as a closed ring
  (each a real Liveness whose member list is the whole window), with the gossip latency of N
  and pub/sub traffic scaled by N/window: behaviour near a machine is local (3 successors),
  but the longest same-side run of a partition grows like log2 N, so the partition figure is
  a lower bound at 10,000 and 100,000 (`expected_longest_run_at_fleet` gives the size). What a
  member list of N costs one machine is measured on one real Liveness with N members.
- Loss is applied to probes and acks as independent drops: pessimistic, since TCP would
  retransmit a lost segment (a late ack rather than a missing one) on an open stream.
- No loss, reordering beyond latency, or congestion on gossip; no CPU time per message
  (a machine that falls behind answers late in reality); no clock skew; killed machines go
  silent (no connection reset, so `unreachable` is never used: the slow case).
- Scheduling: lease hints use one shared table with no delay (the DHT is not modelled);
  deploys succeed after 0.5 s; machine records (which replicas run where) reach everyone
  after one gossip delay; above `--full-limit` only the `--candidates` best-scoring eligible
  machines run each task's auction (every machine is still scored by the real functions, for
  the omniscient best): bids per task is then a LOWER bound when the last bidder's rank is
  near the candidate count. Duplicates are counted at the auction; the work plane's surplus
  rule that removes an extra copy later is not modelled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "agent"), str(ROOT / "tests")]  # this tree's code, this package

from beemesh.membership.liveness import Params  # noqa: E402
from sim import scenarios  # noqa: E402
from sim.engine import hops  # noqa: E402
from sim.membership import member_cost  # noqa: E402
from sim.scheduling import Burst  # noqa: E402
from sim.wiresize import sizes  # noqa: E402

DEGREE = 6
RECORD_REFRESH_S = 3.0  # today's full-record announcement period


def today(n: int) -> dict[str, float]:
    """Today's cost (formula, not simulated): every machine announces its full record every
    3 s on pub/sub; each machine receives and sends ~D copies of all N announcements."""
    per_s = n / RECORD_REFRESH_S
    return {"msgs": 2 * per_s * DEGREE, "bytes": 2 * per_s * DEGREE * sizes()["record"]}


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    w = min(n, args.window)
    p = Params()
    seed = args.seed
    out: dict[str, Any] = {"fleet": n, "simulated_machines": w,
                           "gossip_hops_max": hops(n, DEGREE)}
    step = time.perf_counter()
    out["idle"] = scenarios.idle(w, n, seed, p, 0.0, args.idle_s)
    out["loss_1pct"] = scenarios.idle(w, n, seed, p, 0.01, args.loss_s)
    out["loss_5pct"] = scenarios.idle(w, n, seed, p, 0.05, args.loss_s)
    out["kill"] = scenarios.kill(w, n, seed, p, min(args.kill, max(1, w // 20)))
    out["partition_machines"] = min(n, args.partition_window)
    out["partition"] = scenarios.partition(out["partition_machines"], n, seed, p)
    out["broken_link"] = scenarios.broken_link(w, n, seed, p)
    out["partition_changed_machines"] = min(n, 200)
    out["partition_with_record_changes"] = scenarios.partition(
        out["partition_changed_machines"], n, seed, p, changed_share=0.1)
    out["membership_cpu_s"] = time.perf_counter() - step
    out["member_cost"] = member_cost(n, p)
    out["today_full_records"] = today(n)
    step = time.perf_counter()
    out["scheduling"] = Burst(n, seed, tasks=args.tasks, full_limit=args.full_limit,
                              candidates=args.candidates, latency_ms=args.latency_ms).run()
    out["scheduling"]["two_ln_n"] = 2 * math.log(n)
    out["scheduling_cpu_s"] = time.perf_counter() - step
    out["elapsed_s"] = time.perf_counter() - started
    return out


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def table(results: list[dict[str, Any]]) -> str:
    mem = ["Membership (per machine; msgs and bytes are in + out per second)",
           f"{'N':>7} {'sim':>5} {'idle msg/s':>10} {'idle B/s':>8} {'1% msg/s':>9} "
           f"{'1% KB/s':>8} {'5% msg/s':>9} {'5% KB/s':>8} {'false dead 1/5%':>15} "
           f"{'detect p50/max s':>16} {'split A/B s':>11} {'heal MB':>8} "
           f"{'today msg/s':>11} {'today KB/s':>10} {'list MB':>7} {'1 bad link rx/s':>15} "
           f"{'stuck dead':>10}"]
    for r in results:
        i, l1, l5 = r["idle"], r["loss_1pct"], r["loss_5pct"]
        k, part = r["kill"], r["partition"]
        split = part["declared_other_side_dead_s"]
        mem.append(
            f"{r['fleet']:>7} {r['simulated_machines']:>5} "
            f"{i['per_machine_per_s']['msgs']:>10.1f} {i['per_machine_per_s']['bytes']:>8.0f} "
            f"{l1['per_machine_per_s']['msgs']:>9.1f} "
            f"{l1['per_machine_per_s']['bytes'] / 1024:>8.1f} "
            f"{l5['per_machine_per_s']['msgs']:>9.1f} "
            f"{l5['per_machine_per_s']['bytes'] / 1024:>8.1f} "
            f"{l1['false_dead_machines']:>7}/{l5['false_dead_machines']:<7} "
            f"{_f(k['detect_s_p50']):>7}/{_f(k['detect_s_max']):<8} "
            f"{_f(split.get(0), '.0f'):>5}/{_f(split.get(1), '.0f'):<5} "
            f"{part['heal_mb_per_machine']:>8.1f} "
            f"{r['today_full_records']['msgs']:>11.0f} "
            f"{r['today_full_records']['bytes'] / 1024:>10.0f} "
            f"{r['member_cost']['mb_per_machine']:>7.1f} "
            f"{r['broken_link']['receptions_per_machine_per_s']:>15.1f} "
            f"{r['partition_with_record_changes']['still_dead_somewhere_after_heal']:>10}")
    sch = ["Scheduling (a burst of tasks)",
           f"{'N':>7} {'mode':>18} {'placed':>6} {'latency p50/p99 s':>17} "
           f"{'bids/task mean/max':>18} {'2 ln N':>6} {'quality mean/min':>16} "
           f"{'dups':>4} {'last bidder rank':>16}"]
    for r in results:
        s = r["scheduling"]
        sch.append(
            f"{r['fleet']:>7} {s['mode']:>18} {s['placed']:>3}/{s['tasks']:<2} "
            f"{_f(s['latency_s_p50'], '.2f'):>8}/{_f(s['latency_s_p99'], '.2f'):<8} "
            f"{s['bids_per_task_mean']:>9.1f}/{s['bids_per_task_max']:<8} "
            f"{s['two_ln_n']:>6.1f} "
            f"{_f(s['quality_mean'], '.3f'):>8}/{_f(s['quality_min'], '.3f'):<7} "
            f"{s['duplicate_deployments']:>4} {_f(s['lowest_bidder_rank'], '.0f'):>16}")
    return "\n".join([*mem, "", *sch])


SIMPLIFICATIONS = [line.strip("- ").strip() for line in
                   __doc__.split("What is left out")[1].split("\n- ")[1:]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("sim-results.json"))
    ap.add_argument("--sizes", default="100,1000,10000,100000",
                    help="fleet sizes, comma-separated")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--window", type=int, default=1000,
                    help="most machines simulated with a real Liveness each")
    ap.add_argument("--partition-window", type=int, default=500,
                    help="most machines simulated in the partition (every one holds up to "
                    "half the others as suspects at once: the costliest scenario)")
    ap.add_argument("--idle-s", type=float, default=30.0, help="simulated idle period")
    ap.add_argument("--loss-s", type=float, default=30.0, help="simulated period under loss")
    ap.add_argument("--kill", type=int, default=5, help="machines killed at once")
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--full-limit", type=int, default=1000,
                    help="largest fleet where every machine runs every auction")
    ap.add_argument("--candidates", type=int, default=500,
                    help="machines running each auction above --full-limit")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        r = run_size(n, args)
        results.append(r)
        print(f"N={n}: {r['elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    params = {k: v for k, v in vars(args).items() if k != "out"}
    doc = {"seed": args.seed, "params": params, "liveness": Params().__repr__(),
           "gossip_degree": DEGREE, "message_bytes": sizes(),
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "simplifications": SIMPLIFICATIONS, "sizes": results}
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
