"""Machine records as tests build them: bodies the real verifier accepts, and view entries."""

from __future__ import annotations

from typing import Any

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.membership.records import (
    MACHINE_RECORD,
    PROTOCOL_VERSION,
    MachineEntry,
    entry_from_envelope,
)
from beemesh.membership.view import MachineView

T0 = 1_700_000_000.0
KEY_A = KeyPair(b"\x0a" * 32)
KEY_B = KeyPair(b"\x0b" * 32)
KEY_C = KeyPair(b"\x0c" * 32)
KEY_D = KeyPair(b"\x0d" * 32)
FOUR = (KEY_A, KEY_B, KEY_C, KEY_D)
def record_body(key: KeyPair, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "peer_id": key.peer_id,
        "addrs": ["/ip4/10.0.0.1/tcp/4001"],
        "arch": "aarch64",
        "labels": {"zone": "a"},
        "capacity": {
            "cpu_milli": 4000,
            "memory_bytes": 8 << 30,
            "memory_available_bytes": 6 << 30,
        },
        "protocol": PROTOCOL_VERSION,
    }
    body.update(extra)
    return body


def envelope(key: KeyPair, ts: float, body: dict[str, Any] | None = None) -> wire.Envelope:
    return wire.decode(wire.seal(key, MACHINE_RECORD.name, body or record_body(key), ts))


def entry(key: KeyPair, ts: float) -> MachineEntry:
    return entry_from_envelope(envelope(key, ts, record_body(key)))




def seen(view: MachineView, keys: tuple[KeyPair, ...], ts: float) -> None:
    """`view` hears a record of each machine of `keys`, made at `ts`."""
    for k in keys:
        assert view.apply(entry(k, ts), ts)


def lost(view: MachineView, keys: tuple[KeyPair, ...], ts: float, now: float) -> None:
    """`view` reaches the verdict that each machine of `keys` (last record at `ts`) is dead."""
    for k in keys:
        view.dead(k.peer_id, ts, now)
