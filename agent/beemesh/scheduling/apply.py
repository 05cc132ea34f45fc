"""What an apply publishes: one Task per replica that runs nowhere yet (sans-IO).

Task ids are `sha256(workload, ordinal, apply generation)` (`scheduling.messages.task_id`), so
publishing the same apply again is the same task. A replica that some machine runs (its
record lists it, or it was reported Deployed and the record is still on the way) is not asked
for again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from beemesh.manifest import WorkloadSpec
from beemesh.scheduling.messages import task_id


@dataclass(frozen=True)
class ReplicaStep:
    """One replica of an apply: publish its task, or it already exists."""

    task_id: str
    workload_id: str
    ordinal: int
    exists: bool

    def to_dict(self) -> dict[str, Any]:
        """A row of `beemesh apply`'s answer."""
        return {"task_id": self.task_id, "workload": self.workload_id, "replica": self.ordinal,
                "state": "exists" if self.exists else "pending"}


def plan_apply(spec: WorkloadSpec, generation: int,
               running: Collection[tuple[str, int]]) -> list[ReplicaStep]:
    """One step per replica in [0, replicas): `running` holds the (workload, ordinal) pairs
    some machine runs already."""
    return [ReplicaStep(task_id(spec.workload_id, ordinal, generation), spec.workload_id,
                        ordinal, (spec.workload_id, ordinal) in running)
            for ordinal in range(spec.replicas)]
