"""The kubelet part of the agent: probes and restarts of this machine's pods (trio).

- **Probes**: each running pod's startup/readiness/liveness probes run on their schedule
  (`node.health` keeps the counts and decides, `node.checks` does the IO). A pod is ready when
  every container's probes say so; that flag goes into the machine record and, through the
  work plane, into the replica's ServiceRecord. A failed startup or liveness probe restarts the
  pod (unless its restartPolicy is Never).
- **Stopped pods** of restartPolicy Always are started again with CrashLoopBackOff-style
  back-off (`node.health.RestartBackoff`; Podman restarts a container that exits, not a pod
  someone stopped).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.manifest import WorkloadSpec
from beemesh.node.checks import run_probe
from beemesh.node.health import Outcome, PodHealth, RestartBackoff
from beemesh.node.local import Announcer, LocalNode
from beemesh.runtime import PodInfo

log = logging.getLogger("beemesh.kubelet")

TICK_S = 0.5
MAX_PARALLEL_PROBES = 8
ADDRESS_REFRESH_S = 30.0


class PodSpecs(Protocol):
    """The spec a pod here was deployed from (None: unknown to this machine)."""

    def spec_of(self, pod: PodInfo) -> WorkloadSpec | None: ...


class Deletions(Protocol):
    def deleted(self, workload_id: str) -> bool: ...


@dataclass
class _Tracked:
    """Health of one pod instance (a new task or a re-created pod starts afresh)."""

    task: str
    created: float
    spec: WorkloadSpec
    health: PodHealth
    address: str | None = None
    address_at: float = 0.0


class Kubelet:
    def __init__(self, *, node: LocalNode, specs: PodSpecs, deletions: Deletions,
                 events: EventLog, announcer: Announcer) -> None:
        self.node = node
        self.specs = specs
        self.deletions = deletions
        self.events = events
        self.announcer = announcer
        self._tracked: dict[str, _Tracked] = {}
        self._backoff: dict[str, RestartBackoff] = {}
        self._busy: set[str] = set()  # pods with a restart/start in flight
        self._limiter = trio.CapacityLimiter(MAX_PARALLEL_PROBES)

    # ---- what others read ----------------------------------------------------------------

    def ready(self, pod: PodInfo) -> bool:
        tracked = self._tracked.get(pod.name)
        return (pod.state == "running" and tracked is not None and tracked.task == pod.task_id
                and tracked.health.ready)

    # ---- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                now = time.time()
                self._track(now)
                self._probe(nursery, now)
                self._restart_stopped(nursery, now)
                await trio.sleep(TICK_S)

    def _track(self, now: float) -> None:
        """Follow the pods Podman reports: new instances get fresh probe state."""
        pods = self.node.pods
        for name in [n for n in self._tracked if n not in pods]:
            del self._tracked[name]
            self._backoff.pop(name, None)
        for pod in pods.values():
            tracked = self._tracked.get(pod.name)
            if tracked is not None and (tracked.task, tracked.created) == (pod.task_id,
                                                                           pod.created):
                continue
            spec = self.specs.spec_of(pod)
            if spec is None:
                continue  # a workload we know nothing of: nothing to probe it with
            self._tracked[pod.name] = _Tracked(pod.task_id, pod.created, spec,
                                               PodHealth.for_containers(spec.containers, now))

    # ---- probes ----------------------------------------------------------------------------

    def _probe(self, nursery: trio.Nursery, now: float) -> None:
        for name, tracked in self._tracked.items():
            pod = self.node.pods.get(name)
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
        async with self._limiter:
            if spec.action != "exec" and (tracked.address is None
                                          or time.time() - tracked.address_at
                                          > ADDRESS_REFRESH_S):
                try:
                    tracked.address = await self.node.address_of(name)
                    tracked.address_at = time.time()
                except UserError:
                    tracked.address = None

            def run_exec() -> int:
                return self.node.exec_in(name, container, list(spec.command), spec.timeout_s)[0]

            was_ready = tracked.health.ready
            outcome = await run_probe(spec, tracked.address, run_exec)
        tracked.health[container].report(which, outcome)
        if outcome is Outcome.FAILURE and which != "readiness":
            log.info("%s probe of %s/%s failed", which, name, container)
        if tracked.health.ready != was_ready:
            self.events.add(time.time(), "Ready" if tracked.health.ready else "NotReady",
                            f"{name} is {'' if tracked.health.ready else 'not '}ready",
                            workload=tracked.spec.workload_id, machine=self.node.machine)
            self.announcer.announce_soon()

    async def _restart(self, name: str, tracked: _Tracked, reason: str) -> None:
        """A failed startup/liveness probe: restart the pod (or leave it, restartPolicy Never)."""
        try:
            if tracked.spec.restart_policy == "Never":
                self.events.add(time.time(), "Unhealthy", f"{name}: {reason}; restartPolicy "
                                "Never, so it is left as it is", machine=self.node.machine)
                return
            self.events.add(time.time(), "Restarting", f"{name}: {reason}",
                            workload=tracked.spec.workload_id, machine=self.node.machine)
            await self.node.restart(name)
            tracked.health.reset(time.time())
            tracked.address = None
            self._backoff.setdefault(name, RestartBackoff()).restarted(time.time())
            self.announcer.announce_soon()
        finally:
            self._busy.discard(name)

    # ---- stopped pods ------------------------------------------------------------------------

    def _restart_stopped(self, nursery: trio.Nursery, now: float) -> None:
        deploying = self.node.deploying_pods()
        for name, tracked in self._tracked.items():
            pod = self.node.pods.get(name)
            if (pod is None or pod.state in ("running", "paused") or name in self._busy
                    or name in self.node.removing or name in deploying
                    or tracked.spec.restart_policy != "Always"
                    or self.deletions.deleted(pod.workload_id)):
                continue
            backoff = self._backoff.setdefault(name, RestartBackoff())
            if now < backoff.allowed_at(now):
                continue
            self._busy.add(name)
            nursery.start_soon(self._start, name, tracked, pod.state)

    async def _start(self, name: str, tracked: _Tracked, state: str) -> None:
        try:
            self.events.add(time.time(), "Restarted", f"{name} was {state}; restartPolicy "
                            "Always starts it again", workload=tracked.spec.workload_id,
                            machine=self.node.machine)
            await self.node.start(name, tracked.spec)
            self._backoff.setdefault(name, RestartBackoff()).restarted(time.time())
            tracked.health.reset(time.time())
            tracked.address = None
            await self.node.poll()
        finally:
            self._busy.discard(name)
