"""The data channel of workload streams: keys, frames, tokens (sans-IO), and carrying bytes
over real socket pairs."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

from beemesh.workplane import channel
from beemesh.workplane.channel import HEADER, MAX_FRAME, TAG, Broken

NOW = 1_800_000_000.0


CHACHA, AES = "chacha20-poly1305", "aes-256-gcm"


def keys_pair(cipher: str = CHACHA) -> tuple[channel.Keys, channel.Keys]:
    offer = channel.Offer.new()
    public, server = channel.server_keys(offer.public, cipher)
    return offer.keys(public, cipher), server


def frame(sealer: channel.Sealer, data: bytes) -> bytearray:
    buf = bytearray(HEADER.size + len(data) + TAG)
    buf[HEADER.size:HEADER.size + len(data)] = data
    return buf[:sealer.seal(memoryview(buf), len(data))]


def opened(opener: channel.Opener, data: bytearray) -> bytes:
    size = opener.length(memoryview(data)[:HEADER.size])
    body = memoryview(bytearray(data[HEADER.size:]))
    assert len(body) == size
    return bytes(body[:opener.open(body, size)])


def test_each_direction_has_its_own_key_known_to_both_ends_only() -> None:
    caller, server = keys_pair()
    assert caller.send == server.receive and caller.receive == server.send
    assert caller.send != caller.receive
    other, _ = keys_pair()
    assert other.send != caller.send  # a new exchange per stream


@pytest.mark.parametrize("cipher", [CHACHA, AES])
def test_frames_round_trip_and_an_empty_frame_ends_the_direction(cipher: str) -> None:
    caller, server = keys_pair(cipher)
    sealer = channel.Sealer(caller.send, cipher)
    opener = channel.Opener(server.receive, cipher)
    for data in (b"hello", os.urandom(MAX_FRAME), b""):
        assert opened(opener, frame(sealer, data)) == data


@pytest.mark.parametrize("attack", ["tampered", "replayed", "reordered", "wrong key",
                                    "reflected", "other cipher", "too long", "too short"])
def test_every_altered_frame_breaks_the_channel(attack: str) -> None:
    caller, server = keys_pair()
    sealer, opener = channel.Sealer(caller.send, CHACHA), channel.Opener(server.receive, CHACHA)
    first, second = frame(sealer, b"one"), frame(sealer, b"two")
    if attack == "tampered":
        first[-1] ^= 1
    elif attack == "replayed":
        opened(opener, first)
        second = first
    elif attack == "reordered":
        first = second
    elif attack == "wrong key":
        opener = channel.Opener(keys_pair()[1].receive, CHACHA)
    elif attack == "reflected":  # our own frame sent back to us
        opener = channel.Opener(caller.receive, CHACHA)
    elif attack == "other cipher":
        opener = channel.Opener(server.receive, AES)
    elif attack == "too long":
        HEADER.pack_into(first, 0, MAX_FRAME + TAG + 1)
    elif attack == "too short":
        HEADER.pack_into(first, 0, TAG - 1)
    with pytest.raises(Broken):
        opened(opener, first if attack != "replayed" else second)


def test_aes_only_when_both_cpus_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for mine in (True, False):
        monkeypatch.setattr(channel, "hardware_aes", lambda mine=mine: mine)
        assert channel.choose_cipher(True) == (AES if mine else CHACHA)
        assert channel.choose_cipher(False) == CHACHA


def test_a_token_is_used_once_expires_and_the_oldest_go_past_the_cap() -> None:
    tokens = channel.Tokens(cap=2)
    a = tokens.issue("A", NOW, 3)
    assert len(a) == channel.TOKEN_BYTES
    assert tokens.take(a, NOW + 1) == "A" and tokens.take(a, NOW + 1) is None
    b = tokens.issue("B", NOW, 3)
    assert tokens.take(b, NOW + 3) is None  # expired
    c, d, e = (tokens.issue(x, NOW, 3) for x in "CDE")
    assert tokens.take(c, NOW) is None and tokens.take(e, NOW) == "E"
    tokens.withdraw(d)
    assert tokens.take(d, NOW) is None and not tokens.waiting


def test_the_channel_listens_beside_the_first_tcp_listen_address() -> None:
    assert channel.listen_address(["/ip4/0.0.0.0/tcp/4002"]) == ("0.0.0.0", 4003)
    assert channel.listen_address(["/ip4/127.0.0.1/tcp/0"]) == ("127.0.0.1", 0)
    assert channel.listen_address(["/ip6/::/udp/1/quic", "/ip6/::1/tcp/9"]) == ("::1", 10)
    assert channel.listen_address(["/ip4/1.2.3.4/udp/4002"]) is None


# ---- carrying, over real socket pairs -------------------------------------------------


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def read_all(s: trio.SocketStream) -> bytes:
    got = bytearray()
    while data := await s.receive_some(1 << 20):
        got += data
    return bytes(got)


@pytest.mark.parametrize("cipher", [CHACHA, AES])
def test_two_channels_carry_both_ways_with_half_closes(cipher: str) -> None:
    async def main() -> None:
        caller, server = keys_pair(cipher)
        app_a, pod_a = stream_pair()  # the calling app and its work plane's side
        pod_b, app_b = stream_pair()  # the serving work plane's side and the serving app
        wire_a, wire_b = stream_pair()  # the channel's connection
        counted: dict[str, int] = {}

        def count(counter: str, n: int) -> None:
            counted[counter] = counted.get(counter, 0) + n

        request, answer = os.urandom(3 * MAX_FRAME + 5), os.urandom(100_000)
        got: dict[str, bytes] = {}

        async def send(app: trio.SocketStream, data: bytes) -> None:
            await app.send_all(data)
            await app.send_eof()

        async def read(app: trio.SocketStream, name: str) -> None:
            got[name] = await read_all(app)

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(channel.Channel(wire_a, caller).carry, pod_a, count)
                n.start_soon(channel.Channel(wire_b, server).carry, pod_b, count)
                n.start_soon(read, app_b, "request")
                await send(app_a, request)
                n.start_soon(read, app_a, "answer")
                await send(app_b, answer)
        # each end came through, and each half-close ended only its own direction
        assert got == {"request": request, "answer": answer}
        assert counted == {"bytes_out": len(request) + len(answer),
                           "bytes_in": len(request) + len(answer)}

    trio.run(main)


def test_a_channel_cut_without_an_end_frame_breaks_the_stream() -> None:
    async def main() -> None:
        _, server = keys_pair()
        pod_b, app_b = stream_pair()
        wire_a, wire_b = stream_pair()
        await wire_a.aclose()  # an attacker's FIN: no end frame
        with trio.fail_after(5):  # both directions end, though the app has not ended its own
            await channel.Channel(wire_b, server).carry(pod_b, lambda c, k: None)
        with trio.move_on_after(0.2) as waited:
            await app_b.receive_some(10)  # no clean end was passed on to the app
        assert waited.cancelled_caught

    trio.run(main)


class FakeStream:
    """What `Arrival.wait` reads of a libp2p stream: one byte, or nothing."""

    def __init__(self, said: bytes | None) -> None:
        self.said = said

    async def read(self, n: int) -> bytes:
        if self.said is None:
            await trio.sleep_forever()
        return self.said or b""


def test_the_listener_hands_a_connection_only_to_the_stream_that_issued_its_token() -> None:
    async def main() -> None:
        tokens, refused = channel.Tokens(), []
        listener = channel.Listener(tokens, refused.append, 0.5, lambda: NOW)
        async with trio.open_nursery() as n:
            port = await n.start(listener.run, ("127.0.0.1", 0))
            arrival = channel.Arrival()
            token = tokens.issue(arrival, NOW, 3)
            stranger = await trio.open_tcp_stream("127.0.0.1", port)
            await stranger.send_all(os.urandom(channel.TOKEN_BYTES))
            assert await stranger.receive_some(10) == b""  # closed at once
            silent = await trio.open_tcp_stream("127.0.0.1", port)  # shows nothing in time
            assert await silent.receive_some(10) == b""
            caller = await trio.open_tcp_stream("127.0.0.1", port)
            await caller.send_all(token)
            conn = await arrival.wait(FakeStream(b""), 3)  # the caller closed its stream
            assert conn is not None and not arrival.here
            await conn.send_all(b"hi")
            assert await caller.receive_some(10) == b"hi"
            assert refused == ["untrusted", "untrusted"]
            n.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("said, here", [(channel.CARRY_HERE, True), (b"?", False),
                                        (None, False)])
def test_the_caller_may_carry_on_the_libp2p_stream_instead(said: Any, here: bool) -> None:
    async def main() -> None:
        arrival = channel.Arrival()
        assert await arrival.wait(FakeStream(said), 0.2) is None
        assert arrival.here is here

    trio.run(main)
