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
DRAIN = wire.Kind("Drain", wire.OPERATOR, schema.Struct(
    required={"node": str, "grace_s": int}))
# `epoch` is the task id of the replica a heal or drain replaces ("" for an apply).
TASK = wire.Kind("Task", wire.MACHINE, schema.Struct(
    required={"task_id": str, "workload_id": str, "ordinal": int, "origin": str,
              "workload": bytes}, optional={"epoch": str}), names_signer="origin")
# A machine passing on an operator's Delete to machines that missed it (the Delete itself is
# too old for the live replay/skew window, so it travels embedded, like a Workload in a Task).
TOMBSTONE = wire.Kind("Tombstone", wire.MACHINE, schema.Struct(
    required={"origin": str, "delete": bytes}), names_signer="origin")
# A machine vouching that a workload key belongs to a replica it runs; embedded in every
# ServiceRecord so work planes can tell a real replica's key from anyone else's.
WORKLOAD_CERT = wire.Kind("WorkloadCert", wire.MACHINE, schema.Struct(
    required={"machine": str, "peer_id": str, "workload_id": str, "ordinal": int, "pod": str,
              "task": str}), names_signer="machine")
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


def task_id(workload_id: str, ordinal: int, generation: int, epoch: str = "") -> str:
    """Deterministic: the same apply of a replica is the same task, and so is every heal of
    the same lost replica (`epoch` = the lost replica's task id), whoever asks for it."""
    text = f"{workload_id}\0{ordinal}\0{generation}" + (f"\0{epoch}" if epoch else "")
    digest = hashlib.sha256(text.encode()).digest()
    return "t" + base64.b32encode(digest).decode().lower()[:25]
