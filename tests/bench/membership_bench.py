"""Membership at 5, 20 and 40 agents on this host (issue 21): convergence, and what an idle
agent receives and spends as the fleet grows.

Agents run without Podman or work planes (idle membership only), all on loopback. For each
size: the time from the last start until every agent lists every machine, then over
`idle_s`: pub/sub messages each agent took in (accepted + dropped), probes it answered
(its monitors'), and its CPU. The claim to check: per-agent figures do not grow with N
(with the 3-s full-record broadcast each agent received (N-1)/3 records a second).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from beemesh.lab.localmesh import LocalMesh, wait_for

SETTLE_S = 5.0
CONVERGE_WITHIN_S = 180.0  # then the idle window is measured anyway (a mesh still flapping)


def inbound(metrics: dict[str, Any]) -> int:
    return sum(metrics.get("messages_accepted", {}).values()) + sum(
        metrics.get("messages_dropped", {}).values())


def one_size(n: int, idle_s: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"beemesh-membership-{n}-"))
    mesh = LocalMesh.create(root)
    try:
        seed = mesh.start("m1", workplane=False)
        for i in range(2, n + 1):
            mesh.start(f"m{i}", bootstrap=[seed.addr], workplane=False, wait=False)
        for a in mesh.agents.values():
            wait_for(a.api.exists, 120, f"{a.name} to serve its API")
        started = time.monotonic()
        converged_s: float | None = None
        while time.monotonic() - started < CONVERGE_WITHIN_S:
            fewest = min(len(a.node_ids()) for a in mesh.agents.values())
            if fewest == n:
                converged_s = time.monotonic() - started
                break
            print(f"[membership {n}] {time.monotonic() - started:5.0f} s: fewest listed "
                  f"{fewest}", file=sys.stderr)
            time.sleep(5)
        time.sleep(SETTLE_S)
        procs = {name: psutil.Process(a.proc.pid) for name, a in mesh.agents.items()}
        before = {name: (a.metrics(), sum(procs[name].cpu_times()[:2]))
                  for name, a in mesh.agents.items()}
        t0 = time.monotonic()
        time.sleep(idle_s)
        after = {name: (a.metrics(), sum(procs[name].cpu_times()[:2]))
                 for name, a in mesh.agents.items()}
        span = time.monotonic() - t0
        listed = min(len(a.node_ids()) for a in mesh.agents.values())
    finally:
        mesh.close()
    rates = [(inbound(after[k][0]) - inbound(before[k][0])) / span for k in before]
    cpu = [100 * (after[k][1] - before[k][1]) / span for k in before]
    probes = [(after[k][0].get("probes", {}).get("acked", 0)
               - before[k][0].get("probes", {}).get("acked", 0)) / span for k in before]
    dead = sum(after[k][0].get("machines_dead", 0) for k in after)
    stalls = sum(after[k][0].get("stalls", 0) for k in after)
    return {"agents": n,
            "converged_s": None if converged_s is None else round(converged_s, 1),
            "fewest_listed_at_end": listed,
            "inbound_msgs_per_s_median": round(statistics.median(rates), 3),
            "inbound_msgs_per_s_max": round(max(rates), 3),
            "probes_acked_per_s_median": round(statistics.median(probes), 2),
            "cpu_percent_median": round(statistics.median(cpu), 2),
            "cpu_percent_max": round(max(cpu), 2),
            "machines_declared_dead": dead, "stalls": stalls}


def run(sizes: tuple[int, ...] = (5, 20, 40), idle_s: float = 30.0) -> dict[str, Any]:
    out = {str(n): one_size(n, idle_s) for n in sizes}
    base = out[str(sizes[0])]["inbound_msgs_per_s_median"]
    for r in out.values():
        r["inbound_vs_smallest"] = round(r["inbound_msgs_per_s_median"] / base, 2) if base \
            else None
    return out


if __name__ == "__main__":
    import json

    sizes = tuple(int(a) for a in sys.argv[1:]) or (5, 20, 40)
    print(json.dumps(run(sizes), indent=2))
