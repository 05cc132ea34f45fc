"""Catching up with a peer's view of the fleet (anti-entropy; the pure parts are sans-IO).

Records travel on pub/sub only when they change, so a machine that joins, or misses a message,
or comes back from a partition, pulls what it lacks: it asks one connected peer for a digest
(machine -> timestamp of the record it holds, and the machines it holds withdrawn or dead),
then for the signed records newer than its own (each checked like any record: signature,
signer, admission). When the peer holds this machine dead (or withdrawn) and lacks its current
record, this machine announces itself again: that is how both sides of a healed partition find
each other. The ask says what the asker holds of the asked machine (`DigestAsk`), so the asked
one learns the same from either direction: a machine held dead by a peer it never lost its
connection to (a verdict while it was held up) hears it at that peer's next ask. A machine
declared dead that is still connected is asked at once (`membership.service`). A peer that
merely lacks a record pulls it (the asker from the digest; the asked one from its own next
catch-up, or at once when connected: `Membership._fetch_record`): announcing to the whole
fleet for one peer's gap made 40 agents starting at once announce several times a second.

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
class DigestAsk:
    """A request for the digest, saying what the asker holds of the asked machine: the ts
    (ms) of its record (`held`) and of its verdict or withdrawal (`gone`); -1: none. A bare
    `{"digest": true}` (an older agent) says nothing and draws no announcement."""
    held: int = -1
    gone: int = -1
    says: bool = True

    def announce_above(self, my_ts: int) -> int | None:
        """When the asker holds the asked machine dead or withdrawn and lacks its current
        record (`my_ts`): sign a record newer than this (ms) and announce it; else None."""
        if not self.says or self.gone < 0 or self.held >= my_ts:
            return None
        return self.gone


BARE_ASK = DigestAsk(says=False)


@dataclass(frozen=True)
class Plan:
    wanted: list[str]  # records to ask for
    announce: bool  # the peer holds this machine dead and lacks its current record


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
            if len(peer) > MAX_PEER_ID or not _is_ts(ts):
                raise DigestError(f"digest entry {peer[:MAX_PEER_ID]!r}: {ts!r} is no timestamp")
    return Digest(body["held"], body["gone"])


def encode_request(wanted: list[str] | DigestAsk) -> bytes:
    """A DigestAsk: ask for the digest; else for these machines' records."""
    if isinstance(wanted, DigestAsk):
        body = {"digest": True, "held": wanted.held, "gone": wanted.gone} if wanted.says \
            else {"digest": True}
        return cbor2.dumps(body, canonical=True)
    return cbor2.dumps({"want": wanted}, canonical=True)


def decode_request(data: bytes) -> list[str] | DigestAsk:
    try:
        body: Any = cbor.loads(data)
    except ValueError as e:
        raise DigestError(f"request is not plain CBOR: {e}") from None
    if isinstance(body, dict) and body.get("digest") is True:
        if body.keys() == {"digest"}:
            return BARE_ASK
        ts = [body.get(k) for k in ("held", "gone")]
        if body.keys() != {"digest", "held", "gone"} \
                or not all(t == -1 or _is_ts(t) for t in ts):
            raise DigestError("a digest ask holds 'held' and 'gone': timestamps (ms) or -1")
        return DigestAsk(*ts)
    wanted = body.get("want") if isinstance(body, dict) and len(body) == 1 else None
    if not isinstance(wanted, list) or len(wanted) > MAX_WANTED \
            or not all(isinstance(p, str) and len(p) <= MAX_PEER_ID for p in wanted):
        raise DigestError(f"request must be {{'digest': true, 'held'|'gone': ms}} or "
                          f"{{'want': [at most {MAX_WANTED} peer ids]}}")
    return wanted


def _is_ts(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


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
    announce = me in theirs.gone and theirs.held.get(me, -1) < my_ts
    return Plan(sorted(wanted)[:MAX_WANTED], announce)
