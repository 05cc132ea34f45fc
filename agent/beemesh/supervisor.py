"""The kubelet part of the agent: probes, restarts, fencing and drains of this machine's pods.

- **Probes**: each running pod's startup/readiness/liveness probes run on their schedule
  (`beemesh.probes` keeps the counts, `beemesh.probing` does the IO). A pod is ready when
  every container's probes say so; that flag goes into the machine record and, through the
  work plane, into the replica's ServiceRecord. A failed startup or liveness probe restarts the
  pod (unless its restartPolicy is Never).
- **Stopped pods** of restartPolicy Always are started again with CrashLoopBackOff-style
  back-off (Podman restarts a container that exits, not a pod someone stopped).
- **Fencing**: when the machines out of this machine's sight are a strict majority of the
  members, it stops its StatefulSet replicas, because the majority may now start them
  elsewhere (see docs/architecture.md, "StatefulSet").
- **Drain**: every replica here is marked retiring and a replacement task is published (it is
  cordoned, so the replacement lands elsewhere). Deployment replicas stop once the work plane
  sees the replacement ready (its surplus rule); StatefulSet replicas stop first and are
  replaced after, so an ordinal never runs twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from beemesh.errors import UserError
from beemesh.manifest import WorkloadSpec
from beemesh.probes import Outcome, PodHealth, RestartBackoff
from beemesh.probing import run_probe
from beemesh.runtime import PodInfo

if TYPE_CHECKING:
    from beemesh.scheduling import Scheduling

log = logging.getLogger("beemesh.supervisor")

TICK_S = 0.5
FENCE_GRACE_S = 1.0
FENCE_STOP_GRACE_S = 2.0
MAX_PARALLEL_PROBES = 8


@dataclass
class _Tracked:
    """Health of one pod instance (a new task or a re-created pod starts afresh)."""

    task: str
    created: float
    spec: WorkloadSpec
    health: PodHealth
    address: str | None = None
    address_at: float = 0.0


@dataclass
class Supervisor:
    sch: Scheduling
    quorum_memory_s: float = 600.0
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    _backoff: dict[str, RestartBackoff] = field(default_factory=dict)
    _busy: set[str] = field(default_factory=set)  # pods with a restart/start in flight
    retiring: set[str] = field(default_factory=set)  # pods being drained
    _outnumbered_since: float | None = None
    _limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(MAX_PARALLEL_PROBES))

    # ---- what others read ----------------------------------------------------------------

    def ready(self, pod: PodInfo) -> bool:
        tracked = self._tracked.get(pod.name)
        return (pod.state == "running" and tracked is not None and tracked.task == pod.task_id
                and tracked.health.ready)

    def extras(self, pod: PodInfo) -> dict[str, Any]:
        return {"ready": self.ready(pod), "retiring": pod.name in self.retiring}

    # ---- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                now = time.time()
                self._track(now)
                self._probe(nursery, now)
                self._restart_stopped(nursery, now)
                self._fence(nursery, now)
                self._drain(nursery, now)
                await trio.sleep(TICK_S)

    def spec_of(self, pod: PodInfo) -> WorkloadSpec | None:
        info = self.sch.tasks.get(pod.task_id)
        if info is not None:
            return info.spec
        stored = self.sch.store.workload(pod.workload_id)
        return stored.spec if stored is not None else None

    def _track(self, now: float) -> None:
        """Follow the pods Podman reports: new instances get fresh probe state."""
        pods = self.sch.local_pods
        for name in [n for n in self._tracked if n not in pods]:
            del self._tracked[name]
            self._backoff.pop(name, None)
            self.retiring.discard(name)
        for pod in pods.values():
            tracked = self._tracked.get(pod.name)
            if tracked is not None and (tracked.task, tracked.created) == (pod.task_id,
                                                                           pod.created):
                continue
            spec = self.spec_of(pod)
            if spec is None:
                continue  # a workload we know nothing of: nothing to probe it with
            self._tracked[pod.name] = _Tracked(pod.task_id, pod.created, spec,
                                               PodHealth.for_containers(spec.containers, now))

    # ---- probes ----------------------------------------------------------------------------

    def _probe(self, nursery: trio.Nursery, now: float) -> None:
        for name, tracked in self._tracked.items():
            pod = self.sch.local_pods.get(name)
            if pod is None or pod.state != "running" or name in self._busy:
                continue
            for container, which, spec in tracked.health.due(now):
                tracked.health[container].start(which, now)
                nursery.start_soon(self._run_probe, name, tracked, container, which, spec)
            reason = tracked.health.restart_reason
            if reason is not None:
                self._busy.add(name)
                nursery.start_soon(self._restart, name, tracked, reason)

    async def _run_probe(self, name: str, tracked: _Tracked, container: str, which: str,
                         spec: Any) -> None:
        runtime = self.sch.runtime
        if runtime is None:
            return
        async with self._limiter:
            if spec.action != "exec" and (tracked.address is None
                                          or time.time() - tracked.address_at > 30):
                try:
                    tracked.address = await trio.to_thread.run_sync(runtime.pod_address, name)
                    tracked.address_at = time.time()
                except UserError:
                    tracked.address = None

            def run_exec() -> int:
                assert runtime is not None
                return runtime.exec_in(name, container, list(spec.command), spec.timeout_s)[0]

            was_ready = tracked.health.ready
            outcome = await run_probe(spec, tracked.address, run_exec)
        tracked.health[container].report(which, outcome)
        if outcome is Outcome.FAILURE and which != "readiness":
            log.info("%s probe of %s/%s failed", which, name, container)
        if tracked.health.ready != was_ready:
            self.sch.events.add(time.time(), "Ready" if tracked.health.ready else "NotReady",
                                f"{name} is {'' if tracked.health.ready else 'not '}ready",
                                workload=tracked.spec.workload_id, node=self.sch.node)
            self.sch.pods_changed()

    async def _restart(self, name: str, tracked: _Tracked, reason: str) -> None:
        """A failed startup/liveness probe: restart the pod (or leave it, restartPolicy Never)."""
        runtime = self.sch.runtime
        try:
            if runtime is None or tracked.spec.restart_policy == "Never":
                self.sch.events.add(time.time(), "Unhealthy", f"{name}: {reason}; restartPolicy "
                                    "Never, so it is left as it is", node=self.sch.node)
                return
            self.sch.events.add(time.time(), "Restarting", f"{name}: {reason}",
                                workload=tracked.spec.workload_id, node=self.sch.node)
            try:
                await trio.to_thread.run_sync(runtime.restart, name)
            except UserError as e:
                log.error("could not restart %s: %s", name, e)
            tracked.health.reset(time.time())
            tracked.address = None
            self._backoff.setdefault(name, RestartBackoff()).restarted(time.time())
            self.sch.pods_changed()
        finally:
            self._busy.discard(name)

    # ---- stopped pods ------------------------------------------------------------------------

    def _restart_stopped(self, nursery: trio.Nursery, now: float) -> None:
        deploying = self.sch.deploying_pods()
        for name, tracked in self._tracked.items():
            pod = self.sch.local_pods.get(name)
            if (pod is None or pod.state in ("running", "paused") or name in self._busy
                    or name in self.sch.removing or name in deploying
                    or tracked.spec.restart_policy != "Always"
                    or self.sch.store.tombstone(pod.workload_id) is not None):
                continue
            backoff = self._backoff.setdefault(name, RestartBackoff())
            if now < backoff.allowed_at(now):
                continue
            self._busy.add(name)
            nursery.start_soon(self._start, name, tracked, pod.state)

    async def _start(self, name: str, tracked: _Tracked, state: str) -> None:
        runtime = self.sch.runtime
        try:
            if runtime is None:
                return
            self.sch.events.add(time.time(), "Restarted", f"{name} was {state}; restartPolicy "
                                "Always starts it again", workload=tracked.spec.workload_id,
                                node=self.sch.node)
            try:
                await trio.to_thread.run_sync(runtime.start, name)
            except UserError as e:
                log.error("could not start %s again: %s", name, e)
            self._backoff.setdefault(name, RestartBackoff()).restarted(time.time())
            tracked.health.reset(time.time())
            tracked.address = None
            await self.sch.poll_runtime()
        finally:
            self._busy.discard(name)

    # ---- fencing -------------------------------------------------------------------------------

    def _fence(self, nursery: trio.Nursery, now: float) -> None:
        stateful = [p for p in self.sch.local_pods.values()
                    if (t := self._tracked.get(p.name)) is not None
                    and t.spec.kind == "StatefulSet" and p.name not in self.sch.removing]
        if not self.sch.view.outnumbered(now, self.quorum_memory_s):
            self._outnumbered_since = None
            return
        if self._outnumbered_since is None:
            self._outnumbered_since = now
        if not stateful or now - self._outnumbered_since < FENCE_GRACE_S:
            return
        visible, known = self.sch.view.membership(now, self.quorum_memory_s)
        for pod in stateful:
            self.sch.events.add(now, "Fenced", f"{pod.name}: only {visible} of {known} machines "
                                "in sight; stopping this StatefulSet replica so the majority "
                                "can run it", workload=pod.workload_id, node=self.sch.node)
            nursery.start_soon(self.sch.remove, pod.name, FENCE_STOP_GRACE_S)

    # ---- drain ---------------------------------------------------------------------------------

    def _drain(self, nursery: trio.Nursery, now: float) -> None:
        grace = self.sch.drain_grace_s
        if grace is None:
            self.retiring.clear()
            return
        for pod in list(self.sch.local_pods.values()):
            if pod.name in self.retiring or pod.name in self.sch.removing:
                continue
            tracked = self._tracked.get(pod.name)
            if self.sch.store.workload(pod.workload_id) is None or tracked is None:
                continue
            self.retiring.add(pod.name)
            self.sch.pods_changed()
            nursery.start_soon(self._replace, pod, tracked.spec.kind == "StatefulSet", grace)

    async def _replace(self, pod: PodInfo, stateful: bool, grace: int) -> None:
        if stateful:
            await self.sch.remove(pod.name, grace)  # first: the ordinal must never run twice
        stored = self.sch.store.workload(pod.workload_id)
        if stored is None:
            return  # deleted meanwhile
        tid = await self.sch.replace(stored, pod.ordinal, pod.task_id)
        self.sch.events.add(time.time(), "Replacing", f"{pod.name}: replacement task {tid} "
                            "published (drain)", task=tid, workload=pod.workload_id,
                            node=self.sch.node)
