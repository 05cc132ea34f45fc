"""Services on agents (no Podman needed): applied on one machine, kept by every machine, learnt
by a machine that joins later (it asks a peer: Services are in no record), deleted everywhere,
and still kept after a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.mesh

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
"""


def services(agent) -> list[str]:
    return [r["service"] for r in agent.get_json("get", "services")]


def test_a_service_reaches_every_machine_and_late_joiners(cluster: LocalMesh,
                                                          tmp_path: Path) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    wait_for(lambda: a.node_ids() == {a.peer_id, b.peer_id} == b.node_ids(), 15, "a and b meet")
    path = tmp_path / "svc.yaml"
    path.write_text(SERVICE)
    done = cluster.operator(a.api, "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    wait_for(lambda: services(b) == ["service/default/backend"], 10, "b to keep the Service")

    # Past pub/sub's gossip history (a few heartbeats), which could still hand the Service
    # to a newcomer: the late joiner must ask a peer for it.
    time.sleep(10)
    late = cluster.start("c", bootstrap=[b.addr])
    wait_for(lambda: services(late) == ["service/default/backend"], 20,
             "the late joiner to learn the Service from a peer")
    assert any(e["kind"] == "ManifestLearned" and "backend" in e["text"]
               for e in late.get_json("events"))

    cluster.stop("c")  # kept on disk: still there after a restart, before any peer answers
    late = cluster.start("c", bootstrap=[b.addr])
    assert services(late) == ["service/default/backend"]

    done = cluster.operator(b.api, "delete", "svc", "backend")
    assert done.returncode == 0, done.stderr
    for agent in (a, b, late):
        wait_for(lambda agent=agent: services(agent) == [], 10, f"{agent.name} to drop it")
