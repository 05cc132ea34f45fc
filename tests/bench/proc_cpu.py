"""CPU seconds per kind of process of a LocalMesh, to see who eats a small host's cores.

Every process whose command line names the mesh's root directory (agents, work planes, Podman
services, conmons, `podman container cleanup`, CLI calls) counts, with its descendants (the
containers).
A process's CPU includes that of its children it has reaped (Podman's CNI plugins, conmon's
`podman container cleanup`); only processes that start and end between two snapshots without
a watched parent are missed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

KINDS = ("agent", "workplane", "podman service", "conmon", "container", "other")


@dataclass(frozen=True)
class Snapshot:
    at: float
    host_busy_s: float  # every process on the host, other users' included
    # (pid, create_time) -> (kind, machine, cpu s)
    cpu_s: dict[tuple[int, float], tuple[str, str, float]]


def kind_of(cmdline: list[str], under_conmon: bool) -> str:
    text = " ".join(cmdline)
    if "beemesh" in text and " workplane " in f"{text} ":
        return "workplane"
    if "beemesh" in text and " agent " in f"{text} ":
        return "agent"
    if cmdline and cmdline[0].endswith("conmon"):
        return "conmon"
    if "system service" in text:
        return "podman service"
    if under_conmon:
        return "container"
    return "other"


def machine_of(cmdline: list[str], marker: str) -> str:
    """The machine a process belongs to: the first path component under the mesh root
    (`<root>/s1/...`, `<root>/s1-podman/...`)."""
    for part in cmdline:
        for piece in part.split("="):
            if piece.startswith(marker + "/"):
                first = piece[len(marker) + 1:].split("/", 1)[0]
                return first.removesuffix("-podman").removesuffix(".sock")
    return "?"


def snapshot(root: Path) -> Snapshot:
    """CPU seconds (user + system, reaped children included) so far of every process of the
    mesh under `root`."""
    marker = str(root)
    out: dict[tuple[int, float], tuple[str, str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmd = proc.info["cmdline"] or []
        if not any(marker in part for part in cmd):
            continue
        with contextlib.suppress(psutil.Error):
            machine = machine_of(cmd, marker)
            family = [(proc, kind_of(cmd, False))]
            conmon = family[0][1] == "conmon"
            for child in proc.children(recursive=True):
                family.append((child, kind_of(child.cmdline(), conmon)))
            for p, kind in family:
                t = p.cpu_times()
                spent = t.user + t.system + t.children_user + t.children_system
                out[(p.pid, p.create_time())] = (kind, machine, spent)
    host = psutil.cpu_times()
    return Snapshot(time.monotonic(), host.user + host.system + host.nice + host.irq +
                    host.softirq, out)


def used(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """CPU seconds spent per kind between two snapshots, the wall time in between, the share
    of all cores the mesh used and the share the whole host was busy (noise from others)."""
    by_kind = dict.fromkeys(KINDS, 0.0)
    by_process: dict[str, float] = {}
    for key, (kind, machine, cpu) in after.cpu_s.items():
        spent = cpu - before.cpu_s.get(key, (kind, machine, 0.0))[2]
        by_kind[kind] += spent
        if kind in ("agent", "workplane", "podman service"):
            label = f"{kind} {machine}"
            by_process[label] = round(by_process.get(label, 0.0) + spent, 1)
    wall = after.at - before.at
    total = sum(by_kind.values())
    cores = wall * (psutil.cpu_count() or 1)
    return {**{k: round(v, 1) for k, v in by_kind.items()}, "total": round(total, 1),
            "wall_s": round(wall, 1), "mesh_share_of_host": round(total / cores, 3),
            "host_busy_share": round((after.host_busy_s - before.host_busy_s) / cores, 3),
            "by_process": dict(sorted(by_process.items()))}
