"""Carrying out the operator's Deletes on this machine and relaying them (trio shell around
`workloads.deletes`).

A Delete (from the operator, or relayed by a machine inside a `RelayedDelete`) is kept by the
store, ends this machine's auctions of that workload, and every pod of it here is removed,
whenever one turns up. Once a second, Deletes are relayed to the machines whose records still
list a pod of a deleted workload, or that asked for a task of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import trio

from beemesh import wire
from beemesh.events import EventLog
from beemesh.identity import KeyPair
from beemesh.membership.view import MachineView
from beemesh.mesh.host import MeshHost
from beemesh.node.local import LocalNode
from beemesh.scheduling.tasks import Task
from beemesh.topics import TOPIC_TASKS
from beemesh.workloads.deletes import RelayPolicy, doomed
from beemesh.workloads.messages import RELAYED_DELETE
from beemesh.workloads.store import DELETE_TTL_S, WorkloadStore

TICK_S = 1.0


class TaskFollower(Protocol):
    def forget_workload(self, workload_id: str) -> None: ...


class Deleter:
    def __init__(self, *, key: KeyPair, store: WorkloadStore, node: LocalNode,
                 tasks: TaskFollower, view: MachineView, mesh: MeshHost, events: EventLog,
                 authenticate_delete: Callable[[bytes], wire.Envelope]) -> None:
        """`authenticate_delete`: checks an operator-signed Delete of any age."""
        self.key = key
        self.machine = key.peer_id
        self.store = store
        self.node = node
        self.tasks = tasks
        self.view = view
        self.mesh = mesh
        self.events = events
        self.authenticate_delete = authenticate_delete
        self.policy = RelayPolicy()
        self._wake = trio.Event()
        self._claims_go: set[str] = set()  # deleted workloads whose claim volumes go too

    # ---- checks (in the topic validator) -----------------------------------------------------

    def check_relayed(self, env: wire.Envelope) -> wire.Envelope:
        """The operator's Delete inside a RelayedDelete: trusted signer, younger than its TTL."""
        inner = self.authenticate_delete(env.body["delete"])
        if inner.ts_ms / 1000 + DELETE_TTL_S <= time.time():
            raise wire.Rejected("stale", "relayed Delete is older than the delete TTL")
        return inner

    def refuse_stale(self, task: Task) -> None:
        """A Task of a workload deleted after its apply (the asker missed the Delete: it is
        told again), or of an older apply than this machine holds (a replayed manifest would
        roll the workload back)."""
        applied = task.generation / 1000
        if self.store.is_deleted(task.workload_id, applied):
            self.policy.asked(task.workload_id)
            raise wire.Rejected("stale", f"{task.workload_id} was deleted after this apply")
        if self.store.is_superseded(task.workload_id, applied):
            raise wire.Rejected("stale", f"{task.workload_id}: a newer apply is known here")

    # ---- messages ------------------------------------------------------------------------------

    def on_delete(self, env: wire.Envelope) -> None:
        """A verified operator Delete (directly, or out of a RelayedDelete)."""
        now = time.time()
        wid = env.body["workload_id"]
        if not self.store.add_delete(wire.encode(env), env, now) and \
                self.store.delete_of(wid) is None:
            return  # older than a newer apply, or expired
        stored = self.store.workload(wid)
        if env.body.get("volumes") or (stored is not None
                                       and stored.spec.delete_claims_on_delete):
            self._claims_go.add(wid)
        self.tasks.forget_workload(wid)
        doomed_here = [p for p in self.node.pods.values() if p.workload_id == wid]
        self.events.add(now, "Deleted", f"{wid}: removing {len(doomed_here)} pod(s) here",
                        workload=wid, machine=self.machine)
        self._wake.set()  # remove them now (a stop may wait out its grace period)

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Remove doomed pods at once when a Delete arrives (and every second); relay Deletes
        in a loop of its own, so a slow publish never holds a removal back."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._relay_loop)
            while True:
                self._wake = trio.Event()
                for pod in doomed(self.node.pods.values(), self.store.deleted,
                                  self.node.removing):
                    nursery.start_soon(self.node.remove, pod)
                for wid in [w for w in self._claims_go if not any(
                        p.workload_id == w for p in self.node.pods.values())]:
                    self._claims_go.discard(wid)  # its pods are gone: their volumes go
                    nursery.start_soon(self.node.remove_claims, wid)
                with trio.move_on_after(TICK_S):
                    await self._wake.wait()

    async def _relay_loop(self) -> None:
        while True:
            now = time.time()
            self.store.expire(now)
            await self._relay(now)
            await trio.sleep(TICK_S)

    async def _relay(self, now: float) -> None:
        listed = [(entry.peer_id, pod.workload_id)
                  for entry, pod in self.view.pods_elsewhere(self.machine)]
        for wid in self.policy.due(listed, self.store.deleted, now):
            delete = self.store.delete_of(wid)
            if delete is not None:
                body = {"origin": self.machine, "delete": delete.blob}
                await self.mesh.publish(TOPIC_TASKS, wire.seal(self.key, RELAYED_DELETE.name,
                                                               body, now))
