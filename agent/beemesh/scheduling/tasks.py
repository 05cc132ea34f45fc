"""A Task as this machine knows it, and the checks on one before it is relayed (sans-IO).

Every machine checks a Task inside the gossipsub validator, including the operator signature
of the Workload embedded in it, so an untrusted or inconsistent task is dropped before it is
passed on. What the auction decides about a task is in `auction`; this is what the task *is*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beemesh import wire
from beemesh.manifest import ManifestError, WorkloadSpec
from beemesh.runtime import image_name
from beemesh.scheduling.messages import task_id
from beemesh.scheduling.scoring import TaskRequest
from beemesh.workloads.messages import MAX_WORKLOAD_BYTES


@dataclass(frozen=True)
class Task:
    """What a Task message says: the replica to place and the operator's signed workload."""

    task_id: str
    spec: WorkloadSpec
    ordinal: int
    blob: bytes  # the operator-signed Workload envelope
    generation: int  # the apply's signing time in ms (`store.StoredWorkload.generation`)
    origin: str  # the machine that published it (and republishes it while nobody places it)
    epoch: str  # the task a heal or drain replaces ("" for an apply)

    @property
    def workload_id(self) -> str:
        return self.spec.workload_id

    @property
    def pod(self) -> str:
        return self.spec.pod_name(self.ordinal)

    def request(self) -> TaskRequest:
        """What it asks of a machine, for the scorer."""
        cpu, mem = self.spec.requests()
        return TaskRequest(self.spec.workload_id, cpu, mem, self.spec.arch,
                           dict(self.spec.node_selector), self.spec.host_ports(), self.ordinal,
                           self.spec.kind == "StatefulSet", self.spec.template_hash,
                           tuple((image_name(c.image), c.pull_policy)
                                 for c in self.spec.containers), self.generation,
                           self.spec.host_paths,
                           any(v.source == "claim" for v in self.spec.volumes),
                           self.spec.kind == "StatefulSet" and not self.spec.parallel
                           and self.ordinal > 0,
                           sum(v.size_bytes or 0 for v in self.spec.volumes
                               if v.source == "claim"))

    def body(self) -> dict[str, Any]:
        """The Task message body (`scheduling.messages.TASK`)."""
        body: dict[str, Any] = {"task_id": self.task_id, "workload_id": self.workload_id,
                                "ordinal": self.ordinal, "origin": self.origin,
                                "workload": self.blob}
        if self.epoch:
            body["epoch"] = self.epoch
        return body


def check_task(env: wire.Envelope,
               authenticate_workload: Callable[[bytes], wire.Envelope]) -> Task:
    """A verified Task envelope whose embedded workload an operator signed and which is
    consistent with it (workload id, ordinal in range, the task id it derives); Rejected
    otherwise."""
    body = env.body
    inner = body["workload"]
    if len(inner) > MAX_WORKLOAD_BYTES:
        raise wire.Rejected("oversized", "embedded workload over the size cap")
    workload = authenticate_workload(inner)  # trusted operator, any age
    try:
        spec = WorkloadSpec.from_dict(workload.body["spec"])
    except ManifestError as e:
        raise wire.Rejected("schema", f"embedded workload: {e}") from None
    epoch = body.get("epoch", "")
    consistent = (
        spec.workload_id == body["workload_id"]
        and 0 <= body["ordinal"] < max(1, spec.replicas)
        and body["task_id"] == task_id(spec.workload_id, body["ordinal"], workload.ts_ms, epoch)
    )
    if not consistent:
        raise wire.Rejected("schema", "task does not match its embedded workload")
    return Task(body["task_id"], spec, body["ordinal"], inner, workload.ts_ms, body["origin"],
                epoch)
