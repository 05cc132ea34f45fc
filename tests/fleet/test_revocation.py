"""A stolen machine is revoked: every agent drops it within seconds, its replicas come back on
the other machines although it still runs them, and it stays out when it restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import apply, manifest, real_pods, start_machines, wait_settled

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow

MACHINES = ("r1", "r2", "r3")
WEB = "deployment/default/web"
REVOKED_WITHIN_S = 10


@pytest.fixture
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("revoke"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def test_a_revoked_machines_replicas_come_back_elsewhere(mesh3: LocalMesh,
                                                         tmp_path: Path) -> None:
    apply(mesh3, tmp_path, "r1", manifest("Deployment", "web", 2, host_port=None))
    pods = wait_settled(mesh3, "r1", WEB, 2)
    victim = next(m for m, _ in pods if m != "r1") if any(m != "r1" for m, _ in pods) else "r2"
    stolen = mesh3.agents[victim]
    survivors = [m for m in MACHINES if m != victim]

    proc = mesh3.revoke(mesh3.agents["r1"].api, stolen.peer_id, "stolen")
    assert proc.returncode == 0, proc.stderr
    started = time.monotonic()
    for name in survivors:
        wait_for(lambda a=mesh3.agents[name]: stolen.peer_id not in a.node_ids(),
                 REVOKED_WITHIN_S, f"{name} to drop the revoked machine")
    print(f"dropped by every agent after {time.monotonic() - started:.1f} s")

    # Its replicas are placed on the others; the stolen machine may go on running its copy.
    def replaced() -> bool:
        here = [m for m, _ in real_pods(mesh3, WEB, running_only=True) if m in survivors]
        rows = mesh3.agents["r1"].get_json("get", "pods")
        listed = {r["machine"] for r in rows if r["workload"] == WEB}
        return len(here) == 2 and stolen.peer_id not in listed
    wait_for(replaced, 120, "both web replicas on machines that are not revoked")
    assert stolen.alive()  # nothing stopped it: the fleet just no longer listens to it

    # It restarts (a thief's reboot): still refused by everyone.
    mesh3.stop(victim)
    again = mesh3.start(victim, podman=True, bootstrap=[mesh3.agents["r1"].addr])
    time.sleep(8)
    honest = {mesh3.agents[name].peer_id for name in survivors}
    for name in survivors:
        assert mesh3.agents[name].node_ids() == honest, name
    # Cut right after the handshake: it cannot even stay connected to anyone.
    assert not honest & set(again.status()["connected_peers"])
