"""Self-healing with real agents, work planes and Podman: machines die, are drained, restart.

One mesh of four machines serves the whole module; a test that kills a machine starts it
again (empty, as a replaced machine would be) before it ends.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import (
    Sampler,
    answering,
    apply,
    kill_machine,
    manifest,
    real_pods,
    restart_machine,
    start_machines,
    wait_gone,
    wait_sees,
    wait_settled,
)

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow
MACHINES = ("h1", "h2", "h3", "h4")


@pytest.fixture(scope="module")
def mesh4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("heal"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def wait_joined(mesh: LocalMesh) -> None:
    wait_sees(mesh, MACHINES)


def delete(mesh: LocalMesh, kind: str, name: str) -> None:
    done = mesh.operator(mesh.agents["h1"].api, "delete", kind, name)
    assert done.returncode == 0, done.stderr
    wait_gone(mesh, f"{kind}/default/{name}")


def events(mesh: LocalMesh, via: str) -> list[dict]:
    return json.loads(mesh.agents[via].cli("events", "-o", "json").stdout)


def test_dead_machine_replica_is_replaced_and_count_returns_to_two(
        mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "deployment/default/pair"
    apply(mesh4, tmp_path, "h1", manifest("Deployment", "pair", 2))
    before = wait_settled(mesh4, "h1", wid, 2)
    victim = next(m for m, _ in before if m != "h1")
    survivor_pods = {p for m, p in before if m != victim}
    lost_pod = next(p for m, p in before if m == victim)

    kill_machine(mesh4, victim)
    t0 = time.monotonic()
    after = wait_settled(mesh4, "h1", wid, 2, timeout=150)
    took = time.monotonic() - t0
    assert victim not in {m for m, _ in after}, after
    assert {p for _, p in after} == survivor_pods | {lost_pod}, "the lost ordinal comes back"
    assert took < 120, f"replacement took {took:.0f} s"
    assert any(e["kind"] == "HealAsked" and e["workload"] == wid
               for name in mesh4.agents if name != victim for e in events(mesh4, name))

    restart_machine(mesh4, victim, "h1")
    wait_joined(mesh4)
    time.sleep(20)  # a returning (empty) machine must not bring extra replicas
    assert len(real_pods(mesh4, wid)) == 2
    delete(mesh4, "deployment", "pair")


def test_single_replica_comes_back_elsewhere(mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "deployment/default/solo"
    apply(mesh4, tmp_path, "h1", manifest("Deployment", "solo", 1, host_port=None))
    ((victim, pod),) = wait_settled(mesh4, "h1", wid, 1)
    via = next(n for n in MACHINES if n != victim)
    kill_machine(mesh4, victim)
    ((new_host, new_pod),) = wait_settled(mesh4, via, wid, 1, timeout=150)
    assert new_host != victim and new_pod == pod
    restart_machine(mesh4, victim, via)
    wait_joined(mesh4)
    delete(mesh4, "deployment", "solo")


def test_statefulset_replica_keeps_ordinal_and_name_and_never_runs_twice(
        mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "statefulset/default/db"
    apply(mesh4, tmp_path, "h1", manifest("StatefulSet", "db", 2, host_port=None))
    before = wait_settled(mesh4, "h1", wid, 2)
    victim, lost = next((m, p) for m, p in before if m != "h1")
    sampler = Sampler(lambda: [p for _, p in real_pods(mesh4, wid)], interval=0.5)
    sampler.start()
    try:
        kill_machine(mesh4, victim)
        after = wait_settled(mesh4, "h1", wid, 2, timeout=180)
    finally:
        samples = sampler.stop()
    assert sorted(p for _, p in after) == ["db-0", "db-1"]
    assert lost in {p for m, p in after if m != victim}, "replacement keeps the pod name"
    for _, pods in samples:
        assert len(pods) == len(set(pods)), f"an ordinal ran twice: {pods}"
    restart_machine(mesh4, victim, "h1")
    wait_joined(mesh4)
    delete(mesh4, "statefulset", "db")


def test_drain_moves_replicas_without_a_moment_of_zero_ready(
        mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "deployment/default/front"
    apply(mesh4, tmp_path, "h1", manifest("Deployment", "front", 2))
    before = wait_settled(mesh4, "h1", wid, 2)
    target = next(m for m, _ in before if m != "h1")
    peer = mesh4.agents[target].peer_id
    sampler = Sampler(lambda: answering(mesh4), interval=0.2)
    sampler.start()
    try:
        time.sleep(1)
        done = mesh4.operator(mesh4.agents["h1"].api, "drain", peer, "--grace", "5", "--wait",
                              "--timeout", "150", timeout=200)
        assert done.returncode == 0, done.stdout + done.stderr
        after = wait_settled(mesh4, "h1", wid, 2)
        time.sleep(2)
    finally:
        samples = sampler.stop()
    assert target not in {m for m, _ in after}
    low = min(len(got) for _, got in samples)
    assert low >= 1, f"a moment with no replica answering: {samples}"
    nodes = {n["peer_id"]: n for n in mesh4.agents["h1"].nodes()}
    assert nodes[peer]["cordoned"], "a drained machine stays cordoned"
    done = mesh4.operator(mesh4.agents["h1"].api, "uncordon", peer)
    assert done.returncode == 0, done.stderr
    delete(mesh4, "deployment", "front")


def test_deleted_workload_stays_deleted_through_machine_restarts(
        mesh4: LocalMesh, tmp_path: Path) -> None:
    wid = "deployment/default/gone"
    apply(mesh4, tmp_path, "h1", manifest("Deployment", "gone", 2, host_port=None))
    pods = wait_settled(mesh4, "h1", wid, 2)
    # One machine running a replica is away (agent dead, its pod still running) while the
    # operator deletes the workload. (Both replicas may run there: spreading is a preference.)
    away = next(m for m, _ in pods if m != "h1")
    left_there = sum(1 for m, _ in pods if m == away)
    mesh4.stop(away, signal.SIGKILL)
    done = mesh4.operator(mesh4.agents["h1"].api, "delete", "deployment", "gone")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: [m for m, _ in real_pods(mesh4, wid)] == [away] * left_there, 60,
             "the replicas of present machines to go")
    # Every machine restarts, the away one included: nothing brings the workload back, and
    # the away machine's leftover pod is removed once a peer tells it about the Delete.
    for name in MACHINES:
        if name != away:
            mesh4.stop(name)
    for name in MACHINES:
        seed = "h1" if name != "h1" else "h2"
        mesh4.start(name, podman=True, bootstrap=[mesh4.agents[seed].addr])
    wait_joined(mesh4)
    wait_gone(mesh4, wid, timeout=90)
    seen: list[list[tuple[str, str]]] = []
    deadline = time.monotonic() + 40  # well past heal_settle_s and every record TTL
    while time.monotonic() < deadline:
        seen.append(real_pods(mesh4, wid))
        time.sleep(1)
    assert not any(seen), f"the deleted workload came back: {[s for s in seen if s]}"
    for name in MACHINES:
        tasks = [e for e in events(mesh4, name) if e["kind"] == "Deployed" and
                 e["workload"] == wid]
        assert not tasks, f"{name} saw a deployment of the deleted workload: {tasks}"
