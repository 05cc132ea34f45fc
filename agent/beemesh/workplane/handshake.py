"""The handshake that opens a workload stream between machines (sans-IO: `now` is passed in).

A workload stream is a libp2p stream (`/beemesh/workload-stream/1.0.0`) between two work-plane
hosts: Noise, keyed by the hosts, encrypts it, and only hosts that live machine records announce
get a connection at all. On top, both ends prove a replica identity with their own workload
keys, in one round trip, before any application byte moves:

1. the caller sends `StreamOpen`, signed by the calling replica's workload key, carrying the
   WorkloadCert its machine issued for that key, the Service and port, the target replica's
   workload Peer ID, and both hosts' Peer IDs (so the message means nothing on any other
   connection);
2. the serving work plane checks the signature, the certificate (issued by the very machine
   whose work plane opened the stream, a live one, still listing that pod), that the caller's
   workload is not deleted and that the Service's policy allows it (`ServiceSpec.allows`), that
   the target is a ready replica of the Service here, and answers `StreamAccept`, signed by the
   target replica's key with its certificate and a digest of the `StreamOpen`; or a refusal;
3. the caller checks that the answer is signed by the replica it chose, certified by the
   machine whose work plane answered, for a workload the Service selects.

Keys never leave the work plane; each replica's key is its stream identity (a Noise session
per replica would add a handshake per stream and a connection per replica pair, for no party
that could tell the difference: the keys of all replicas of a machine live in one process).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

from beemesh import cbor, schema, wire
from beemesh.identity import KeyPair
from beemesh.identity import peer_id as peer_id_of
from beemesh.manifest.service import ServiceSpec
from beemesh.workplane.channel import CIPHERS, KEY_BYTES, TOKEN_BYTES
from beemesh.workplane.records import WORKLOAD_CERT

PROTOCOL = "/beemesh/workload-stream/1.0.0"
REFUSALS = ("policy", "deleted", "untrusted", "not_held", "no_replica", "no_port", "malformed",
            "bad_signature", "stale", "replayed", "unreachable", "no_endpoint", "not_ready",
            "unhandled", "busy", "broken")

STREAM_OPEN = wire.Kind("StreamOpen", wire.WORKLOAD, schema.Struct(required={
    "peer_id": str, "cert": bytes, "service": str, "port": schema.PORT_NUMBER, "target": str,
    "from_host": str, "to_host": str},
    optional={"channel": schema.Struct(required={"key": bytes, "aes": bool})}),
    names_signer="peer_id")
CHANNEL = schema.Struct(required={"key": bytes, "port": schema.Int(1, 65535), "token": bytes,
                                  "cipher": str})
STREAM_ACCEPT = wire.Kind("StreamAccept", wire.WORKLOAD, schema.Struct(required={
    "peer_id": str, "cert": bytes, "open": bytes}, optional={"channel": CHANNEL}),
    names_signer="peer_id")


class Refused(Exception):
    """A stream refused; `reason` is one of REFUSALS (what metrics count)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason if reason in REFUSALS else "malformed"
        self.detail = detail


@dataclass(frozen=True)
class Replica:
    """A replica identity proven on a stream: its key, and what its certificate says."""

    peer_id: str
    workload_id: str
    ordinal: int
    pod: str
    task: str
    machine: str

    @property
    def namespace(self) -> str:
        return self.workload_id.split("/")[1]

    @property
    def name(self) -> str:
        return self.workload_id.split("/")[2]


class Verifier:
    def __init__(self) -> None:
        self.messages = wire.Verifier({k.name: k for k in (STREAM_OPEN, STREAM_ACCEPT)}, dict)
        self.certs = wire.Verifier({WORKLOAD_CERT.name: WORKLOAD_CERT}, dict,
                                   replay=self.messages.replay)

    def _message(self, data: bytes, kind: wire.Kind, now: float) -> wire.Envelope:
        try:
            env = self.messages.check(data, now)
        except wire.Rejected as e:
            raise Refused(e.reason, e.detail) from None
        if env.kind != kind.name:
            raise Refused("malformed", f"expected {kind.name}, got {env.kind}")
        return env

    def replica(self, env: wire.Envelope, machine: str | None) -> Replica:
        """The certified replica that signed `env`; its certificate must come from `machine`
        (the machine whose work plane is on the other end)."""
        try:
            cert = self.certs.authenticate(env.body["cert"]).body
        except wire.Rejected as e:
            raise Refused("untrusted", f"certificate: {e.detail}") from None
        if cert["peer_id"] != peer_id_of(env.sender):
            raise Refused("untrusted", "certificate is for another key")
        if machine is None or cert["machine"] != machine:
            raise Refused("untrusted", "certificate from a machine other than the stream's")
        return Replica(cert["peer_id"], cert["workload_id"], cert["ordinal"], cert["pod"],
                       cert["task"], cert["machine"])


def open_message(key: KeyPair, cert: bytes, service_id: str, port: int, target: str,
                 from_host: str, to_host: str, now: float,
                 channel: dict[str, Any] | None) -> bytes:
    """`channel`: {"key": the caller's public key for a data channel (`channel`), "aes":
    whether its CPU has AES instructions}, None for none."""
    body: dict[str, Any] = {
        "peer_id": key.peer_id, "cert": cert, "service": service_id, "port": port,
        "target": target, "from_host": from_host, "to_host": to_host}
    if channel is not None:
        body["channel"] = channel
    return wire.seal(key, STREAM_OPEN.name, body, now)


def check_open(v: Verifier, data: bytes, now: float, from_host: str, to_host: str,
               machine: str | None) -> tuple[Replica, dict[str, Any]]:
    """The caller and what it asks for (`service`, `port`, `target`), checked as step 2 says
    up to the certificate; policy, holding and the target are the caller's to check."""
    env = v._message(data, STREAM_OPEN, now)
    if (env.body["from_host"], env.body["to_host"]) != (from_host, to_host):
        raise Refused("untrusted", "StreamOpen made for another connection")
    if "channel" in env.body and len(env.body["channel"]["key"]) != KEY_BYTES:
        raise Refused("malformed", f"a channel key is {KEY_BYTES} bytes")
    return v.replica(env, machine), env.body


def check_caller(spec: ServiceSpec, workload_id: str, known: set[str],
                 deleted: frozenset[str]) -> None:
    """Refused unless the caller's workload is one this machine knows, not deleted, and the
    Service's policy allows it."""
    if workload_id in deleted or workload_id not in known:
        raise Refused("deleted", f"{workload_id} is deleted")
    _, ns, name = workload_id.split("/")
    if not spec.allows(ns, name):
        raise Refused("policy", f"{spec.service_id} does not allow {workload_id}")


def accept_message(key: KeyPair, cert: bytes, open_data: bytes, now: float,
                   channel: dict[str, Any] | None) -> bytes:
    """`channel`: {"key", "port", "token", "cipher"} of the data channel offered, None for
    none."""
    body: dict[str, Any] = {"peer_id": key.peer_id, "cert": cert,
                            "open": hashlib.sha256(open_data).digest()}
    if channel is not None:
        body["channel"] = channel
    return wire.seal(key, STREAM_ACCEPT.name, body, now)


def refusal(reason: str) -> bytes:
    return cbor2.dumps({"refused": reason})


def check_answer(v: Verifier, data: bytes, now: float, open_data: bytes, target: str,
                 machine: str | None) -> tuple[Replica, dict[str, Any]]:
    """The serving replica and its answer's body, from its answer to our StreamOpen (Refused
    if it refused)."""
    try:
        shape = cbor.loads(data)
    except cbor.CBORError:
        raise Refused("malformed", "unreadable answer") from None
    if isinstance(shape, dict) and "refused" in shape:
        reason = shape["refused"]
        raise Refused(reason if isinstance(reason, str) else "malformed", "refused by the server")
    env = v._message(data, STREAM_ACCEPT, now)
    if env.body["open"] != hashlib.sha256(open_data).digest():
        raise Refused("untrusted", "StreamAccept answers another StreamOpen")
    if env.body["peer_id"] != target:
        raise Refused("untrusted", "answered by a replica other than the one asked for")
    offered = env.body.get("channel")
    if offered is not None and ((len(offered["key"]), len(offered["token"])) != (
            KEY_BYTES, TOKEN_BYTES) or offered["cipher"] not in CIPHERS):
        raise Refused("malformed", "a channel offer with a key or token of the wrong size, "
                      "or an unknown cipher")
    return v.replica(env, machine), env.body
