"""Partitions (links cut between network namespaces): both sides heal Deployments, extras are
drained when the links return; a StatefulSet ordinal is fenced on the minority side and healed
on the majority side, never running twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import (
    Sampler,
    apply,
    manifest,
    real_pods,
    start_machines,
    wait_gone,
    wait_sees,
    wait_settled,
)

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow
MACHINES = ("p1", "p2", "p3", "p4")


@pytest.fixture(scope="module")
def mesh4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("part"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def operator(mesh: LocalMesh, *args: str) -> None:
    done = mesh.operator(mesh.agents["p1"].api, *args)
    assert done.returncode == 0, done.stdout + done.stderr


def place_on(mesh: LocalMesh, tmp: Path, text: str, hosts: set[str], wid: str,
             replicas: int) -> list[tuple[str, str]]:
    """Apply with every other machine cordoned, so the replicas land on `hosts`."""
    others = [n for n in MACHINES if n not in hosts]
    for n in others:
        operator(mesh, "cordon", mesh.agents[n].peer_id)
    try:
        apply(mesh, tmp, "p1", text)
        pods = wait_settled(mesh, "p1", wid, replicas)
    finally:
        for n in others:
            operator(mesh, "uncordon", mesh.agents[n].peer_id)
    assert {m for m, _ in pods} == hosts, pods
    return pods


def side_ready(mesh: LocalMesh, via: str, wid: str, side: set[str]) -> list[str]:
    """Pods with a ready record, as `via` sees them, that run on machines of `side`."""
    peers = {mesh.agents[n].peer_id for n in side}
    rows = mesh.agents[via].get_json("get", "endpoints", wid)
    return sorted(r["pod"] for r in rows if r["ready"] and r["machine"] in peers)


def timeline(mesh: LocalMesh, wid: str, samples: list) -> str:
    """What every machine did with the workload, and the samples, on one clock."""
    off = time.time() - time.monotonic()
    lines = [f"{e['ts']:.1f} {n} {e['kind']}: {e['text']}" for n in MACHINES
             for e in json.loads(mesh.agents[n].cli("events", "-o", "json").stdout)
             if e["workload"] == wid or e["kind"] == "Fenced"]
    lines += [f"{t + off:.1f} sample {pods}" for t, pods in samples if pods]
    return "\n".join(sorted(lines))


def test_both_sides_heal_then_extras_are_drained(mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "deployment/default/split"
    place_on(mesh4, tmp_path, manifest("Deployment", "split", 2), {"p1", "p3"}, wid, 2)
    mesh4.partition(["p1", "p2"], ["p3", "p4"])
    try:
        wait_sees(mesh4, ["p1", "p2"])
        wait_sees(mesh4, ["p3", "p4"])
        # Each side lost the other side's replica and starts it again on its own side.
        for via, side in (("p1", {"p1", "p2"}), ("p3", {"p3", "p4"})):
            wait_for(lambda via=via, side=side: side_ready(mesh4, via, wid, side) == [
                "split-0", "split-1"], 120, f"both replicas ready on {sorted(side)}")
        assert len(real_pods(mesh4, wid, running_only=True)) == 4
    finally:
        mesh4.rejoin()
    wait_sees(mesh4, MACHINES)
    after = wait_settled(mesh4, "p1", wid, 2, timeout=120)
    assert sorted(p for _, p in after) == ["split-0", "split-1"]
    operator(mesh4, "delete", "deployment", "split")
    wait_gone(mesh4, wid)


def test_statefulset_minority_fences_and_majority_heals_without_running_it_twice(
        mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "statefulset/default/quorum"
    ((lone, pod),) = place_on(mesh4, tmp_path, manifest("StatefulSet", "quorum", 1,
                                                         host_port=None), {"p4"}, wid, 1)
    sampler = Sampler(lambda: [p for _, p in real_pods(mesh4, wid, running_only=True)],
                      interval=0.5)
    sampler.start()
    majority = [n for n in MACHINES if n != lone]
    try:
        mesh4.partition([lone], majority)
        try:
            moved = wait_for(lambda: [(m, p) for m, p in real_pods(mesh4, wid, running_only=True)
                                      if m in majority], 150, "the ordinal to run on the majority")
            assert [p for _, p in moved] == [pod], "the replacement keeps the pod name"
            fenced = json.loads(mesh4.agents[lone].cli("events", "-o", "json").stdout)
            assert any(e["kind"] == "Fenced" for e in fenced), "the lone machine stops its copy"
            wait_for(lambda: side_ready(mesh4, "p1", wid, set(majority)) == [pod], 60,
                     "the majority's copy to be ready")
        finally:
            mesh4.rejoin()
        wait_sees(mesh4, MACHINES)
        time.sleep(20)  # the lone machine is back: nothing may start the ordinal again
    finally:
        samples = sampler.stop()
    assert all(len(pods) <= 1 for _, pods in samples), \
        f"the ordinal ran twice: {timeline(mesh4, wid, samples)}"
    assert [p for _, p in real_pods(mesh4, wid)] == [pod]
    operator(mesh4, "delete", "statefulset", "quorum")
    wait_gone(mesh4, wid)
