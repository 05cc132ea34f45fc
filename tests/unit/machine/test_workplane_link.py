"""The agent's side of the work plane: what it tells the work plane about this machine."""

from __future__ import annotations

from beemesh.machine.workplane_link import held_pods, machine_ips


def test_machine_ips() -> None:
    addrs = ["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/udp/4001/quic-v1",
             "/ip6/fd00::1/tcp/4001", "/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWabc"]
    assert machine_ips(addrs) == ["10.0.0.1", "fd00::1", "192.168.1.5"]


def test_machine_ips_skips_names_and_garbage() -> None:
    assert machine_ips(["/dns4/host.example/tcp/1", "", "garbage", "/ip4", "ip4/1.2.3.4"]) == []
    assert machine_ips([]) == []




def test_a_machine_vouches_on_the_work_plane_only_for_pods_the_auction_lets_it_claim() -> None:
    """A rogue's record listing a replica the auction placed elsewhere (a task followed here,
    whose rounds never picked it) holds nothing on the work plane: the ServiceRecords it
    certifies for that pod are refused (`not_held`). Its other pods, and this machine's own,
    count."""
    from machine_records_testlib import KEY_A, KEY_B, envelope, record_body

    from beemesh.membership.records import PodSummary, entry_from_envelope

    def pod(name: str, task: str) -> dict[str, object]:
        return {"workload": "deployment/default/web", "replica": 0, "task": task, "pod": name,
                "state": "running", "created": 1.0}

    pods = [pod("web-0", "t-placed-elsewhere"), pod("web-1", "t-its-own")]
    rogue = entry_from_envelope(envelope(KEY_B, 100.0, record_body(KEY_B, pods=pods)))
    mine = entry_from_envelope(envelope(KEY_A, 100.0, record_body(KEY_A, pods=pods)))

    def counts(machine: str, p: PodSummary) -> bool:
        return p.task != "t-placed-elsewhere"

    assert [h.pod for h in held_pods(rogue, KEY_A.peer_id, counts)] == ["web-1"]
    assert [h.pod for h in held_pods(mine, KEY_A.peer_id, counts)] == ["web-0", "web-1"]
