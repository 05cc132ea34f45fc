"""Signed values in the Machine DHT: machine records, and the validator shape they share.

py-libp2p calls a namespace's validator for every value it stores or serves; a value is a
signed envelope checked like a message (`wire.Verifier.authenticate`, workload keys refused),
and among several values for a key the newest signature time wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from libp2p.records.validator import Validator

from beemesh import wire
from beemesh.membership.records import RecordError, entry_from_envelope

MACHINE_DHT_PREFIX = "/beemesh/machine"
STORED_RECORD_S = 300.0
MACHINE_NS = "machine"


def machine_dht_key(pid: str) -> str:
    """DHT key of a machine's record.

    py-libp2p 0.8.1 servers refuse FIND_NODE keys longer than 50 bytes that are not
    multihashes, so the key carries the last 40 characters of the Peer ID (~234 bits).
    """
    return f"/{MACHINE_NS}/{pid[-40:]}"


class CheckedValidator(Validator):
    """A DHT namespace's validator: `check` raises `wire.Rejected` for a value to refuse. Each
    refusal is reported by reason (`on_refused`, which counts it like a dropped message), and
    whatever goes wrong, py-libp2p only ever sees a ValueError (the value is refused), never
    another exception. py-libp2p does not say which peer sent the value."""

    what = "value"  # what the namespace holds, for the ValueError

    def __init__(self, on_refused: Callable[[wire.Rejected], None]) -> None:
        self.on_refused = on_refused

    def validate(self, key: str, value: bytes) -> None:
        try:
            self.check(key, value)
        except wire.Rejected as e:
            self.on_refused(e)
            raise ValueError(f"invalid {self.what}: {e}") from None
        except Exception as e:  # fail closed: an odd value is a refused value
            refusal = wire.Rejected("malformed", f"unreadable {self.what} "
                                    f"({type(e).__name__}: {e})")
            self.on_refused(refusal)
            raise ValueError(f"invalid {self.what}: {refusal}") from None

    def check(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def kept_until(self, key: str, value: bytes) -> float | None:
        """When the DHT may forget a value it holds (`mesh/dht_expiry.py`; None: py-libp2p's
        24 hours). A held value passed `validate`; one that cannot be read now goes now."""
        try:
            return self.useful_until(key, value)
        except Exception:
            return 0.0

    def useful_until(self, key: str, value: bytes) -> float | None:
        return None


class SignedValueValidator(CheckedValidator):
    """A signed envelope from a signer this plane admits; the newest one wins. Subclasses say
    what else a value must be (`check`)."""

    def __init__(self, verifier: wire.Verifier, refuse_signer: Callable[[wire.Envelope], None],
                 on_refused: Callable[[wire.Rejected], None]) -> None:
        super().__init__(on_refused)
        self.verifier = verifier
        self.refuse_signer = refuse_signer

    def authenticate(self, value: bytes) -> wire.Envelope:
        env = self.verifier.authenticate(value)
        self.refuse_signer(env)
        return env

    def select(self, key: str, values: list[bytes]) -> int:
        def ts(v: bytes) -> int:
            try:
                return wire.decode(v).ts_ms
            except wire.Rejected:
                return -1

        return max(range(len(values)), key=lambda i: ts(values[i]))


class MachineRecordValidator(SignedValueValidator):
    """Machine DHT values: a signed MachineRecord stored under its own peer id, kept for
    `STORED_RECORD_S` after it was made (records travel on pub/sub and on request; a stored
    one is only a hint)."""

    what = "machine record"

    def check(self, key: str, value: bytes) -> None:
        env = self.authenticate(value)
        try:
            entry = entry_from_envelope(env)
        except RecordError as e:
            raise wire.Rejected("schema", str(e)) from None
        if key != machine_dht_key(entry.peer_id):
            raise wire.Rejected("untrusted", "stored under another machine's key")
        if entry.ts + STORED_RECORD_S <= time.time():
            raise wire.Rejected("stale", "made too long ago")

    def useful_until(self, key: str, value: bytes) -> float | None:
        return entry_from_envelope(wire.decode(value)).ts + STORED_RECORD_S
