"""beemesh cordon / uncordon: operator-signed, seen mesh-wide, kept across agent restarts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from beemesh.lab.localmesh import BEEMESH, LocalMesh, wait_for

pytestmark = pytest.mark.mesh


def cordoned(agent, peer: str) -> bool:
    return {n["peer_id"]: n for n in agent.nodes()}[peer]["cordoned"]


def test_cordon_is_seen_everywhere_and_survives_restart(cluster: LocalMesh, tmp_path: Path) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    wait_for(lambda: a.node_ids() == {a.peer_id, b.peer_id} == b.node_ids(), 15, "a and b meet")

    done = cluster.operator(a.api, "cordon", b.peer_id[-10:])  # a unique suffix is enough
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{b.peer_id} cordoned"
    wait_for(lambda: cordoned(a, b.peer_id) and cordoned(b, b.peer_id), 10, "b shown cordoned")
    assert not cordoned(a, a.peer_id)
    assert "cordoned" in a.cli("nodes").stdout
    assert any(e["kind"] == "Cordoned" for e in b.get_json("events"))

    cluster.stop("b")
    b = cluster.start("b", bootstrap=[a.addr])
    wait_for(lambda: b.peer_id in a.node_ids() and cordoned(a, b.peer_id), 15,
             "b still cordoned after a restart")

    done = cluster.operator(b.api, "uncordon", b.peer_id)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not cordoned(a, b.peer_id), 10, "b ready again")


def test_cordon_needs_a_trusted_operator_and_a_known_node(cluster: LocalMesh,
                                                         tmp_path: Path) -> None:
    a = cluster.start("a")
    subprocess.run([*BEEMESH, "fleet", "init", "--out", str(tmp_path / "other")], check=True,
                   capture_output=True)
    done = cluster.operator(a.api, "cordon", a.peer_id, fleet=tmp_path / "other")
    assert done.returncode == 1 and "rejected (untrusted)" in done.stderr
    done = cluster.operator(a.api, "cordon", "nosuchnode")
    assert done.returncode == 1 and "matches 0 known machines" in done.stderr
    assert not cordoned(a, a.peer_id)
