"""Hostile but well-formed messages: bodies generated from a kind's schema with boundary values,
signed correctly, so they get past the signature check and reach the handlers.

`Hostile.body(kind)` walks the kind's schema: every required field, optional fields at random,
integers at their bounds (or int64's), floats at large finite values, strings from a pool of
awkward ones (empty, 4 KiB, NUL, paths, other machines' Peer IDs, known workload and task ids),
lists and maps empty or full. Fields with meaning get values that mean something: the field a
kind names its signer by holds the signer, a Task's workload is an operator-signed Workload
(and its task id derives from it, often), a relayed Delete carries a signed Delete.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from beemesh import schema, wire
from beemesh.identity import KeyPair
from beemesh.manifest import parse_manifests
from beemesh.scheduling.messages import task_id
from beemesh.workloads.messages import DELETE, WORKLOAD

INT64 = (schema.INT64_MIN, schema.INT64_MAX)

MANIFESTS = [
    """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: localhost/beemesh/busybox:latest
        ports: [{containerPort: 8080, hostPort: 18080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
""",
    """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 10000
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: main, image: localhost/beemesh/busybox:latest}]
""",
    """
apiVersion: v1
kind: Pod
metadata: {name: one}
spec:
  containers: [{name: c, image: localhost/beemesh/busybox:latest,
                resources: {requests: {cpu: 100m, memory: 1Ti}}}]
""",
]


class Hostile:
    def __init__(self, rng: random.Random, operator: KeyPair, stranger: KeyPair,
                 machines: list[KeyPair], victim: str) -> None:
        """`machines` sign machine kinds; `victim` is the Peer ID of the agent under test."""
        self.rng = rng
        self.operator = operator
        self.stranger = stranger
        self.machines = machines
        self.victim = victim
        now = time.time()
        self.specs = [s for text in MANIFESTS for s in parse_manifests(text, "fuzz.yaml")]
        # Signed by the operator (and a few by a stranger), at different times: old, now, ahead.
        self.workloads: list[tuple[bytes, Any]] = []
        for spec in self.specs:
            for key, ts in ((operator, now), (operator, now - 30 * 86400), (operator, now + 20),
                            (stranger, now)):
                blob = wire.seal(key, WORKLOAD.name, {"spec": spec.to_dict()}, ts)
                self.workloads.append((blob, spec))
        self.deletes = [wire.seal(key, DELETE.name, {"workload_id": wid}, ts)
                        for wid in [s.workload_id for s in self.specs] + ["pod/x/unknown"]
                        for key, ts in ((operator, now), (operator, now - 8 * 86400),
                                        (stranger, now))]
        self.task_ids = [task_id(s.workload_id, o, int(now * 1000)) for s in self.specs
                         for o in range(3)]
        peers = [m.peer_id for m in machines] + [victim]
        self.strings = ["", "x", "a" * 4096, "\x00", "../../etc/passwd", "é🐝" * 100, " ",
                        *peers, *[s.workload_id for s in self.specs], *self.task_ids,
                        "deployment/default/web", "t" + "a" * 25]

    # ---- messages ---------------------------------------------------------------------------

    def sealed(self, kind: wire.Kind) -> tuple[KeyPair, bytes]:
        """(signer, signed bytes) of one hostile message of `kind`."""
        signer = self._signer(kind)
        body = self.body(kind, signer)
        return signer, wire.seal(signer, kind.name, body, time.time())

    def _signer(self, kind: wire.Kind) -> KeyPair:
        if kind.signer == wire.OPERATOR:
            return self.operator if self.rng.random() < 0.9 else self.stranger
        return self.rng.choice(self.machines)

    def body(self, kind: wire.Kind, signer: KeyPair) -> dict[str, Any]:
        body = self.value(kind.body, "")
        if kind.names_signer and self.rng.random() < 0.95:
            body[kind.names_signer] = signer.peer_id
        for name, make in self._meaning(kind, signer).items():
            if name in kind.body.required or (name in kind.body.optional and name in body):
                body[name] = make()
        return body

    def _meaning(self, kind: wire.Kind, signer: KeyPair) -> dict[str, Callable[[], Any]]:
        """Fields whose value means something, filled in most of the time."""
        rng = self.rng
        if rng.random() < 0.2:
            return {}
        if kind.name == "Task":
            blob, spec = rng.choice(self.workloads)
            env = wire.decode(blob)
            ordinal = rng.choice([0, 1, 2, spec.replicas - 1, spec.replicas])
            epoch = rng.choice(["", "", rng.choice(self.task_ids)])
            tid = task_id(spec.workload_id, max(0, ordinal), env.ts_ms, epoch)
            return {"workload": lambda: blob, "workload_id": lambda: spec.workload_id,
                    "ordinal": lambda: max(0, ordinal), "epoch": lambda: epoch,
                    "task_id": lambda: tid if rng.random() < 0.8 else rng.choice(self.task_ids)}
        if kind.name == "RelayedDelete":
            return {"delete": lambda: rng.choice(self.deletes)}
        if kind.name in ("Cordon", "Drain"):
            return {"machine": lambda: self.victim if rng.random() < 0.7 else signer.peer_id}
        if kind.name in ("Bid", "Deployed", "Failed", "LeaseHint"):
            return {"task_id": lambda: rng.choice(self.task_ids)}
        return {}

    # ---- values from a schema -----------------------------------------------------------------

    def value(self, shape: Any, path: str) -> Any:
        rng = self.rng
        if isinstance(shape, schema.Struct):
            out = {name: self.value(sub, f"{path}.{name}") for name, sub in shape.required.items()}
            for name, sub in shape.optional.items():
                if rng.random() < 0.5:
                    out[name] = self.value(sub, f"{path}.{name}")
            return out
        if isinstance(shape, schema.ListOf):
            n = rng.choice([0, 1, 2, shape.max_len])
            if n == shape.max_len and n > 64 and rng.random() < 0.7:
                n = 64  # full lists of big items exceed the envelope cap: mostly keep them in
            return [self.value(shape.item, path) for _ in range(n)]
        if isinstance(shape, schema.MapOf):
            n = rng.choice([0, 1, min(shape.max_len, 64)])
            return {f"k{i}-{self._string()[:20]}": self.value(shape.value, path)
                    for i in range(n)}
        if shape is schema.OPAQUE:
            return rng.choice([{}, {"kind": "Deployment"}, [], "x", 1])
        if shape is int or isinstance(shape, schema.Int):
            lo, hi = (shape.lo, shape.hi) if isinstance(shape, schema.Int) else INT64
            return rng.choice([lo, hi, max(lo, min(hi, 0)), max(lo, min(hi, 1)),
                               rng.randint(lo, hi)])
        if shape is float:
            return rng.choice([0.0, -1.0, 1e18, -9.2e18, time.time(), 2.0**-40])
        if shape is str:
            if path.endswith(".peer"):  # a pod's workload key: claiming a machine's key here
                return KeyPair.generate().peer_id  # mutes that machine (admission's business)
            return self._string()
        if shape is bytes:
            return rng.choice([b"", b"\x00" * 64, rng.randbytes(32), rng.choice(self.deletes),
                               rng.choice(self.workloads)[0]])
        if shape is bool:
            return rng.random() < 0.5
        raise TypeError(f"no generator for {shape!r} at {path}")

    def _string(self) -> str:
        return self.rng.choice(self.strings)
