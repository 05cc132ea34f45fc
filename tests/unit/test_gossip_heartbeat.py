"""GossipSub keeps the heartbeat Beemesh sets. py-libp2p's "adaptive gossip" rated the mesh
every 30 s and, at a health under 0.7 (any small or quiet mesh), set the heartbeat to 60 s:
the message cache, shifted once per heartbeat, then held 5 minutes of messages instead of
5 heartbeats' worth, and mesh repair ran once a minute. With it off, the timestamp it notes
for every message must not pile up either. Two real hosts in one process."""

from __future__ import annotations

import trio

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

TOPIC = "heartbeat-test"
HEARTBEAT_S = 0.1


def host() -> MeshHost:
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="cd" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/heartbeat",
                                 dht_validators={}, heartbeat_s=HEARTBEAT_S))


def test_the_message_cache_empties_within_its_history_after_a_mesh_health_rating() -> None:
    a, b = host(), host()

    async def main() -> tuple[int, int, float]:
        async with a.running(), b.running():
            received = await a.subscribe(TOPIC, lambda *_: True)
            await b.subscribe(TOPIC, lambda *_: True)
            await b.connect(a.addrs()[0])
            with trio.fail_after(10):
                while True:  # until the mesh carries messages
                    await b.publish(TOPIC, b"warm")
                    with trio.move_on_after(0.3):
                        await received.get()
                        break
            for g in (a.gossipsub, b.gossipsub):
                g.last_health_update = 0  # rate the mesh at the next heartbeat, not in 30 s
            await trio.sleep(3 * HEARTBEAT_S)
            for i in range(20):
                await b.publish(TOPIC, b"message %d" % i)
            with trio.fail_after(5):
                for _ in range(20):
                    await received.get()
            cached = len(a.gossipsub.mcache.msgs)
            # adaptive gossip's per-message timestamps, trimmed only by its health rating
            noted = sum(len(t) for g in (a.gossipsub, b.gossipsub)
                        for t in g.recent_message_deliveries.values())
            assert noted == 0, f"{noted} delivery times kept with adaptive gossip off"
            # gossip_history (5) heartbeats later, every message has left the cache
            await trio.sleep(a.gossipsub.mcache.history_size * HEARTBEAT_S + 1)
            return cached, len(a.gossipsub.mcache.msgs), a.gossipsub.heartbeat_interval

    cached, left, interval = trio.run(main)
    assert cached >= 20
    assert left == 0, f"{left} messages still cached: the heartbeat slowed down"
    assert interval == HEARTBEAT_S
