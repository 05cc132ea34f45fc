"""An admitted but rogue machine can do no more than its share (issue 16, on real agents).

Three real machines (agent, work plane, Podman each) run a Deployment. A fourth machine, which
the operator admitted (tests/support/rogue.py), connects to all three and lies on the real
topics and in the Machine DHT: bids of SCORE_MAX for every task being placed, lease hints for
tasks it did not win (an hour ahead), a forged `Deployed` for every running replica, a record
claiming those replicas (and one under an invented task id) and listing 16 black-hole
addresses, stale records, labels its certificate does not grant, ten throwaway keys
publishing a record each, and a second admitted key that publishes one record listing 16
black-hole addresses and leaves (every agent keeps dialling it). The honest agents count each
refusal by its reason in their metrics, keep the replicas where they run, place a new
StatefulSet (no quorum loss from the throwaways) and heal a dead machine's replica while the
rogue goes on bidding and leasing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import apply, kill_machine, manifest, real_pods, start_machines, wait_settled
from phased import Phased

from beemesh.config import AgentConfig
from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for

pytestmark = pytest.mark.slow

MACHINES = ("r1", "r2", "r3")
ROGUE = Path(__file__).parents[1] / "support" / "rogue.py"
WEB = "deployment/default/web"
AFTER = "statefulset/default/after"
LATENESS_OK_S = AgentConfig().heal_pause_late_s  # heals pause while records are later
ARRIVAL_GRACE_S = AgentConfig().dead_after_s  # claims on arrival count (`bounds.Claims`)


@pytest.fixture
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("rogue"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def dropped(mesh: LocalMesh, name: str, before: dict[str, dict[str, int]]) -> dict[str, int]:
    """Messages `name` dropped since `before`, by reason."""
    now = mesh.agents[name].metrics().get("messages_dropped", {})
    return {r: n - before[name].get(r, 0) for r, n in now.items() if n > before[name].get(r, 0)}


def test_an_admitted_rogue_can_do_no_more_than_its_share(mesh3: LocalMesh,
                                                         tmp_path: Path) -> None:
    apply(mesh3, tmp_path, "r1", manifest("Deployment", "web", 2, host_port=None))
    placed = wait_settled(mesh3, "r1", WEB, 2)
    before = {n: a.metrics().get("messages_dropped", {}) for n, a in mesh3.agents.items()}
    honest = {a.peer_id for a in mesh3.agents.values()}
    web_pods = {p["pod"]: p for p in mesh3.agents["r1"].get_json("get", "pods")
                if p["workload"] == WEB}
    victim = placed[0][0]
    kept = next(p for m, p in placed if m != victim)

    rogue = Phased(ROGUE, str(mesh3.fleet), ",".join(a.addr for a in mesh3.agents.values()))
    try:
        me = rogue.phase(60)["peer_id"]
        # Admitted: every honest agent lists it.
        for name, agent in mesh3.agents.items():
            wait_for(lambda agent=agent: me in agent.node_ids(), 30, f"{name} to list the rogue")
        # What a machine lists on arrival it may have brought from the far side of a partition
        # (`bounds.Claims`); the rogue invents its replica while in view all along.
        time.sleep(ARRIVAL_GRACE_S + 1)
        rogue.send(json.dumps({"do": "attack", "invent": [WEB, web_pods[kept]["replica"]]}))
        attack = rogue.phase(120)
        sent = attack["sent"]
        # It heard both replicas in the honest records: a Deployed and a claim for each.
        assert sent["deployed_forged"] == 2 and sent["claims"] == 3, sent
        assert sent["workplanes_joined"] == len(MACHINES), sent

        # Refused by reason, on every honest agent (the rogue speaks to each directly).
        for name in MACHINES:
            wait_for(lambda name=name: all(dropped(mesh3, name, before).get(r, 0) >= n
                                           for r, n in (("not_winner", 2), ("stale", 5),
                                                        ("labels", 1), ("unadmitted", 10),
                                                        ("claim", 3))),
                     60, f"{name} to refuse the forged Deployed, stale records, labels, "
                     f"throwaways and claims: {dropped(mesh3, name, before)}")
        # (5) throwaway keys are nobody's members: not listed, not in members.json. (7) the
        # ghost was admitted, but its 16 black-hole addresses answer no probe: its monitors
        # accuse it and every agent declares it dead within `dead_after_s`.
        for name, agent in mesh3.agents.items():
            wait_for(lambda agent=agent: agent.node_ids() == honest | {me}, 30,
                     f"{name} to list the honest machines and the rogue only")
            assert agent.metrics().get("machines_dead", 0) >= 1, name
            members = (agent.state_dir / "members.json").read_text()
            assert not any(t in members for t in attack["throwaways"]), name
        # (3), (4) the replicas run where they ran, and no agent believes the rogue runs them
        # (nor the replica it invented: checked at the end, as the invention goes on).
        assert real_pods(mesh3, WEB, running_only=True) == placed
        for name, agent in mesh3.agents.items():
            rows = agent.get_json("get", "pods")
            assert not [r for r in rows if r["machine"] == me and r["pod"] in web_pods], name

        # (8) a ServiceRecord it certifies for a real replica it claims is refused (not_held),
        # and that replica's endpoints stay the real one's.
        real_forged, invented_forged = attack["service_records"]
        for name, agent in mesh3.agents.items():
            def refused(agent: AgentProc = agent) -> bool:
                return agent.metrics().get("workplane_messages_dropped", {}).get(
                    "not_held", 0) >= 1

            def listed(agent: AgentProc = agent) -> bool:
                return real_forged in json.dumps(agent.get_json("get", "endpoints", WEB))

            wait_for(lambda: refused() or listed(), 30,
                     f"{name}'s work plane to refuse the forged ServiceRecord, or list it")
            assert not listed(), f"{name} lists a ServiceRecord the rogue certified"
            assert refused(), name

        # (1), (2) still placing, while the rogue bids SCORE_MAX and leases every task: a
        # StatefulSet, which needs a quorum the throwaways would have taken away.
        apply(mesh3, tmp_path, "r2", manifest("StatefulSet", "after", 1, host_port=None))
        wait_settled(mesh3, "r2", AFTER, 1)
        for name in MACHINES:
            wait_for(lambda name=name: dropped(mesh3, name, before).get("score", 0) >= 1, 30,
                     f"{name} to refuse the rogue's bids: {dropped(mesh3, name, before)}")
        # (6) stale records fed no lateness
        for name, agent in mesh3.agents.items():
            assert agent.status()["lateness_s"] < LATENESS_OK_S, (name, agent.status())

        # Still healing: the machine running a web replica dies (its pods claimed by the rogue,
        # which also bids for and leases the heal task); the replica comes back elsewhere.
        kill_machine(mesh3, victim)
        survivors = tuple(m for m in MACHINES if m != victim)
        wait_for(lambda: len(real_pods(mesh3, WEB, running_only=True)) == 2
                 and all(m in survivors for m, _ in real_pods(mesh3, WEB)), 120,
                 "the dead machine's replica to come back on a live one")
        assert next((m, p) for m, p in placed if p == kept) in real_pods(mesh3, WEB)
        for name in survivors:  # the ghost stays dead: nobody dials its addresses any more
            assert attack["ghost"] not in mesh3.agents[name].node_ids(), name
        invented = {n: [r["pod"] for r in mesh3.agents[n].get_json("get", "pods")
                        if r["machine"] == me] for n in survivors}
        invented_endpoint = {n: invented_forged in json.dumps(mesh3.agents[n].get_json(
            "get", "endpoints", WEB)) for n in survivors}

        rogue.send(json.dumps({"do": "stop"}))
        done = rogue.phase(60)
        report = {n: dropped(mesh3, n, before) for n in survivors}
        print(json.dumps({"sent": done["sent"], "tasks_abused": len(done["tasks"]),
                          "dropped": report, "believed_claims": invented,
                          "invented_claim_endpoint_listed": invented_endpoint,
                          "workplane_dropped": {n: mesh3.agents[n].metrics().get(
                              "workplane_messages_dropped", {}) for n in survivors}}))
        for name in survivors:
            agent = mesh3.agents[name]
            assert agent.alive(), f"{name} died"
            assert not invented[name] and not invented_endpoint[name], (name, invented)
            assert "unhandled" not in report[name], (name, report[name])
            assert "Traceback" not in agent.log_text(), name
            assert report[name].get("not_winner", 0) >= 2, report[name]  # the forged Deployed
        # Lease hints are refused (not_winner) by the machines waiting for a round's winner;
        # a machine bidding, deploying or done ignores them without counting.
        assert sum(report[n].get("not_winner", 0) for n in survivors) > 2 * len(survivors)
    finally:
        rogue.close()


def test_a_rogue_whose_clock_crawls_does_not_make_the_fleet_late(tmp_path: Path) -> None:
    """Its records are signed ever further behind (each newer than the last, within the skew,
    so each accepted): it alone is late, and one late sender among on-time ones pauses no
    heal (`membership.lateness`)."""
    mesh = LocalMesh.create(tmp_path)
    try:
        seed = mesh.start("c1")
        for name in ("c2", "c3"):
            mesh.start(name, bootstrap=[seed.addr])
        rogue = Phased(ROGUE, str(mesh.fleet), ",".join(a.addr for a in mesh.agents.values()))
        try:
            rogue.phase(60)
            rogue.send(json.dumps({"do": "creep"}))
            rogue.phase(90)
            lateness = {n: a.status()["lateness_s"] for n, a in mesh.agents.items()}
        finally:
            rogue.close()
    finally:
        mesh.close()
    print(json.dumps({"lateness_after_creep": lateness}))
    assert all(v < LATENESS_OK_S for v in lateness.values()), lateness
