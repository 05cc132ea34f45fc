"""Scheduling message kinds and task ids (the topics they travel on: `beemesh.topics`).

A `Task` carries the operator-signed `Workload` embedded (as signed bytes), so any machine can
check that a trusted operator asked for it, however many machines relayed or republished the
task. Everything else here is signed by the machine it names.
"""

from __future__ import annotations

import base64
import hashlib

from beemesh import schema, wire
from beemesh.manifest.checks import MAX_REPLICAS
from beemesh.scheduling.scoring import SCORE_MAX

ORDINAL = schema.Int(0, MAX_REPLICAS - 1)
SCORE = schema.Int(0, SCORE_MAX)
ROUND = schema.Int(0, 2**31 - 1)

# `epoch` is the task id of the replica a heal or drain replaces ("" for an apply).
TASK = wire.Kind("Task", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": ORDINAL, "origin": str,
              "workload": bytes}, optional={"epoch": str}), names_signer="origin")
BID = wire.Kind("Bid", wire.MACHINE, schema.Struct(
    required={"task_id": str, "round": ROUND, "score": SCORE, "machine": str}),
    names_signer="machine")
DEPLOYED = wire.Kind("Deployed", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": ORDINAL, "machine": str,
              "score": SCORE,
              "pod": str}), names_signer="machine")
FAILED = wire.Kind("Failed", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": ORDINAL, "machine": str,
              "reason": str}), names_signer="machine")
# A lease hint expiring later than this is not believed: an honest winner renews a 3 s lease
# every second; the margin covers machine clocks that disagree.
MAX_LEASE_AHEAD_S = 60.0
LEASE = wire.Kind("LeaseHint", wire.MACHINE, schema.Struct(
    required={"task_id": str, "machine": str, "expires_ms": schema.NON_NEGATIVE}),
    names_signer="machine")


def task_id(workload_id: str, ordinal: int, generation: int, epoch: str = "") -> str:
    """Deterministic: the same apply of a replica is the same task, and so is every heal of
    the same lost replica (`epoch` = the lost replica's task id), whoever asks for it."""
    text = f"{workload_id}\0{ordinal}\0{generation}" + (f"\0{epoch}" if epoch else "")
    digest = hashlib.sha256(text.encode()).digest()
    return "t" + base64.b32encode(digest).decode().lower()[:25]
