"""Hostile messages on the real topics are dropped, counted, and do not stall the agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from beemesh.identity import load_key
from beemesh.lab.localmesh import LocalMesh as Cluster
from beemesh.lab.localmesh import wait_for

pytestmark = pytest.mark.mesh

INJECTOR = Path(__file__).parents[1] / "support" / "injector.py"


def test_forged_unsigned_replayed_stale_oversized_garbage_are_dropped(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    wait_for(lambda: a.node_ids() == {a.peer_id, b.peer_id}, 15, "a and b to meet")
    victim = load_key(b.state_dir / "machine.key", "key", "").public_key

    out = subprocess.run([sys.executable, str(INJECTOR), str(cluster.fleet), a.addr,
                          victim.hex()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])

    dropped = a.metrics()["messages_dropped"]
    for reason in ("unsigned", "bad_signature", "untrusted", "stale", "oversized", "schema",
                   "unknown_kind", "replayed"):
        assert dropped.get(reason, 0) == report["sent"][reason], (reason, dropped)
    # The garbage burst is counted until gossipsub's peer score throttles the sender; what it
    # drops before our validator never reaches anyone either.
    assert dropped["malformed"] >= 3, dropped
    # A Task carrying a workload no trusted operator signed never reached the scheduler.
    assert not [e for e in a.get_json("events") if e["workload"] == "pod/default/rogue"]
    # The one well-formed record was accepted: the injector is a fleet member after all; it
    # left without a withdrawal and answers no probes, so liveness declares it dead.
    wait_for(lambda: a.metrics().get("machines_dead", 0) == 1, 15, "a to declare the injector dead")
    assert report["peer_id"] not in a.node_ids()
    # Nothing forged reached the view: b is still itself, with no injected labels.
    rows = {n["peer_id"]: n for n in a.nodes()}
    assert rows[b.peer_id]["labels"] == {}
    # b (which the injector may also reach through the DHT) kept a clean view too.
    assert {n["peer_id"]: n for n in b.nodes()}[b.peer_id]["labels"] == {}
    # Still serving, still probing each other.
    assert a.alive() and b.alive()
    acked = a.metrics()["probes"]["acked"]
    wait_for(lambda: a.metrics()["probes"]["acked"] > acked + 2, 10, "a to keep probing b")
    assert b.peer_id in a.node_ids()
    assert "Traceback" not in a.log_text()
