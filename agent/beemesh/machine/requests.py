"""The operator's requests that reach this agent's API: apply, delete, cordon, drain.

The CLI signs them with the operator key (`cli.operator_client`); this agent checks the
signature against the fleet's trust list and hands them to the mesh. An apply publishes the
signed Workload (every machine keeps the newest), then a Task for each replica that runs
nowhere yet (`scheduling.apply`), replicas of one workload
`REPLICA_STAGGER_S` apart (longer than a selection window, so each machine already knows who
won the previous replica: that is what spreads replicas). Delete, Cordon and Drain are
published as they are; every machine (this one too, when the message comes back) acts on them.
Each accepted request goes into the audit trail (`machine.audit_log`).
"""

from __future__ import annotations

import time
from typing import Any

import trio

from beemesh import wire
from beemesh.errors import UserError
from beemesh.machine.audit_log import Audit
from beemesh.machine.pods import Pods
from beemesh.manifest import WorkloadSpec
from beemesh.mesh.host import MeshHost
from beemesh.scheduling.apply import plan_apply
from beemesh.scheduling.driver import AuctionDriver
from beemesh.topics import TOPIC_TASKS
from beemesh.workloads.messages import (
    DELETE,
    OBJECT_KINDS,
    ObjectSpec,
    check_object,
    check_workload,
)
from beemesh.workloads.store import WorkloadStore

REPLICA_STAGGER_S = 0.4  # > the longest selection window: replica k+1 sees who won replica k


class OperatorRequests:
    def __init__(self, *, driver: AuctionDriver, store: WorkloadStore, pods: Pods,
                 mesh: MeshHost, applies: wire.Verifier, requests: wire.Verifier,
                 audit: Audit) -> None:
        """`applies` checks signed Workloads and Services; `requests` Delete, Cordon and
        Drain; `audit` keeps each accepted request."""
        self.driver = driver
        self.store = store
        self.pods = pods
        self.mesh = mesh
        self.applies = applies
        self.requests = requests
        self.audit = audit

    async def apply(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        """Verify operator-signed workloads and objects (all before acting on any), keep
        and publish each (objects first: the pods of the workloads read them), and publish a
        Task for each missing replica of a workload."""
        now = time.time()
        accepted: list[tuple[WorkloadSpec | ObjectSpec, bytes, wire.Envelope]] = []
        for blob in blobs:
            try:
                # unremembered: our own delivery of it must not look like a replay (py-libp2p
                # validates what we publish, and forwards nothing it refuses)
                env = self.applies.check(blob, now, remember=False)
                spec = (check_object if env.kind in OBJECT_KINDS else check_workload)(blob, env)
            except wire.Rejected as e:
                raise UserError(f"apply rejected ({e.reason}): {e.detail}") from None
            accepted.append((spec, blob, env))
        out: list[dict[str, Any]] = []
        accepted.sort(key=lambda a: isinstance(a[0], WorkloadSpec))
        for spec, blob, env in accepted:
            if not isinstance(spec, WorkloadSpec):
                out.append(await self._apply_object(spec, blob, env, now))
                continue
            stored = self.store.add_workload(blob, env)
            if stored is None:
                raise UserError(f"{spec.workload_id}: a newer apply or delete is already known; "
                                "check the clock of this machine and apply again")
            self.audit(env, now, spec.workload_id)
            # Every machine keeps the newest apply: the replicas count and the pod template
            # they scale and roll to (`workplane.rollout`), not only this one.
            await self.mesh.publish(TOPIC_TASKS, blob)
            running = {(r["workload"], r["replica"]) for r in self.pods.rows()}
            running |= self.driver.deployed_replicas()  # records may still be on their way
            published = False
            for step in plan_apply(spec, stored.generation, running):
                if not step.exists:
                    if published:
                        await trio.sleep(REPLICA_STAGGER_S)
                    await self.driver.publish(self.driver.task_for(stored, step.ordinal))
                    published = True
                out.append(step.to_dict())
        return out

    async def _apply_object(self, spec: ObjectSpec, blob: bytes, env: wire.Envelope,
                            now: float) -> dict[str, Any]:
        """Keep a Service, ConfigMap or Secret and publish it: every machine keeps the
        newest."""
        if self.store.add_object(blob, env) is None:
            raise UserError(f"{spec.object_id}: a newer apply or delete is already known; "
                            "check the clock of this machine and apply again")
        self.audit(env, now, spec.object_id)
        await self.mesh.publish(TOPIC_TASKS, blob)
        return {"workload": spec.object_id, "replica": "-", "task_id": "-", "state": "applied"}

    async def forward(self, blob: bytes) -> wire.Envelope:
        """Check an operator-signed Delete/Cordon/Drain and publish it."""
        try:
            env = self.requests.check(blob, now := time.time(), remember=False)
        except wire.Rejected as e:
            raise UserError(f"request rejected ({e.reason}): {e.detail}") from None
        self.audit(env, now, "")
        await self.mesh.publish(TOPIC_TASKS, blob)
        return env

    async def delete(self, blob: bytes) -> dict[str, Any]:
        env = await self.forward(blob)
        if env.kind != DELETE.name:
            raise UserError("expected a signed Delete request")
        wid = env.body["workload_id"]
        known = [r for r in self.pods.rows() if r["workload"] == wid]
        return {"workload": wid, "replicas": len(known)}
