"""Scheduling message kinds, their topics, and task ids.

`Workload` is signed by an operator and travels embedded (as signed bytes) in every `Task`,
so any machine can check that a trusted operator asked for it, however many machines relayed
or republished the task. Everything else is signed by the machine it names.
"""

from __future__ import annotations

import base64
import hashlib

from beemesh import schema, wire

MAX_WORKLOAD_BYTES = 64 * 1024

WORKLOAD = wire.Kind("Workload", wire.OPERATOR, schema.Struct(
    required={"spec": schema.OPAQUE}))
DELETE = wire.Kind("Delete", wire.OPERATOR, schema.Struct(required={"workload_id": str}))
CORDON = wire.Kind("Cordon", wire.OPERATOR, schema.Struct(
    required={"node": str, "cordoned": bool}))
TASK = wire.Kind("Task", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": int, "origin": str,
              "workload": bytes}), names_signer="origin")
BID = wire.Kind("Bid", wire.MACHINE, schema.Struct(
    required={"task_id": str, "round": int, "score": int, "node": str}), names_signer="node")
DEPLOYED = wire.Kind("Deployed", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": int, "node": str, "score": int,
              "pod": str}), names_signer="node")
FAILED = wire.Kind("Failed", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": int, "node": str,
              "reason": str}), names_signer="node")
LEASE = wire.Kind("LeaseHint", wire.MACHINE, schema.Struct(
    required={"task_id": str, "node": str, "expires_ms": int}), names_signer="node")
LOGS_REQUEST = wire.Kind("LogsRequest", wire.OPERATOR, schema.Struct(
    required={"pod": str, "follow": bool}))


def task_id(workload_id: str, ordinal: int, generation: int) -> str:
    """Deterministic: the same apply (or heal) of the same replica is the same task."""
    digest = hashlib.sha256(f"{workload_id}\0{ordinal}\0{generation}".encode()).digest()
    return "t" + base64.b32encode(digest).decode().lower()[:25]
