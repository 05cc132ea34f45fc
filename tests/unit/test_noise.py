"""Our Noise (beemesh/mesh/noise.py) speaks py-libp2p's: the `noise` package (the Noise
library py-libp2p's own transport runs on) in both roles, then py-libp2p's whole `/noise`
transport in both roles, and every message that does not fit ends the handshake."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.security.noise.transport import Transport as Libp2pNoise
from nacl.bindings import crypto_box_keypair
from noise.connection import Keypair, NoiseConnection

from beemesh.mesh.noise import (
    MAX_NONCE,
    MAX_PLAINTEXT,
    PROTOCOL_NAME,
    CipherState,
    Handshake,
    NoiseError,
    NoiseTransport,
)


def reference(initiator: bool, private: bytes) -> NoiseConnection:
    state = NoiseConnection.from_name(PROTOCOL_NAME)
    state.set_keypair_from_private_bytes(Keypair.STATIC, private)
    state.set_as_initiator() if initiator else state.set_as_responder()
    state.start_handshake()
    return state


@pytest.mark.parametrize("we_initiate", [True, False])
def test_handshake_and_messages_match_the_noise_package(we_initiate: bool) -> None:
    ours_key, theirs_key = crypto_box_keypair(), crypto_box_keypair()
    ours = Handshake(initiator=we_initiate, static=ours_key)
    theirs = reference(not we_initiate, theirs_key[1])
    payloads = [b"", b"responder's payload", b"initiator's payload"]
    for step, payload in enumerate(payloads):
        if (step % 2 == 0) == we_initiate:
            assert theirs.read_message(ours.write_message(payload)) == payload
        else:
            assert ours.read_message(bytes(theirs.write_message(payload))) == payload
    assert ours.finished and theirs.handshake_finished
    assert ours.remote_static == theirs_key[0]
    send, receive = ours.split()
    for n in range(3):  # nonces advance alike
        assert theirs.decrypt(send.encrypt(None, b"ours %d" % n)) == b"ours %d" % n
        assert receive.decrypt(None, bytes(theirs.encrypt(b"theirs %d" % n))) == b"theirs %d" % n


class Raw:
    """One end of an in-memory byte stream, as a raw libp2p connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return await self.stream.receive_some(n)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()

    def get_remote_address(self) -> None:
        return None


@pytest.mark.parametrize("we_dial", [True, False])
def test_sessions_with_py_libp2p_noise_authenticate_and_carry_large_writes(we_dial: bool) -> None:
    ours_kp, theirs_kp = create_new_key_pair(), create_new_key_pair()
    ours = NoiseTransport(ours_kp)
    theirs = Libp2pNoise(theirs_kp, noise_privkey=create_x25519_key_pair().private_key)
    dialer, listener = (ours, theirs) if we_dial else (theirs, ours)
    listener_id = ID.from_pubkey((theirs_kp if we_dial else ours_kp).public_key)
    big = bytes(range(256)) * 1000  # 256,000 bytes: four Noise messages

    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        sessions: dict[str, object] = {}
        async with trio.open_nursery() as nursery:
            async def dial() -> None:
                sessions["dialer"] = await dialer.secure_outbound(Raw(a), listener_id)

            async def listen() -> None:
                sessions["listener"] = await listener.secure_inbound(Raw(b))
            nursery.start_soon(dial)
            nursery.start_soon(listen)
        out, into = sessions["dialer"], sessions["listener"]
        assert out.get_remote_peer() == listener_id  # type: ignore[attr-defined]
        assert into.get_remote_peer() == ID.from_pubkey(  # type: ignore[attr-defined]
            (ours_kp if we_dial else theirs_kp).public_key)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.write, big)  # type: ignore[attr-defined]
            got = bytearray()
            while len(got) < len(big):
                got += await into.read(len(big) - len(got))  # type: ignore[attr-defined]
        assert bytes(got) == big
        await into.write(b"back")  # type: ignore[attr-defined]
        assert await out.read(4) == b"back"  # type: ignore[attr-defined]

    trio.run(main)


def handshake_pair() -> tuple[Handshake, Handshake]:
    return (Handshake(initiator=True, static=crypto_box_keypair()),
            Handshake(initiator=False, static=crypto_box_keypair()))


def test_a_changed_byte_in_the_second_message_ends_the_handshake() -> None:
    initiator, responder = handshake_pair()
    responder.read_message(initiator.write_message(b""))
    message = bytearray(responder.write_message(b"payload"))
    message[40] ^= 1  # inside the encrypted static key
    with pytest.raises(NoiseError, match="authentication tag"):
        initiator.read_message(bytes(message))


def test_a_small_order_ephemeral_key_is_refused() -> None:
    _, responder = handshake_pair()
    responder.read_message(bytes(32))  # the all-zero point
    with pytest.raises(NoiseError, match="small order"):
        responder.write_message(b"")


def test_short_and_out_of_turn_messages_are_refused() -> None:
    initiator, responder = handshake_pair()
    with pytest.raises(NoiseError, match="out of turn"):
        responder.write_message(b"")
    with pytest.raises(NoiseError, match="has 31 bytes"):
        responder.read_message(bytes(31))
    responder.read_message(initiator.write_message(b""))
    with pytest.raises(NoiseError, match="has 95 bytes"):
        initiator.read_message(responder.write_message(b"")[:95])
    with pytest.raises(NoiseError, match="not finished"):
        initiator.split()


def test_a_spent_cipher_and_a_changed_transport_message_are_refused() -> None:
    key = bytes(range(32))
    sealed = CipherState(key).encrypt(None, b"x" * 10)
    with pytest.raises(NoiseError, match="authentication tag"):
        CipherState(key).decrypt(None, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    receive = CipherState(key)
    receive.decrypt(None, sealed)
    with pytest.raises(NoiseError, match="authentication tag"):  # replayed: next nonce
        receive.decrypt(None, sealed)
    spent = CipherState(key)
    spent.nonce = MAX_NONCE
    with pytest.raises(NoiseError, match="2\\^64"):
        spent.encrypt(None, b"")
    assert MAX_PLAINTEXT == 65519


def test_a_payload_not_signed_by_its_key_or_from_another_peer_is_refused() -> None:
    honest, impostor = create_new_key_pair(), create_new_key_pair()
    forged = NoiseTransport(honest)
    # the payload names honest's key but the static key it signs is another one
    forged._static = crypto_box_keypair()

    async def attempt(listener: NoiseTransport, expect: ID) -> None:
        a, b = trio.testing.memory_stream_pair()
        failed: list[NoiseError] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.secure_inbound, Raw(b))
            try:
                await NoiseTransport(create_new_key_pair()).secure_outbound(Raw(a), expect)
            except NoiseError as e:
                failed.append(e)
            nursery.cancel_scope.cancel()
        raise failed[0]

    with pytest.raises(NoiseError, match="not signed by its libp2p key"):
        trio.run(attempt, forged, ID.from_pubkey(honest.public_key))
    with pytest.raises(NoiseError, match="answered"):
        trio.run(attempt, NoiseTransport(impostor), ID.from_pubkey(honest.public_key))
