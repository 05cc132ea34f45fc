"""The workload-stream handshake and the listener hand-over messages (sans-IO)."""

from __future__ import annotations

import socket

import pytest

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.workplane import handoff, handshake
from beemesh.workplane.handshake import Refused
from beemesh.workplane.names import Listener
from beemesh.workplane.records import WORKLOAD_CERT

NOW = 1_800_000_000.0
MACHINE, OTHER = KeyPair.generate(), KeyPair.generate()


def cert(machine: KeyPair, key: KeyPair, workload: str = "deployment/default/front",
         ordinal: int = 0) -> bytes:
    return wire.seal(machine, WORKLOAD_CERT.name, {
        "machine": machine.peer_id, "peer_id": key.peer_id, "workload_id": workload,
        "ordinal": ordinal, "pod": f"front-{ordinal}", "task": "t1"}, NOW)


def hello(key: KeyPair, c: bytes, to_host: str = "H2", now: float = NOW,
          channel: dict[str, object] | None = None) -> bytes:
    return handshake.open_message(key, c, "service/default/back", 80, "TARGET", "H1", to_host,
                                  now, channel)


def test_open_names_the_certified_caller() -> None:
    key = KeyPair.generate()
    caller, body = handshake.check_open(handshake.Verifier(), hello(key, cert(MACHINE, key)),
                                        NOW, "H1", "H2", MACHINE.peer_id)
    assert (caller.workload_id, caller.namespace, caller.name, caller.machine) == (
        "deployment/default/front", "default", "front", MACHINE.peer_id)
    assert body["service"] == "service/default/back" and body["target"] == "TARGET"


@pytest.mark.parametrize("case, reason", [
    ("other connection", "untrusted"), ("other machine's cert", "untrusted"),
    ("cert of another key", "untrusted"), ("replayed", "replayed"), ("stale", "stale"),
    ("forged", "bad_signature"), ("garbage", "malformed"), ("short channel key", "malformed")])
def test_open_refusals(case: str, reason: str) -> None:
    key, v = KeyPair.generate(), handshake.Verifier()
    data, machine = hello(key, cert(MACHINE, key)), MACHINE.peer_id
    if case == "other connection":
        data = hello(key, cert(MACHINE, key), to_host="H3")
    elif case == "other machine's cert":
        machine = OTHER.peer_id
    elif case == "cert of another key":
        data = hello(key, cert(MACHINE, KeyPair.generate()))
    elif case == "replayed":
        handshake.check_open(v, data, NOW, "H1", "H2", machine)
    elif case == "stale":
        data = hello(key, cert(MACHINE, key), now=NOW - 3600)
    elif case == "forged":
        env = wire.decode(data)
        data = wire.encode(wire.Envelope(env.version, env.kind, env.sender, env.ts_ms,
                                         env.nonce, {**env.body, "port": 81}, env.signature))
    elif case == "garbage":
        data = b"\xff" * 40
    elif case == "short channel key":
        data = hello(key, cert(MACHINE, key), channel={"key": b"k" * 31, "aes": True})
    with pytest.raises(Refused) as e:
        handshake.check_open(v, data, NOW, "H1", "H2", machine)
    assert e.value.reason == reason


def test_answer_must_come_from_the_replica_asked_for() -> None:
    caller, server = KeyPair.generate(), KeyPair.generate()
    data = handshake.open_message(caller, cert(MACHINE, caller), "s", 80, server.peer_id,
                                  "H1", "H2", NOW, None)
    answer = handshake.accept_message(server, cert(OTHER, server, "deployment/default/back"),
                                      data, NOW, None)
    got, body = handshake.check_answer(handshake.Verifier(), answer, NOW, data, server.peer_id,
                                       OTHER.peer_id)
    assert got.workload_id == "deployment/default/back" and "channel" not in body
    with pytest.raises(Refused, match=r"replica other than"):
        handshake.check_answer(handshake.Verifier(), handshake.accept_message(
            server, cert(OTHER, server), data, NOW, None), NOW, data, "SOMEONE", OTHER.peer_id)
    other_open = handshake.open_message(caller, cert(MACHINE, caller), "s", 80, server.peer_id,
                                        "H1", "H2", NOW, None)
    with pytest.raises(Refused, match="another StreamOpen"):
        handshake.check_answer(handshake.Verifier(), answer, NOW, other_open, server.peer_id,
                               OTHER.peer_id)
    with pytest.raises(Refused) as e:
        handshake.check_answer(handshake.Verifier(), handshake.refusal("policy"), NOW, data,
                               server.peer_id, OTHER.peer_id)
    assert e.value.reason == "policy"


def test_a_channel_offer_travels_signed_and_is_checked() -> None:
    caller, server = KeyPair.generate(), KeyPair.generate()
    data = hello(caller, cert(MACHINE, caller), channel={"key": b"c" * 32, "aes": False})
    _, body = handshake.check_open(handshake.Verifier(), data, NOW, "H1", "H2", MACHINE.peer_id)
    assert body["channel"] == {"key": b"c" * 32, "aes": False}
    offer = {"key": b"s" * 32, "port": 4003, "token": b"t" * 16, "cipher": "aes-256-gcm"}
    answer = handshake.accept_message(server, cert(OTHER, server), data, NOW, offer)
    _, body = handshake.check_answer(handshake.Verifier(), answer, NOW, data, "TARGET"
                                     if False else server.peer_id, OTHER.peer_id)
    assert body["channel"] == offer
    for bad in ({**offer, "token": b"t" * 15}, {**offer, "key": b""}, {**offer, "port": 0},
                {**offer, "cipher": "rot13"}):
        answer = handshake.accept_message(server, cert(OTHER, server), data, NOW, bad)
        with pytest.raises(Refused) as e:
            handshake.check_answer(handshake.Verifier(), answer, NOW, data, server.peer_id,
                                   OTHER.peer_id)
        assert e.value.reason == "malformed"


def test_listener_messages_round_trip_and_malformed_ones_are_refused() -> None:
    li = Listener("web-0", "service/default/db", "127.64.1.2", 5432, 1, "deployment/default/web")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b, socket.socket() as s:
        handoff.send(a, handoff.open_message(li), s.fileno())
        data, fds, _, _ = socket.recv_fds(b, handoff.MAX_MESSAGE, 4)
        assert handoff.parse(data, fds) == li
        for fd in fds:
            socket.close(fd)
    assert handoff.parse(handoff.close_message(li.key), []) == li.key
    for bad, fds in ((b"{", []), (b'{"op": "open", "pod": 1}', [3]),
                     (handoff.open_message(li), []), (b'{"op": "close"}', [])):
        with pytest.raises(ValueError, match="bad listener message"):
            handoff.parse(bad, fds)


def test_the_caller_must_be_known_not_deleted_and_allowed() -> None:
    from beemesh.manifest import ServicePort, ServiceSpec

    spec = ServiceSpec("back", "default", (("app", "back"),), (ServicePort("", 80, 80),))
    front, other = "deployment/default/front", "deployment/tools/probe"
    handshake.check_caller(spec, front, {front, other}, frozenset())
    for workload, known, deleted, reason in (
            (front, {front}, frozenset({front}), "deleted"),
            (front, set(), frozenset(), "deleted"),  # forgotten after its tombstone
            (other, {front, other}, frozenset(), "policy")):
        with pytest.raises(Refused) as e:
            handshake.check_caller(spec, workload, known, deleted)
        assert e.value.reason == reason
