"""Lease hints in the Machine DHT: where a machine that missed a renewal looks before it
re-enters an auction."""

from __future__ import annotations

import time

from beemesh import wire
from beemesh.membership.dht import SignedValueValidator
from beemesh.scheduling.messages import MAX_LEASE_AHEAD_S

LEASE_NS = "lease"


def lease_key(task_id: str) -> str:
    return f"/{LEASE_NS}/{task_id}"


class LeaseValidator(SignedValueValidator):
    """Lease hints: signed by the machine they name, stored under their task, unexpired."""

    what = "lease hint"

    def check(self, key: str, value: bytes) -> None:
        env = self.authenticate(value)
        if key != lease_key(env.body["task_id"]):
            raise wire.Rejected("untrusted", "stored under another task's key")
        now_ms = time.time() * 1000
        if env.body["expires_ms"] <= now_ms:
            raise wire.Rejected("stale", "expired")
        if env.body["expires_ms"] > now_ms + MAX_LEASE_AHEAD_S * 1000:
            raise wire.Rejected("stale", "expires too far ahead")

    def useful_until(self, key: str, value: bytes) -> float | None:
        return float(wire.decode(value).body["expires_ms"]) / 1000
