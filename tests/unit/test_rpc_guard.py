"""A pub/sub RPC py-libp2p cannot parse closes that peer's connection and nothing else
(MeshHost._read_rpcs_or_close): before, protobuf's DecodeError escaped py-libp2p's read loop
into the connection's nursery and ended the whole agent. Three real hosts."""

from __future__ import annotations

import trio
from libp2p.custom_types import TProtocol
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

TOPIC = "rpc-guard-test"


def host() -> MeshHost:
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="ef" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/rpc-guard",
                                 dht_validators={}))


def test_an_unparsable_rpc_closes_its_connection_and_the_host_keeps_gossiping() -> None:
    victim, hostile, honest = host(), host(), host()

    async def main() -> tuple[int, bool, bytes]:
        async with victim.running(), hostile.running(), honest.running():
            await victim.subscribe(TOPIC, lambda *_: True)
            received = await honest.subscribe(TOPIC, lambda *_: True)
            await hostile.connect(victim.addrs()[0])
            await honest.connect(victim.addrs()[0])
            stream = await hostile.host.new_stream(victim.peer_id, [TProtocol(PROTOCOL_ID_V11)])
            await stream.write(b"\x06" + b"\xff" * 6)  # a length, then no valid protobuf
            with trio.fail_after(10):
                while victim.rpc_failures == 0:
                    await trio.sleep(0.05)
                while hostile.peer_id in victim.connected():
                    await trio.sleep(0.05)
                while True:  # the victim still runs and gossips with the others
                    await victim.publish(TOPIC, b"still here")
                    with trio.move_on_after(0.5):
                        message = await received.get()
                        break
            return victim.rpc_failures, honest.peer_id in victim.connected(), message.data

    failures, honest_connected, data = trio.run(main)
    assert failures == 1 and honest_connected and data == b"still here"
