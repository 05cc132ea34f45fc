"""Partitions: each machine is its own network host, and the host can cut links between them.

A cut drops packets silently (no RST), as a pulled cable or a dead switch port does; the
agents must notice through unanswered probes alone (`membership.liveness`), and the machines
still linked to each other must keep seeing each other throughout.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow
TTL_S = AgentConfig().dead_after_s
MARGIN_S = 30
HOLD_S = 6 * TTL_S


def forward_rules(mesh: LocalMesh) -> list[str]:
    """This mesh's rules in the host's FORWARD chain."""
    out = subprocess.run(["iptables", "-w", "10", "-S", "FORWARD"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if f"--comment {mesh.netns_prefix} " in line]


@pytest.fixture
def mesh(podman_tools: None, tmp_path: Path) -> Iterator[LocalMesh]:
    """Three machines, each agent and Podman in its own namespace, all seeing each other."""
    mesh = LocalMesh.create(tmp_path)
    try:
        mesh.prepare_podmans(["m1", "m2", "m3"])
        seed = mesh.start("m1", podman=True)
        for name in ("m2", "m3"):
            mesh.start(name, podman=True, bootstrap=[seed.addr])
        yield mesh
    finally:
        mesh.close()


def test_partitioned_machines_drop_each_other_and_rejoin(mesh: LocalMesh) -> None:
    m1, m2, m3 = (mesh.agents[n] for n in ("m1", "m2", "m3"))
    ids = {a.peer_id for a in (m1, m2, m3)}
    for a in (m1, m2, m3):  # the agent itself runs in its machine's namespace
        assert a.addr.startswith(f"/ip4/{mesh.netns(a.name).ip}/tcp/")
        assert os.stat(f"/proc/{a.proc.pid}/ns/net").st_ino == \
            os.stat(mesh.netns(a.name).path).st_ino
    for a in (m1, m2, m3):
        wait_for(lambda a=a: a.node_ids() == ids, 30, f"{a.name} to see all three machines")

    mesh.partition(["m1"], ["m2", "m3"])
    cut_at = time.monotonic()
    assert len(forward_rules(mesh)) == 4  # m1<->m2, m1<->m3, both ways
    wait_for(lambda: m1.node_ids() == {m1.peer_id}, TTL_S + MARGIN_S, "m1 to see only itself")
    both = {m2.peer_id, m3.peer_id}
    for a in (m2, m3):
        wait_for(lambda a=a: a.node_ids() == both, TTL_S + MARGIN_S, f"{a.name} to drop m1")
    # The side that kept its link stays whole through a long partition: past the ~30 s after
    # which a silently cut peer used to stall gossip to everyone, and past many suspicion timeouts.
    while time.monotonic() < cut_at + HOLD_S:
        time.sleep(TTL_S / 2)
        assert m2.node_ids() == both and m3.node_ids() == both
        assert m1.node_ids() == {m1.peer_id}

    mesh.rejoin()
    assert forward_rules(mesh) == []
    for a in (m1, m2, m3):
        wait_for(lambda a=a: a.node_ids() == ids, 60, f"{a.name} to see all three again")


def test_partition_names_machines_it_can_cut(mesh: LocalMesh) -> None:
    with pytest.raises(UserError, match="overlap"):
        mesh.partition(["m1", "m2"], ["m2", "m3"])
    with pytest.raises(UserError, match="m9 has no network namespace"):
        mesh.partition(["m1"], ["m9"])
    assert forward_rules(mesh) == []
    mesh.partition(["m1"], ["m2"])
    mesh.close()  # close() removes the mesh's rules too
    assert forward_rules(mesh) == []
