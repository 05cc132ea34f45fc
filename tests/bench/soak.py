"""`make soak`: memory and open files of a busy mesh over time (not in CI, not in `make bench`).

3 machines (agent, work plane and Podman each, in their own network namespaces), default
settings. A steady cycle runs for the whole soak: apply a 2-replica Deployment (wait until
it is running), scale it to 3, scale it back to 1, delete it, wait until its pods are gone;
every SAMPLE_S the footprint of every agent and work plane is read through `beemesh status`.
Printed: one row per sample (medians over machines) and the drift of each figure between
the first sample after the warm-up and the last (`python tests/bench/soak.py --minutes 30
--out soak-results.json`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from beemesh.lab.localmesh import LocalMesh, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from healing_bench import start, wait_joined
from healing_lib import apply, manifest, real_pods

MACHINES = ("s1", "s2", "s3")
SAMPLE_S = 30.0
WARM_UP_S = 120.0
FIGURES = ("rss_bytes", "uss_bytes", "open_files", "threads")


def cycle(mesh: LocalMesh, tmp: Path, i: int) -> None:
    """One apply -> scale up -> scale down -> delete round of a fresh Deployment."""
    name = f"soak-{i}"
    via = mesh.agents[MACHINES[i % len(MACHINES)]]
    apply(mesh, tmp, via.name, manifest("Deployment", name, 2, host_port=None))
    for replicas in (3, 1):
        done = mesh.operator(via.api, "scale", f"deployment/{name}", "--replicas",
                             str(replicas))
        assert done.returncode == 0, done.stderr
        wait_for(lambda r=replicas: len(real_pods(mesh, f"deployment/default/{name}",
                                                  running_only=True)) == r,
                 120, f"{name} at {replicas} replicas")
    done = mesh.operator(via.api, "delete", "deployment", name)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not real_pods(mesh, f"deployment/default/{name}"), 120,
             f"{name}'s pods gone")


def sample(mesh: LocalMesh, started: float) -> dict[str, Any]:
    row: dict[str, Any] = {"minute": round((time.monotonic() - started) / 60, 2)}
    for process in ("agent", "workplane"):
        found = [a.status()["footprint"][process] for a in mesh.agents.values()]
        got = [f for f in found if f]
        for figure in FIGURES:
            row[f"{process}_{figure}"] = statistics.median(f[figure] for f in got) if got else 0
    return row


def run(minutes: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-soak-"))
    mesh = LocalMesh.create(root)
    samples: list[dict[str, Any]] = []
    cycles = 0
    try:
        start(mesh, MACHINES[0], None)
        for name in MACHINES[1:]:
            start(mesh, name, MACHINES[0])
        wait_joined(mesh, MACHINES)
        started = time.monotonic()
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                row = sample(mesh, started)
                samples.append(row)
                print(f"[soak] {row}", flush=True)
                stop.wait(SAMPLE_S)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        while time.monotonic() - started < minutes * 60:
            cycle(mesh, root, cycles)
            cycles += 1
        stop.set()
        thread.join()
    finally:
        mesh.close()
    return summarize(samples, cycles)


def summarize(samples: list[dict[str, Any]], cycles: int) -> dict[str, Any]:
    warm = [s for s in samples if s["minute"] * 60 >= WARM_UP_S] or samples
    first, last = warm[0], warm[-1]
    drift = {k: round(100 * (last[k] - first[k]) / first[k], 1) if first[k] else None
             for k in first if k != "minute"}
    return {"cycles": cycles, "samples": samples, "drift_percent_after_warm_up": drift,
            "warm_up_s": WARM_UP_S}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--out", type=Path, default=Path("soak-results.json"))
    args = ap.parse_args()
    r = run(args.minutes)
    print(f"\n{'minute':>7} {'agent RSS':>10} {'agent USS':>10} {'agent fds':>9} "
          f"{'plane RSS':>10} {'plane USS':>10} {'plane fds':>9}")
    for s in r["samples"]:
        print(f"{s['minute']:7.1f} {s['agent_rss_bytes'] / 2**20:8.1f}MB "
              f"{s['agent_uss_bytes'] / 2**20:8.1f}MB {s['agent_open_files']:9.0f} "
              f"{s['workplane_rss_bytes'] / 2**20:8.1f}MB "
              f"{s['workplane_uss_bytes'] / 2**20:8.1f}MB {s['workplane_open_files']:9.0f}")
    print(f"\n{r['cycles']} apply/scale/delete cycles; drift after the "
          f"{WARM_UP_S:.0f} s warm-up, first to last sample:")
    for k, v in r["drift_percent_after_warm_up"].items():
        print(f"  {k}: {v} %")
    args.out.write_text(json.dumps(r, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
