"""The operator's message kinds, and the machine-signed relay of a Delete.

Operator kinds are signed by a key from the fleet's trust list; every machine checks that
signature itself, so a machine that relays them cannot invent or alter one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from beemesh import schema, wire
from beemesh.manifest import ManifestError, ServiceSpec, WorkloadSpec
from beemesh.manifest.config import MAX_CONFIG_BYTES, ConfigMapSpec, SecretSpec

MAX_WORKLOAD_BYTES = 64 * 1024
MAX_OBJECT_BYTES = MAX_CONFIG_BYTES + 32 * 1024  # a ConfigMap's values, base64 and framing
T = TypeVar("T")
MAX_GRACE_S = 24 * 3600  # the longest a drain lets a replica take to stop

WORKLOAD = wire.Kind("Workload", wire.OPERATOR, schema.Struct(
    required={"spec": schema.OPAQUE}))
SERVICE = wire.Kind("Service", wire.OPERATOR, schema.Struct(required={"spec": schema.OPAQUE}))
CONFIG_MAP = wire.Kind("ConfigMap", wire.OPERATOR, schema.Struct(required={"spec": schema.OPAQUE}))
SECRET = wire.Kind("Secret", wire.OPERATOR, schema.Struct(required={"spec": schema.OPAQUE}))
# Objects every machine keeps beside workloads (`store.WorkloadStore.add_object`); a Secret
# without its values (`manifest.config`).
OBJECT_KINDS = {k.name: k for k in (SERVICE, CONFIG_MAP, SECRET)}
ObjectSpec = ServiceSpec | ConfigMapSpec | SecretSpec
_OBJECT_SPECS: dict[str, type[ObjectSpec]] = {"Service": ServiceSpec, "ConfigMap": ConfigMapSpec,
                                              "Secret": SecretSpec}
# `volumes`: a StatefulSet's claim volumes go too (`beemesh delete --delete-volumes`)
DELETE = wire.Kind("Delete", wire.OPERATOR, schema.Struct(required={"workload_id": str},
                                                          optional={"volumes": bool}))
CORDON = wire.Kind("Cordon", wire.OPERATOR, schema.Struct(
    required={"machine": str, "cordoned": bool}))
DRAIN = wire.Kind("Drain", wire.OPERATOR, schema.Struct(
    required={"machine": str, "grace_s": schema.Int(0, MAX_GRACE_S)},
    optional={"keep_data": bool}))
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


def check_object(data: bytes, env: wire.Envelope) -> ObjectSpec:
    """A verified Service, ConfigMap or Secret (an apply): its size and its spec; Rejected
    otherwise. Every machine keeps the newest (`store.WorkloadStore.add_object`)."""
    parse = _OBJECT_SPECS.get(env.kind)
    if parse is None:
        raise wire.Rejected("unknown_kind", f"{env.kind} is not a Service, ConfigMap or Secret")
    return _checked(data, env, env.kind, parse.from_dict, MAX_OBJECT_BYTES)


def _checked(data: bytes, env: wire.Envelope, what: str, parse: Callable[[Any], T],
             cap: int = MAX_WORKLOAD_BYTES) -> T:
    if len(data) > cap:
        raise wire.Rejected("oversized", f"{what} of {len(data)} bytes, over the {cap} cap")
    try:
        return parse(env.body["spec"])
    except ManifestError as e:
        raise wire.Rejected("schema", f"{what}: {e}") from None
