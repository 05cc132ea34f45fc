"""The operator's message kinds, and the machine-signed relay of a Delete.

Operator kinds are signed by a key from the fleet's trust list; every machine checks that
signature itself, so a machine that relays them cannot invent or alter one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from beemesh import schema, wire
from beemesh.manifest import ManifestError, ServiceSpec, WorkloadSpec

MAX_WORKLOAD_BYTES = 64 * 1024
T = TypeVar("T")
MAX_GRACE_S = 24 * 3600  # the longest a drain lets a replica take to stop

WORKLOAD = wire.Kind("Workload", wire.OPERATOR, schema.Struct(
    required={"spec": schema.OPAQUE}))
SERVICE = wire.Kind("Service", wire.OPERATOR, schema.Struct(required={"spec": schema.OPAQUE}))
DELETE = wire.Kind("Delete", wire.OPERATOR, schema.Struct(required={"workload_id": str}))
CORDON = wire.Kind("Cordon", wire.OPERATOR, schema.Struct(
    required={"machine": str, "cordoned": bool}))
DRAIN = wire.Kind("Drain", wire.OPERATOR, schema.Struct(
    required={"machine": str, "grace_s": schema.Int(0, MAX_GRACE_S)}))
# A machine passing on an operator's Delete to machines that missed it (the Delete itself is
# too old for the live replay/skew window, so it travels embedded, like a Workload in a Task).
RELAYED_DELETE = wire.Kind("RelayedDelete", wire.MACHINE, schema.Struct(
    required={"origin": str, "delete": bytes}), names_signer="origin")
LOGS_REQUEST = wire.Kind("LogsRequest", wire.OPERATOR, schema.Struct(
    required={"pod": str, "follow": bool}))
MAX_EXEC_S = 3600
EXEC_REQUEST = wire.Kind("ExecRequest", wire.OPERATOR, schema.Struct(
    required={"pod": str, "container": str,  # "": the pod's first container
              "argv": schema.ListOf(str, max_len=256),
              "timeout_s": schema.Int(1, MAX_EXEC_S)}))


def check_workload(data: bytes, env: wire.Envelope) -> WorkloadSpec:
    """A verified Workload published on its own (an apply): its size and its spec; Rejected
    otherwise. Every machine keeps the newest (`store.WorkloadStore.add_workload`)."""
    return _checked(data, env, "workload", WorkloadSpec.from_dict)


def check_service(data: bytes, env: wire.Envelope) -> ServiceSpec:
    """A verified Service (an apply of a v1 Service): its size and its spec; Rejected
    otherwise. Every machine keeps the newest (`store.WorkloadStore.add_service`)."""
    return _checked(data, env, "service", ServiceSpec.from_dict)


def _checked(data: bytes, env: wire.Envelope, what: str, parse: Callable[[Any], T]) -> T:
    if len(data) > MAX_WORKLOAD_BYTES:
        raise wire.Rejected("oversized", f"{what} of {len(data)} bytes, over the "
                            f"{MAX_WORKLOAD_BYTES} cap")
    try:
        return parse(env.body["spec"])
    except ManifestError as e:
        raise wire.Rejected("schema", f"{what}: {e}") from None
