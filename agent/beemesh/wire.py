"""Signed CBOR envelopes: the only shape application messages take on the wire.

An envelope is a CBOR map {v, kind, sender, ts, nonce, body, sig}. `sig` is the sender's
Ed25519 signature over the canonical CBOR of [v, kind, sender, ts, nonce, body], so relaying
machines cannot alter what an operator or a peer said. `Verifier` is sans-IO: it gets the
bytes and the current time and either returns the envelope or raises `Rejected` with a
short reason that doubles as the metrics label.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from beemesh import cbor, schema
from beemesh.identity import KeyPair, peer_id, verify

VERSION = 1
MAX_ENVELOPE_BYTES = 256 * 1024
REPLAY_WINDOW_S = 300.0
MAX_CLOCK_SKEW_S = 30.0
MAX_REPLAY_ENTRIES = 200_000

# Who may sign a kind: "machine" (any fleet machine, speaking for itself), "operator" (a key
# from the fleet's operator trust list) or "workload" (a replica's workload key; its
# certificate, checked by the work plane, says which machine vouches for it).
MACHINE = "machine"
OPERATOR = "operator"
WORKLOAD = "workload"

REJECT_REASONS = (
    "oversized",
    "malformed",
    "version",
    "unknown_kind",
    "schema",
    "unsigned",
    "bad_signature",
    "untrusted",
    "stale",
    "replayed",
    "wrong_plane",
    "not_held",  # a WorkloadCert from a machine whose record does not list that pod and task
    "score",  # a bid above what the bidder's machine record allows
    "not_winner",  # a lease hint or Deployed from a machine the auction did not pick
    "claim",  # a machine record listing a pod no round here placed there (`bounds.Claims`)
    "limit",  # a bound on what one peer or one replica may make this machine keep was reached
    "unadmitted",  # a machine key with no valid operator-signed certificate (admission)
    "revoked",  # a machine the operator revoked
    "labels",  # a machine record claims labels its certificate does not grant
    "unhandled",  # checking or handling it raised something unexpected: a bug, logged once
)


class Rejected(Exception):
    """A message that must be dropped; `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Kind:
    """A message kind: who may sign it and the shape of its body."""

    name: str
    signer: str
    body: schema.Struct
    # Body field that must hold the signer's own Peer ID (a machine may only speak for itself).
    names_signer: str | None = None


@dataclass(frozen=True)
class Envelope:
    version: int
    kind: str
    sender: bytes
    ts_ms: int
    nonce: bytes
    body: dict[str, Any]
    signature: bytes


def _signed_part(version: int, kind: str, sender: bytes, ts_ms: int, nonce: bytes,
                 body: Mapping[str, Any]) -> bytes:
    return cbor2.dumps([version, kind, sender, ts_ms, nonce, dict(body)], canonical=True)


def seal(key: KeyPair, kind: str, body: Mapping[str, Any], now: float,
         nonce: bytes | None = None) -> bytes:
    """Encode and sign one message."""
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    ts_ms = int(now * 1000)
    sig = key.sign(_signed_part(VERSION, kind, key.public_key, ts_ms, nonce, body))
    return cbor2.dumps(
        {"v": VERSION, "kind": kind, "sender": key.public_key, "ts": ts_ms,
         "nonce": nonce, "body": dict(body), "sig": sig},
        canonical=True,
    )


def encode(env: Envelope) -> bytes:
    """The envelope's bytes again (what `seal` produced): the signature still verifies, so a
    machine can pass on a message it received, e.g. an operator's Delete."""
    return cbor2.dumps(
        {"v": env.version, "kind": env.kind, "sender": env.sender, "ts": env.ts_ms,
         "nonce": env.nonce, "body": dict(env.body), "sig": env.signature},
        canonical=True,
    )


_FIELDS: dict[str, type] = {
    "v": int, "kind": str, "sender": bytes, "ts": int, "nonce": bytes, "body": dict, "sig": bytes
}


def decode(data: bytes, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Parse bytes into an Envelope without checking signatures (Rejected on bad shape)."""
    if len(data) > max_bytes:
        raise Rejected("oversized", f"{len(data)} bytes > cap {max_bytes}")
    try:
        raw = cbor.loads(data)
    except cbor.CBORError as e:
        raise Rejected("malformed", f"not plain CBOR: {e}") from None
    if not isinstance(raw, dict):
        raise Rejected("malformed", "envelope is not a map")
    extra = set(raw) - set(_FIELDS)
    if extra:
        raise Rejected("malformed", f"unexpected envelope fields {sorted(map(str, extra))}")
    for name, typ in _FIELDS.items():
        if name == "sig" and name not in raw:
            continue  # an unsigned message is its own, more telling, rejection below
        value = raw.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise Rejected("malformed", f"field {name!r} missing or of the wrong type")
    if len(raw["sender"]) != 32 or not 8 <= len(raw["nonce"]) <= 64:
        raise Rejected("malformed", "sender must be a 32-byte key and nonce 8-64 bytes")
    return Envelope(raw["v"], raw["kind"], raw["sender"], raw["ts"], raw["nonce"],
                    raw["body"], raw.get("sig", b""))


class ReplayGuard:
    """Remembers (sender, nonce) pairs for the replay window; bounded in memory."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S,
                 max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[bytes, bytes], float] = OrderedDict()

    def seen(self, sender: bytes, nonce: bytes, now: float) -> bool:
        """True if already seen within the window; otherwise remember it."""
        while self._seen:
            oldest_key, oldest_t = next(iter(self._seen.items()))
            if now - oldest_t <= self.window_s and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest_key]
        key = (sender, nonce)
        if key in self._seen:
            return True
        self._seen[key] = now
        return False


class Verifier:
    """Checks envelopes against size, schema, signature, trust, clock skew and replay."""

    def __init__(
        self,
        kinds: Mapping[str, Kind],
        trusted_operators: Callable[[], Mapping[bytes, str]],
        *,
        max_bytes: int = MAX_ENVELOPE_BYTES,
        max_skew_s: float = MAX_CLOCK_SKEW_S,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.kinds = kinds
        self.trusted_operators = trusted_operators
        self.max_bytes = max_bytes
        self.max_skew_s = max_skew_s
        self.replay = replay or ReplayGuard()

    def authenticate(self, data: bytes, origin: bytes | None = None) -> Envelope:
        """Shape, schema, signature and signer checks: what a stored DHT value needs too.

        `origin` is the public key of the peer that published the message on pub/sub (its
        transport identity); machine-signed kinds must come from the machine that signed them.
        """
        env = decode(data, self.max_bytes)
        if env.version != VERSION:
            raise Rejected("version", f"protocol version {env.version}, expected {VERSION}")
        kind = self.kinds.get(env.kind)
        if kind is None:
            raise Rejected("unknown_kind", f"kind {env.kind!r} is not accepted here")
        try:
            schema.check(env.body, kind.body)
        except schema.SchemaError as e:
            raise Rejected("schema", str(e)) from None
        if not env.signature:
            raise Rejected("unsigned", f"{env.kind} carries no signature")
        signed = _signed_part(env.version, env.kind, env.sender, env.ts_ms, env.nonce, env.body)
        if not verify(env.sender, signed, env.signature):
            raise Rejected("bad_signature", f"{env.kind} signature does not verify")
        if kind.signer == OPERATOR:
            if env.sender not in self.trusted_operators():
                raise Rejected("untrusted", f"{env.kind} signed by a key not in the trust list")
        elif kind.signer == MACHINE and origin is not None and origin != env.sender:
            raise Rejected("untrusted", f"{env.kind} relayed under another machine's name")
        if kind.names_signer and env.body[kind.names_signer] != peer_id(env.sender):
            raise Rejected("untrusted", f"{env.kind} speaks for a peer other than its signer")
        return env

    def check(self, data: bytes, now: float, origin: bytes | None = None, *,
              remember: bool = True) -> Envelope:
        """Everything in `authenticate`, plus clock skew and replay: for live messages.

        `remember=False` checks a message we are about to publish ourselves: its nonce must
        stay unseen so that our own delivery of it is not taken for a replay.
        """
        env = self.authenticate(data, origin)
        skew = abs(now - env.ts_ms / 1000)
        if skew > self.max_skew_s:
            raise Rejected("stale", f"timestamp {skew:.0f} s away from local clock")
        if not remember:
            return env
        if self.replay.seen(env.sender, env.nonce, now):
            raise Rejected("replayed", f"{env.kind} nonce already seen")
        return env
