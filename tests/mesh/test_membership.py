"""Real agents in separate processes on loopback: membership, liveness, fleet isolation."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from beemesh.lab.localmesh import AgentExited, wait_for
from beemesh.lab.localmesh import LocalMesh as Cluster

pytestmark = pytest.mark.mesh

# A killed process closes its connections: its monitors miss two probes at once, accuse it,
# and the suspicion (3 s) runs out everywhere.
DETECT_S = 8


def test_five_agents_list_each_other_and_forget_a_killed_one(cluster: Cluster) -> None:
    seed = cluster.start("n1", extra=["--labels", "zone=a,role=seed"])
    others = [cluster.start(f"n{i}", bootstrap=[seed.addr]) for i in range(2, 6)]
    agents = [seed, *others]
    everyone = {a.peer_id for a in agents}

    for a in agents:
        wait_for(lambda a=a: a.node_ids() == everyone, 15, f"{a.name} to list all 5 machines")
    rows = {n["peer_id"]: n for n in seed.nodes()}
    assert rows[seed.peer_id]["self"] is True
    assert sum(n["self"] for n in rows.values()) == 1
    assert rows[seed.peer_id]["labels"] == {"zone": "a", "role": "seed"}
    for n in rows.values():
        assert n["arch"] and n["cpu"] > 0 and n["memory"] > 0

    victim = others[-1]
    cluster.stop(victim.name, signal.SIGKILL)
    survivors = agents[:-1]
    for a in survivors:
        wait_for(lambda a=a: victim.peer_id not in a.node_ids(), DETECT_S,
                 f"{a.name} to declare the killed machine dead")
    assert all(a.alive() for a in survivors)
    assert sum(a.metrics().get("machines_dead", 0) for a in survivors) == len(survivors)
    # nobody else was accused for long: every survivor still lists every survivor
    assert all(a.node_ids() == everyone - {victim.peer_id} for a in survivors)


def test_clean_stop_withdraws_removes_socket_and_keeps_identity(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    wait_for(lambda: b.peer_id in a.node_ids(), 15, "a to list b")

    took = cluster.stop("b", signal.SIGTERM)
    assert took < 5, f"agent took {took:.1f} s to stop on SIGTERM"
    assert b.proc.returncode == 0, b.log_text()
    assert not b.api.exists(), "API socket left behind"
    # The withdrawal travels on pub/sub, so a drops b well before its record TTL.
    wait_for(lambda: b.peer_id not in a.node_ids(), 3, "a to drop b after its withdrawal")

    b2 = cluster.start("b", bootstrap=[a.addr])
    assert b2.status()["peer_id"] == b.peer_id
    wait_for(lambda: b.peer_id in a.node_ids(), 15, "a to list b again after restart")


def test_agent_with_another_fleet_key_cannot_join(cluster: Cluster, tmp_path) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=[a.addr])
    from beemesh.lab.localmesh import beemesh

    beemesh("fleet", "init", "--out", str(tmp_path / "other-fleet"))
    stranger = cluster.start("stranger", bootstrap=[a.addr], fleet=tmp_path / "other-fleet")
    wait_for(lambda: b.peer_id in a.node_ids(), 15, "a to list b")
    # A handshake under the wrong network key never completes: let a few dials time out.
    wait_for(lambda: stranger.metrics().get("bootstrap_attempts", {}).get("failed", 0) >= 2,
             30, "the stranger to fail two dials")

    assert stranger.peer_id not in a.node_ids()
    assert stranger.peer_id not in b.node_ids()
    assert stranger.node_ids() == {stranger.peer_id}
    assert stranger.peer_id not in a.status()["connected_peers"]
    assert stranger.status()["connected_peers"] == []
    assert stranger.alive() and a.alive()


def test_an_agent_that_exits_is_reported_with_its_log_not_waited_for(cluster: Cluster) -> None:
    """Harness: machines started without waiting fail the wait on them at their exit."""
    with pytest.raises(AgentExited, match="agent bad exited") as e:
        cluster.start("bad", extra=["--no-such-flag"])
    assert "--no-such-flag" in str(e.value)
    late = cluster.start("late", extra=["--no-such-flag"], wait=False)
    with pytest.raises(AgentExited):
        wait_for(lambda: late.ensure_alive() or False, 60, "an answer that never comes")


def test_a_joining_machine_asks_its_peers_for_their_records(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    """Records are looked at once in 4 minutes here: each machine learns the other's record by
    asking it over /beemesh/machine-record/1.0.0 as soon as the connection is admitted."""
    quiet = tmp_path / "quiet.toml"
    quiet.write_text("record_refresh_s = 240\n")
    a = cluster.start("a", extra=["--config", str(quiet)])
    b = cluster.start("b", bootstrap=[a.addr], extra=["--config", str(quiet)])
    both = {a.peer_id, b.peer_id}
    wait_for(lambda: a.node_ids() == both and b.node_ids() == both, 30, "both to list both")
    for agent in (a, b):
        assert agent.metrics().get("records_fetched", 0) >= 1
        assert agent.status()["joined"]


def test_an_idle_fleet_is_quiet_and_a_late_joiner_catches_up(cluster: Cluster) -> None:
    """Records go out when they change, not on a timer; a machine that joins after the others
    went quiet pulls their records from the peer it joined through (`catch_up`), and they
    learn of it from its announcement."""
    seed = cluster.start("s")
    early = [seed, *(cluster.start(f"e{i}", bootstrap=[seed.addr]) for i in range(2))]
    ids = {a.peer_id for a in early}
    for a in early:
        wait_for(lambda a=a: a.node_ids() == ids, 20, f"{a.name} to list the first three")
    time.sleep(4)  # past one look at the record (every 3 s): the fleet is settled and quiet
    late = cluster.start("late", bootstrap=[seed.addr])
    everyone = ids | {late.peer_id}
    for a in [*early, late]:
        wait_for(lambda a=a: a.node_ids() == everyone, 20, f"{a.name} to list all four")
    assert late.metrics().get("catch_ups", {}).get("ok", 0) >= 1
    time.sleep(4)
    before = {a.name: a.metrics() for a in [*early, late]}
    time.sleep(8)
    for a in [*early, late]:
        now, then = a.metrics(), before[a.name]
        # no announcement in 8 idle seconds (the record is looked at every 3 s)
        assert now.get("records_announced") == then.get("records_announced"), a.name
        # while liveness probes the neighbours, every probe answered, nobody accused
        assert now["probes"]["acked"] > then["probes"]["acked"] + 8, a.name
        for result in ("late", "unreachable"):  # (a probe before its first connection may be)
            assert now["probes"].get(result, 0) == then["probes"].get(result, 0), now["probes"]
        assert "MachineAccuse" not in now.get("messages_accepted", {}), a.name
        assert now.get("machines_dead", 0) == 0


def test_a_machine_held_up_past_its_verdict_comes_back_and_blames_no_one(
        cluster: Cluster) -> None:
    """A process stopped for longer than its monitors wait (a swapping Raspberry Pi) is
    declared dead; when it runs again it learns of the verdict over the connections it never
    lost, announces a newer record and is listed again, and it holds its own lost seconds
    against no one (`Liveness.stalled`)."""
    seed = cluster.start("s")
    agents = [seed, *(cluster.start(f"h{i}", bootstrap=[seed.addr]) for i in range(2))]
    everyone = {a.peer_id for a in agents}
    for a in agents:
        wait_for(lambda a=a: a.node_ids() == everyone, 20, f"{a.name} to list all three")
    held, watchers = agents[-1], agents[:-1]
    time.sleep(4)  # past one look at the record (every 3 s): it has nothing new to announce
    held.proc.send_signal(signal.SIGSTOP)
    try:
        for a in watchers:
            wait_for(lambda a=a: held.peer_id not in a.node_ids(), DETECT_S + 4,
                     f"{a.name} to declare the stopped machine dead")
    finally:
        held.proc.send_signal(signal.SIGCONT)
    for a in watchers:
        wait_for(lambda a=a: a.node_ids() == everyone, 15, f"{a.name} to list it again")
    time.sleep(5)  # past the stopped machine's own probes' and suspicions' deadlines
    assert held.node_ids() == everyone
    assert held.metrics().get("machines_dead", 0) == 0
    assert held.metrics().get("stalls", 0) >= 1
    assert held.metrics()["records_announced"].get("again", 0) >= 1
    assert "held up for" in held.log_text()
