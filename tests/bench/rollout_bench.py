"""Rolling-update time on a real 3-machine mesh (agent, work plane and Podman per machine,
each in its own network namespace), default settings throughout.

A 3-replica Deployment (busybox httpd with a readinessProbe, image local, Kubernetes' default
strategy: maxSurge 25 % -> 1, maxUnavailable 25 % -> 0) runs; each round applies a changed
template (a new env value) and times apply -> every replica on the new template and ready
(the workload row `complete`, as `beemesh rollout status` follows it). Every 0.25 s the
bench counts the ready replicas (ordinals with a ready service record) and the copies the
records show, through the agent API the CLI uses. Kubernetes' defaults bound the same
rollout to >= 3 ready and <= 4 pods at every moment; its time is not measured here (no
Kubernetes on this machine).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beemesh.api.client import call
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.lab.localmesh import LocalMesh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from healing_bench import start, wait_joined, wait_settled_in
from healing_lib import apply, manifest, wait_settled
from scheduling_bench import percentile

MACHINES = ("r1", "r2", "r3")
WORKLOAD = "deployment/default/roll"
REPLICAS = 3
POLL_S = 0.25
ROUND_TIMEOUT_S = 240


def with_env(text: str, value: str) -> str:
    return text.replace("        resources:", f"        env: [{{name: ROUND, value: '{value}'}}]"
                        "\n        resources:")


def sample(mesh: LocalMesh, via: str) -> tuple[int, int, str] | None:
    """(ready ordinals, copies the records show, workload state) in `via`'s view."""
    try:
        records = call(mesh.agents[via].api, "GET", f"/v1/endpoints?workload={WORKLOAD}",
                       timeout=10)
        rows = call(mesh.agents[via].api, "GET", "/v1/workloads", timeout=10)
    except UserError:  # a busy agent answers late: the next poll asks again
        return None
    state = next((r["state"] for r in rows if r["workload"] == WORKLOAD), "")
    return len({r["ordinal"] for r in records if r["ready"]}), len(records), state


def one_round(mesh: LocalMesh, tmp: Path, base: str, i: int) -> dict[str, Any]:
    via = MACHINES[1]
    apply(mesh, tmp, MACHINES[0], with_env(base, f"round-{i}"))
    applied = time.monotonic()
    samples: list[tuple[int, int]] = []
    done_at: float | None = None
    while time.monotonic() - applied < ROUND_TIMEOUT_S:
        polled = time.monotonic()
        got = sample(mesh, via)
        if got is not None:
            ready, copies, state = got
            samples.append((ready, copies))
            if state == "complete" and polled - applied > 1:
                done_at = polled
                break
        time.sleep(max(0.0, polled + POLL_S - time.monotonic()))
    return {
        "apply_to_complete_s": None if done_at is None else round(done_at - applied, 2),
        "ready_min": min((r for r, _ in samples), default=None),
        "copies_max": max((c for _, c in samples), default=None),
        "samples": len(samples),
    }


def run(rounds: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-bench-roll-"))
    mesh = LocalMesh.create(root)
    try:
        start(mesh, MACHINES[0], None)
        for name in MACHINES[1:]:
            start(mesh, name, MACHINES[0])
        wait_joined(mesh, MACHINES)
        base = manifest("Deployment", "roll", REPLICAS, host_port=None)
        apply(mesh, root, MACHINES[0], with_env(base, "round-0"))
        wait_settled(mesh, MACHINES[0], WORKLOAD, REPLICAS)
        # A restarted agent asks for nothing for heal_settle_s: measure the steady state.
        wait_settled_in(mesh, AgentConfig().heal_settle_s + 2)
        results = []
        for i in range(1, rounds + 1):
            r = one_round(mesh, root, base, i)
            print(f"[bench] rolling update {i}/{rounds}: {r}", flush=True)
            results.append(r)
            wait_settled(mesh, MACHINES[0], WORKLOAD, REPLICAS)
        times = [r["apply_to_complete_s"] for r in results if r["apply_to_complete_s"]]
        return {
            "rounds": results,
            "replicas": REPLICAS,
            "apply_to_complete_s": {
                "p50": round(statistics.median(times), 2) if times else None,
                "p99": percentile(times, 0.99) if times else None,
                "not_complete_within_s": {"limit": ROUND_TIMEOUT_S,
                                          "rounds": rounds - len(times)}},
            "ready_min": min((r["ready_min"] for r in results if r["ready_min"] is not None),
                             default=None),
            "copies_max": max((r["copies_max"] for r in results
                               if r["copies_max"] is not None), default=None),
        }
    finally:
        mesh.close()
