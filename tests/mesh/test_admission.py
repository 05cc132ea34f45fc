"""Admission on real agents (separate processes, loopback): an unadmitted holder of the fleet's
network key is never listed and does not stay connected; a revoked machine is dropped by every
agent within seconds and stays out through restarts and for agents that join later."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from beemesh.fleet import write_policy
from beemesh.lab.localmesh import AgentProc, wait_for
from beemesh.lab.localmesh import LocalMesh as Cluster

pytestmark = pytest.mark.mesh

REVOKED_WITHIN_S = 10  # the bound


def refused(agent: AgentProc, what: str, reason: str) -> int:
    return int(agent.metrics().get(what, {}).get(reason, 0))


def test_an_unadmitted_key_holder_is_never_listed_and_not_kept_connected(
        cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    # A stolen swarm.key on a machine the operator never admitted: its own copy of the fleet
    # material says admission is off, so it starts and tries to take part.
    rogue_fleet = tmp_path / "stolen"
    shutil.copytree(cluster.fleet, rogue_fleet)
    write_policy(rogue_fleet, "off")
    rogue = cluster.start("rogue", bootstrap=[a.addr, b.addr], fleet=rogue_fleet, admit=False)
    wait_for(lambda: b.peer_id in a.node_ids() and a.peer_id in b.node_ids(), 15,
             "a and b to list each other")

    wait_for(lambda: refused(a, "connections_refused", "unadmitted") >= 1, 30,
             "a to close the rogue's connection after the grace")
    wait_for(lambda: refused(a, "messages_dropped", "unadmitted") >= 1, 15,
             "a to drop the rogue's messages")
    time.sleep(3)
    for honest in (a, b):
        assert rogue.peer_id not in honest.node_ids(), honest.name
        assert honest.alive()
    assert rogue.peer_id not in a.status()["connected_peers"]
    assert a.status()["admission"]["required"] is True
    assert a.status()["admission"]["cert_expires"] > time.time()


def test_a_revoked_machine_is_dropped_everywhere_and_stays_out(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    c = cluster.start("c", bootstrap=[a.addr])
    everyone = {a.peer_id, b.peer_id, c.peer_id}
    for agent in (a, b, c):
        wait_for(lambda agent=agent: agent.node_ids() == everyone, 20,
                 f"{agent.name} to list all three")

    proc = cluster.revoke(a.api, b.peer_id, "stolen")
    assert proc.returncode == 0, proc.stderr
    started = time.monotonic()
    for agent in (a, c):
        wait_for(lambda agent=agent: b.peer_id not in agent.node_ids(), REVOKED_WITHIN_S,
                 f"{agent.name} to drop the revoked machine")
    wait_for(lambda: b.peer_id not in a.status()["connected_peers"], REVOKED_WITHIN_S,
             "a to close its connection with the revoked machine")
    print(f"revoked machine dropped by every agent after {time.monotonic() - started:.1f} s")
    assert a.status()["admission"]["revoked"] == 1
    assert any(e["kind"] == "Revoked" for e in c.get_json("events"))

    # c restarts: the revocation is on its disk, b stays out although b is still running.
    cluster.stop("c")
    c = cluster.start("c", bootstrap=[a.addr, b.addr])
    wait_for(lambda: a.peer_id in c.node_ids(), 20, "c to list a again")
    time.sleep(4)  # a few of b's announcements
    assert b.peer_id not in c.node_ids()
    assert c.status()["admission"]["revoked"] == 1

    # d joins after the revocation: it learns it from the first peer it meets.
    d = cluster.start("d", bootstrap=[a.addr, b.addr])
    wait_for(lambda: d.status()["admission"]["revoked"] == 1, 20, "d to learn the revocation")
    wait_for(lambda: a.peer_id in d.node_ids(), 20, "d to list a")
    time.sleep(4)
    assert b.peer_id not in d.node_ids()
