"""Bytes on the wire per message, from real envelopes (`wire.seal`) plus framing assumptions.

- Probe and ack: a small CBOR map ({"seq": n} and {"seq": n, "ok": true}) on a stream the
  machines keep open; Noise already authenticates it, so no envelope or signature.
- Accusation: a machine-signed envelope {"target", "incarnation", "confirm"} on pub/sub.
- Refutation / re-announcement: the machine's signed MachineRecord (a machine with two
  addresses, three labels, its operator certificate and no pods; each pod adds ~150 bytes).
- Framing per message: yamux header 12 + Noise tag 16 + Noise length 2 bytes; a pub/sub
  message adds the gossipsub RPC around it (topic, from, seqno, protobuf tags: ~80 bytes).
  TCP/IP headers are left out (messages share segments and acks under load).
"""

from __future__ import annotations

import functools

import cbor2

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.membership.certs import issue_machine_cert
from beemesh.membership.records import MACHINE_RECORD, MachineRecord, RecordCapacity

STREAM_FRAMING = 12 + 16 + 2
GOSSIP_RPC = 80
T0 = 1_000_000.0


@functools.cache
def sizes() -> dict[str, int]:
    """Bytes each message kind costs on one link."""
    operator, key = KeyPair(b"\x01" * 32), KeyPair(b"\x02" * 32)
    labels = {"site": "berlin-3", "zone": "b", "gpu": "none"}
    cert = issue_machine_cert(operator, key.peer_id, labels, T0 + 86_400 * 365, T0)
    record = MachineRecord(
        peer_id=key.peer_id,
        addrs=("/ip4/10.20.30.40/tcp/7701", "/ip6/fd00::1:2:3:4/tcp/7701"),
        arch="x86_64", labels=labels,
        capacity=RecordCapacity(8000, 16 * 2**30, 11 * 2**30, "/sys/fs/cgroup/beemesh"),
        cert=cert)
    rec = len(wire.seal(key, MACHINE_RECORD.name, record.to_body(), T0))
    accuse = len(wire.seal(key, "Accuse", {"target": key.peer_id,
                                           "incarnation": int(T0 * 1000), "confirm": False}, T0))
    probe = len(cbor2.dumps({"seq": 123_456}))
    ack = len(cbor2.dumps({"seq": 123_456, "ok": True}))
    return {"probe": probe + STREAM_FRAMING, "ack": ack + STREAM_FRAMING,
            "accuse": accuse + STREAM_FRAMING + GOSSIP_RPC,
            "record": rec + STREAM_FRAMING + GOSSIP_RPC}
