"""A hostile fleet member (it holds the fleet key) cannot take the fleet down.

Three real machines (agent, work plane, Podman each) run a Deployment; a member process
(tests/support/poisoner.py) publishes every poison pill that used to crash, stall or fool an
agent (bignum timestamps and expiries, NaN and 10**400 in a machine record, a 240 KB regex
tag, a reference-cycle workload in a Task, a 30-day-old manifest replayed with a fresh epoch,
a flood of fresh epochs of the current one) on the real topics and into the Machine DHT. The
honest agents stay up, count each drop by its reason, and go on placing and healing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import apply, kill_machine, manifest, real_pods, start_machines, wait_settled

from beemesh.lab.localmesh import LocalMesh, wait_for
from beemesh.scheduling.auction import Params

pytestmark = pytest.mark.slow

MACHINES = ("p1", "p2", "p3")
POISONER = Path(__file__).parents[1] / "support" / "poisoner.py"
WEB = "deployment/default/web"


@pytest.fixture
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("poison"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def test_a_poisoning_member_is_dropped_and_the_fleet_goes_on(mesh3: LocalMesh,
                                                             tmp_path: Path) -> None:
    apply(mesh3, tmp_path, "p1", manifest("Deployment", "web", 2, host_port=None))
    wait_settled(mesh3, "p1", WEB, 2)
    target = mesh3.agents["p1"]
    stored = wait_for(lambda: next((target.state_dir / "workloads").glob("*.cbor"), None), 10,
                      "p1 to keep the signed manifest on disk")
    before = target.metrics().get("messages_dropped", {})

    out = subprocess.run([sys.executable, str(POISONER), str(mesh3.fleet), target.addr,
                          str(stored)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout.strip().splitlines()[-1])["sent"]

    def dropped(reason: str) -> int:
        now = target.metrics().get("messages_dropped", {})
        return now.get(reason, 0) - before.get(reason, 0)

    wait_for(lambda: dropped("malformed") >= sent["malformed"], 30,
             f"p1 to drop the {sent['malformed']} malformed pills")
    assert dropped("stale") >= sent["stale"]  # the replayed old manifest
    # The flood: a handful of fresh epochs is followed, the rest refused at the limit.
    wait_for(lambda: dropped("limit") >= sent["flood"] - Params().max_tasks_per_replica, 60,
             "p1 to refuse the flood of fresh epochs")
    for name, agent in mesh3.agents.items():
        assert agent.alive(), f"{name} died"
        assert agent.metrics().get("messages_dropped", {}).get("unhandled", 0) == 0, name
        assert "Traceback" not in agent.log_text(), name

    # Still placing: a new workload lands and runs.
    apply(mesh3, tmp_path, "p2", manifest("Deployment", "after", 1, host_port=None))
    wait_settled(mesh3, "p2", "deployment/default/after", 1)
    # Still healing: the machine running a web replica dies; the replica comes back elsewhere.
    victim = real_pods(mesh3, WEB)[0][0]
    kill_machine(mesh3, victim)
    survivors = tuple(m for m in MACHINES if m != victim)
    wait_for(lambda: len(real_pods(mesh3, WEB, running_only=True)) == 2
             and all(m in survivors for m, _ in real_pods(mesh3, WEB)), 120,
             "the dead machine's replica to come back on a live one")
