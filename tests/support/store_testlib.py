"""Operator-signed workloads and deletes as tests make them, and a store that checks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.manifest import WorkloadSpec, parse_manifests
from beemesh.workloads.messages import DELETE, OBJECT_KINDS, WORKLOAD
from beemesh.workloads.store import WorkloadStore

T0 = 1_700_000_000.0
OPERATOR = KeyPair(b"\x31" * 32)
STRANGER = KeyPair(b"\x32" * 32)


def manifest(name: str = "web", replicas: int = 2, kind: str = "Deployment") -> str:
    return f"""
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: main
          image: localhost/beemesh/busybox:latest
          command: [sleep, "3600"]
"""


def spec(name: str = "web", replicas: int = 2) -> WorkloadSpec:
    (s,) = parse_manifests(manifest(name, replicas), "test.yaml")
    return s


WID = spec().workload_id


def operator_list() -> dict[bytes, str]:
    return {OPERATOR.public_key: "ops"}


def verifiers() -> tuple[wire.Verifier, wire.Verifier]:
    return (wire.Verifier({WORKLOAD.name: WORKLOAD}, operator_list),
            wire.Verifier({DELETE.name: DELETE}, operator_list))


def make_store(directory: Path) -> WorkloadStore:
    wv, dv = verifiers()
    sv = wire.Verifier(OBJECT_KINDS, operator_list)
    return WorkloadStore(directory, wv.authenticate, dv.authenticate,
                         authenticate_object=sv.authenticate)


def apply_blob(s: WorkloadSpec, ts: float, key: KeyPair = OPERATOR) -> bytes:
    return wire.seal(key, WORKLOAD.name, {"spec": s.to_dict()}, ts)


def delete_blob(workload_id: str, ts: float, key: KeyPair = OPERATOR) -> bytes:
    return wire.seal(key, DELETE.name, {"workload_id": workload_id}, ts)


def env_of(blob: bytes) -> wire.Envelope:
    return wire.decode(blob)


def add_apply(store: WorkloadStore, s: WorkloadSpec, ts: float) -> Any:
    """Apply, then write what the store queued (as the agent's persister would)."""
    blob = apply_blob(s, ts)
    stored = store.add_workload(blob, env_of(blob))
    store.files.flush()
    return stored


def add_delete(store: WorkloadStore, wid: str, ts: float, now: float | None = None) -> bool:
    """Delete, then write what the store queued (as the agent's persister would)."""
    blob = delete_blob(wid, ts)
    kept = store.add_delete(blob, env_of(blob), ts if now is None else now)
    store.files.flush()
    return kept
