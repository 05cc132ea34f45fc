"""Taking replicas off this machine on purpose: fencing and drains (trio shell).

Twice a second it samples the quorum clocks (`membership.quorum`; the samples are what keeps
them running) and asks the sans-IO rules what to do: `node.fencing` (an outnumbered machine
stops its StatefulSet replicas) and `node.draining` (a draining machine retires every replica
and publishes its replacement). It only carries those decisions out.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio

from beemesh.events import EventLog
from beemesh.membership.quorum import Quorum
from beemesh.node.cordon import Cordon
from beemesh.node.draining import Candidate, Retire, retirements
from beemesh.node.fencing import FENCE_STOP_GRACE_S, fences
from beemesh.node.kubelet import PodSpecs
from beemesh.node.local import Announcer, LocalNode
from beemesh.runtime import PodInfo
from beemesh.workloads.store import WorkloadStore

TICK_S = 0.5


class Replacer(Protocol):
    async def replace(self, workload_id: str, ordinal: int, epoch: str) -> str | None:
        """Publish the task that replaces replica `ordinal` (whose task was `epoch`)."""
        ...


class Evictions:
    def __init__(self, *, node: LocalNode, specs: PodSpecs, store: WorkloadStore,
                 quorum: Quorum, cordon: Cordon, replacer: Replacer, events: EventLog,
                 announcer: Announcer) -> None:
        self.node = node
        self.specs = specs
        self.store = store
        self.quorum = quorum
        self.cordon = cordon
        self.replacer = replacer
        self.events = events
        self.announcer = announcer
        self._retiring: set[str] = set()  # pods being drained

    def retiring(self, pod: str) -> bool:
        return pod in self._retiring

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                now = time.time()
                self._fence(nursery, now)
                self._drain(nursery)
                await trio.sleep(TICK_S)

    def _stateful(self, pod: PodInfo) -> bool:
        spec = self.specs.spec_of(pod)
        return spec is not None and spec.kind == "StatefulSet"

    def _fence(self, nursery: trio.Nursery, now: float) -> None:
        sample = self.quorum.sample(now)
        stateful = [p.name for p in self.node.pods.values()
                    if self._stateful(p) and p.name not in self.node.removing]
        for fence in fences(sample, stateful):
            pod = self.node.pods[fence.pod]
            self.events.add(now, "Fenced", f"{fence.pod}: {fence.reason}",
                            workload=pod.workload_id, machine=self.node.machine)
            nursery.start_soon(self.node.remove, fence.pod, FENCE_STOP_GRACE_S)

    def _drain(self, nursery: trio.Nursery) -> None:
        self._retiring &= set(self.node.pods)
        grace = self.cordon.drain_grace_s
        if grace is None:
            self._retiring.clear()
            return
        pods = list(self.node.pods.values())
        candidates = [Candidate(p.name, self.store.workload(p.workload_id) is not None
                                and self.specs.spec_of(p) is not None, self._stateful(p),
                                (p.workload_id, p.ordinal) in self.node.claims)
                      for p in pods]
        by_name = {p.name: p for p in pods}
        for order in retirements(candidates, self._retiring, self.node.removing,
                                 self.cordon.keep_data):
            self._retiring.add(order.pod)
            self.announcer.announce_soon()
            nursery.start_soon(self._replace, by_name[order.pod], order, grace)

    async def _replace(self, pod: PodInfo, order: Retire, grace: int) -> None:
        if order.stop_first:
            await self.node.remove(pod.name, grace)  # the ordinal must never run twice
        if not order.replace:
            self.events.add(time.time(), "Stopped", f"{pod.name}: stopped with its data "
                            "here (drain --keep-data); it starts here again once this machine "
                            "is uncordoned", workload=pod.workload_id, machine=self.node.machine)
            return
        tid = await self.replacer.replace(pod.workload_id, pod.ordinal, pod.task_id)
        if tid is None:
            return  # deleted meanwhile
        self.events.add(time.time(), "Replacing", f"{pod.name}: replacement task {tid} "
                        "published (drain)", task=tid, workload=pod.workload_id,
                        machine=self.node.machine)
