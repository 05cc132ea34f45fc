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

    def check(self, key: str, value: bytes) -> None:
        try:
            env = self.authenticate(value)
        except wire.Rejected as e:
            raise ValueError(f"invalid lease hint: {e}") from None
        if key != lease_key(env.body["task_id"]):
            raise ValueError("lease hint stored under another task's key")
        now_ms = time.time() * 1000
        if env.body["expires_ms"] <= now_ms:
            raise ValueError("lease hint expired")
        if env.body["expires_ms"] > now_ms + MAX_LEASE_AHEAD_S * 1000:
            raise ValueError("lease hint expires too far ahead")
