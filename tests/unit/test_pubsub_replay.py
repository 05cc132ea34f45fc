"""A message replayed after pub/sub's seen-message cache forgot it goes through the topic
validator again. py-libp2p answered it from a 5-minute validation cache with the first copy's
verdict, so Beemesh's replay and signature-age checks never saw the replay, and it was
delivered again. Two real hosts in one process."""

from __future__ import annotations

import trio
from libp2p.pubsub.pb import rpc_pb2

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

TOPIC = "replay-test"


def host() -> MeshHost:
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="cd" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/replay",
                                 dht_validators={}, heartbeat_s=0.1))


def test_a_replay_past_the_seen_cache_is_validated_again() -> None:
    a, b = host(), host()
    seen: list[bytes] = []

    def once_only(_forwarder: object, msg: rpc_pb2.Message) -> bool:
        """Beemesh's validators refuse a message they have seen (wire.Verifier's replay
        guard); this one refuses any second copy."""
        first = msg.data not in seen
        seen.append(msg.data)
        return first

    async def main() -> tuple[int, int]:
        async with a.running(), b.running():
            received = await a.subscribe(TOPIC, once_only)
            await b.subscribe(TOPIC, lambda *_: True)
            await b.connect(a.addrs()[0])
            with trio.fail_after(10):
                while True:  # until the mesh carries messages
                    await b.publish(TOPIC, b"signed once")
                    with trio.move_on_after(0.3):
                        msg = await received.get()
                        break
            a.pubsub.seen_messages.cache.clear()  # 2 minutes later: the id is forgotten
            await a.pubsub.push_msg(b.host.get_id(), msg)  # the same message, replayed
            delivered = 0
            with trio.move_on_after(0.5):
                await received.get()
                delivered = 1
            return seen.count(b"signed once"), delivered

    validated, delivered = trio.run(main)
    assert validated == 2, "the replay was answered from a cached verdict, not validated"
    assert delivered == 0, "the replay was delivered again"


def test_copies_of_a_refused_message_are_refused_without_judging_them_again() -> None:
    """A refused message is not marked seen: its copies from other peers are refused from the
    cache, not judged again (which would find its nonce used and call a copy a replay)."""
    a, b = host(), host()
    judged: list[rpc_pb2.Message] = []

    def refuse_all(_forwarder: object, msg: rpc_pb2.Message) -> bool:
        judged.append(msg)
        return False

    async def main() -> int:
        async with a.running(), b.running():
            received = await a.subscribe(TOPIC, refuse_all)
            await b.subscribe(TOPIC, lambda *_: True)
            await b.connect(a.addrs()[0])
            with trio.fail_after(10):
                while not judged:  # until the mesh carries messages
                    await b.publish(TOPIC, b"refused")
                    await trio.sleep(0.3)
            await trio.sleep(0.5)
            before = len(judged)
            await a.pubsub.push_msg(b.host.get_id(), judged[0])  # a copy, by another path
            with trio.move_on_after(0.3):
                await received.get()
                return -1
            return len(judged) - before

    assert trio.run(main) == 0
