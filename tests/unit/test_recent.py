"""mesh/recent.Recent keeps the newest entries only; GossipSub's equivocation check gets one."""

from __future__ import annotations

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.mesh.recent import EQUIVOCATION_WINDOW, Recent


def test_adding_past_the_limit_drops_the_oldest_and_updates_keep_their_place() -> None:
    recent = Recent(3)
    for i in range(5):
        recent[i] = f"m{i}"
    assert list(recent.items()) == [(2, "m2"), (3, "m3"), (4, "m4")]
    recent[3] = "again"  # an existing key: nothing dropped
    assert list(recent) == [2, 3, 4] and recent[3] == "again"
    assert 0 not in recent and len(recent) == 3
    recent.renew(2, "renewed")  # now the newest: the next one added drops 3
    recent[5] = "m5"
    assert list(recent.items()) == [(4, "m4"), (2, "renewed"), (5, "m5")]


def test_the_gossipsub_of_a_mesh_host_keeps_a_bounded_equivocation_window() -> None:
    host = MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="ab" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/recent-test",
                                 dht_validators={}))
    window = host.gossipsub.equivocation_detection
    assert isinstance(window, Recent) and window.limit == EQUIVOCATION_WINDOW
