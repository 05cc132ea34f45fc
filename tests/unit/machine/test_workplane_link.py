"""The agent's side of the work plane: what it tells the work plane about this machine."""

from __future__ import annotations

from beemesh.machine.workplane_link import machine_ips


def test_machine_ips() -> None:
    addrs = ["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/udp/4001/quic-v1",
             "/ip6/fd00::1/tcp/4001", "/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWabc"]
    assert machine_ips(addrs) == ["10.0.0.1", "fd00::1", "192.168.1.5"]


def test_machine_ips_skips_names_and_garbage() -> None:
    assert machine_ips(["/dns4/host.example/tcp/1", "", "garbage", "/ip4", "ip4/1.2.3.4"]) == []
    assert machine_ips([]) == []


