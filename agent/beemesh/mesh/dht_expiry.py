"""DHT values forgotten when they are spent, not after py-libp2p's 24 hours.

py-libp2p's Kademlia keeps every value it stores (its own puts and its peers') for 24 hours,
up to 50,000 of them, and republishes its own. Beemesh's values say themselves how long they
matter: a lease hint until it expires, a machine record until its TTL, a service record a
while past its TTL (`workplane/admission.RecordValidator`). Under churn this was most of what
a soak grew by: every task's lease hint and every replica's service record stayed a day
(a new Deployment every 6 s: +1 MB an hour per process, and without bound in the count of
keys). A namespace's validator that has `kept_until` says when its value may go;
`MeshHost` asks once a minute and removes what is spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Expiring(Protocol):
    def kept_until(self, key: str, value: bytes) -> float | None:
        """When the value may be forgotten (None: py-libp2p's 24 hours)."""


def spent(store: Mapping[bytes, tuple[Any, float]], validators: Mapping[str, object],
          now: float) -> list[bytes]:
    """Keys of `store` (py-libp2p's ValueStore: key -> (Record, validity)) whose namespace's
    validator says the value may be forgotten by `now`."""
    out = []
    for key, (record, _validity) in store.items():
        text = key.decode(errors="replace")
        parts = text.split("/")
        validator = validators.get(parts[1]) if len(parts) > 2 and not parts[0] else None
        if isinstance(validator, Expiring):
            until = validator.kept_until(text, bytes(record.value))
            if until is not None and until <= now:
                out.append(key)
    return out
