"""Catching up with a peer's view of the fleet (anti-entropy; the pure parts are sans-IO).

Records travel on pub/sub only when they change, so a machine that joins, or misses a message,
or comes back from a partition, pulls what it lacks: it asks one connected peer for a digest
(machine -> timestamp of the record it holds, and the machines it holds withdrawn or dead),
then for the signed records newer than its own (each checked like any record: signature,
signer, admission). When the peer lacks this machine's current record or holds it dead, this
machine announces itself again: that is how both sides of a healed partition find each other.
The asker also says which of the asked peer's records it holds (`DigestAsk.seen`): a machine
held dead by a peer hears it from that peer's next question.

A digest is O(fleet) bytes; it is asked at join, when a peer is admitted (at most every
`MIN_GAP_S`) and every `EVERY_S` of one random peer. (At fleets of tens of thousands a digest
of bucket hashes would replace the flat map: docs/architecture.md, "Membership".)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from beemesh import cbor

RECORDS_PROTOCOL = "/beemesh/machine-records/1.0.0"
EVERY_S = 15.0
MIN_GAP_S = 2.0
TOLD_GAP_S = 10.0  # announcing again because an asker lacks our record: at most this often
MAX_WANTED = 256  # records asked for in one request
MAX_DIGEST = 200_000  # machines in a digest
MAX_DIGEST_BYTES = 16 * 1024 * 1024
MAX_ANSWER_BYTES = 32 * 1024 * 1024
MAX_PEER_ID = 128


class DigestError(ValueError):
    """A request or answer that is not what this protocol says."""


@dataclass(frozen=True)
class Digest:
    held: Mapping[str, int]  # machine -> ts (ms) of the record held
    gone: Mapping[str, int]  # machine -> ts (ms) of the withdrawal or verdict held


@dataclass(frozen=True)
class Plan:
    wanted: list[str]  # records to ask for
    announce: bool  # the peer lacks this machine's current record


def encode_digest(d: Digest) -> bytes:
    return cbor2.dumps({"held": dict(d.held), "gone": dict(d.gone)}, canonical=True)


def decode_digest(data: bytes) -> Digest:
    try:
        body = cbor.loads(data)
    except ValueError as e:
        raise DigestError(f"digest is not plain CBOR: {e}") from None
    if not isinstance(body, dict) or set(body) != {"held", "gone"}:
        raise DigestError("digest must be a map of 'held' and 'gone'")
    maps = [body["held"], body["gone"]]
    if not all(isinstance(m, dict) for m in maps) or sum(map(len, maps)) > MAX_DIGEST:
        raise DigestError(f"digest must hold two maps of at most {MAX_DIGEST} machines")
    for m in maps:
        for peer, ts in m.items():
            if len(peer) > MAX_PEER_ID or not isinstance(ts, int) or isinstance(ts, bool) \
                    or ts < 0:
                raise DigestError(f"digest entry {peer[:MAX_PEER_ID]!r}: {ts!r} is no timestamp")
    return Digest(body["held"], body["gone"])


@dataclass(frozen=True)
class DigestAsk:
    """A request for the digest; `seen`: the timestamp (ms) of the asked peer's own record
    the asker holds, 0 when it holds none (never heard, or holds the peer dead): the asked
    peer announces itself again when that is older than its current record."""
    seen: int


def encode_request(ask: DigestAsk | list[str]) -> bytes:
    """A digest request, or one for these machines' records."""
    body = {"digest": ask.seen} if isinstance(ask, DigestAsk) else {"want": ask}
    return cbor2.dumps(body, canonical=True)


def decode_request(data: bytes) -> DigestAsk | list[str]:
    try:
        body: Any = cbor.loads(data)
    except ValueError as e:
        raise DigestError(f"request is not plain CBOR: {e}") from None
    if not isinstance(body, dict) or len(body) != 1:
        raise DigestError("request must be a map of one key, 'digest' or 'want'")
    seen = body.get("digest")
    if isinstance(seen, int) and not isinstance(seen, bool) and seen >= 0:
        return DigestAsk(seen)
    wanted = body.get("want")
    if not isinstance(wanted, list) or len(wanted) > MAX_WANTED \
            or not all(isinstance(p, str) and len(p) <= MAX_PEER_ID for p in wanted):
        raise DigestError(f"request must be {{'digest': timestamp}} or {{'want': [at most "
                          f"{MAX_WANTED} peer ids]}}")
    return wanted


def encode_records(records: list[bytes]) -> bytes:
    return cbor2.dumps(records, canonical=True)


def decode_records(data: bytes) -> list[bytes]:
    try:
        body = cbor.loads(data)
    except ValueError as e:
        raise DigestError(f"records are not plain CBOR: {e}") from None
    if not isinstance(body, list) or len(body) > MAX_WANTED \
            or not all(isinstance(r, bytes) for r in body):
        raise DigestError(f"records must be a list of at most {MAX_WANTED} byte strings")
    return body


def plan(mine: Digest, theirs: Digest, me: str, my_ts: int) -> Plan:
    """What to ask of a peer whose digest is `theirs`, and whether to announce again."""
    wanted = []
    for peer, ts in theirs.held.items():
        if peer == me:
            continue
        if ts > mine.held.get(peer, -1) and ts > mine.gone.get(peer, -1):
            wanted.append(peer)
    announce = theirs.held.get(me, -1) < my_ts
    return Plan(sorted(wanted)[:MAX_WANTED], announce)
