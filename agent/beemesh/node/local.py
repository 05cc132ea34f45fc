"""This machine's pods and resources, and the only path to its container runtime for them.

`LocalNode` keeps the local facts the auction scores with (capacity, reservations, the pods
Podman runs, the deploys in flight), polls the runtime (which is also re-adoption after a
restart: the pods Podman runs, found by their `beemesh.*` labels, are the whole local state),
and deploys and removes pods. It decides nothing: which task to deploy is the auction's
(`scheduling.driver`), which pod to remove is the caller's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.manifest import WorkloadSpec
from beemesh.node.capacity import Capacity, probe_capacity
from beemesh.node.reservations import Reservations
from beemesh.runtime import PodConfig, PodInfo, PodNetwork, Runtime

log = logging.getLogger("beemesh.node")

RUNTIME_POLL_S = 3.0
# The stored images are listed again this often, and after each deploy (a pull adds some):
# an image an operator imports by hand counts for bids within this time.
IMAGES_POLL_S = 30.0
CAPACITY_CACHE_S = 2.0


class PodDirs(Protocol):
    """Where a pod's discovery files live (mounted at /run/beemesh), made before its deploy."""

    def make(self, pod: str) -> Path: ...


class PodNetworks(Protocol):
    """How a pod reaches Services (`machine.listeners`), prepared before its deploy."""

    def network_for(self, spec: WorkloadSpec, ordinal: int) -> PodNetwork | None: ...


class PodConfigs(Protocol):
    """What a pod takes from ConfigMaps and Secrets (`machine.pod_configs`), made ready before
    its deploy (UserError: why it cannot start), and removed after the pod."""

    async def prepare(self, spec: WorkloadSpec, ordinal: int,
                      task_id: str) -> PodConfig | None: ...

    def release(self, pod: str) -> None: ...

    def tidy(self, keep: set[str]) -> None: ...


class Announcer(Protocol):
    """Told when what this machine announces changed (`membership.service.Membership`)."""

    def announce_soon(self) -> None: ...


@dataclass(frozen=True)
class InFlight:
    """A deploy the auction started here and the runtime has not finished yet."""

    task_id: str
    spec: WorkloadSpec
    ordinal: int
    replacing: bool = False  # an earlier copy of the replica ran (a heal, drain or update)

    @property
    def pod(self) -> str:
        return self.spec.pod_name(self.ordinal)


@dataclass(frozen=True)
class Deployment:
    """How one deploy went: the pod, or why there is none."""

    pod: PodInfo | None
    reason: str = ""
    took_s: float = 0.0


class LocalNode:
    def __init__(self, *, machine: str, cfg: AgentConfig, runtime: Runtime, events: EventLog,
                 announcer: Announcer, pod_dirs: PodDirs | None,
                 networks: PodNetworks | None = None, configs: PodConfigs | None = None) -> None:
        self.machine = machine
        self.cfg = cfg
        self.runtime = runtime
        self.events = events
        self.announcer = announcer
        self.pod_dirs = pod_dirs
        self.networks = networks
        self.configs = configs
        self.pods: dict[str, PodInfo] = {}  # name -> pod, as the runtime last reported
        self.in_flight: dict[str, InFlight] = {}  # task id -> deploy in flight
        self.removing: set[str] = set()  # pods being stopped and removed
        self.reservations = Reservations()
        self.runtime_ok = False
        self.runtime_error = "not checked yet"
        self.images: frozenset[str] | None = None  # stored images (None: not listed yet)
        # (workload, ordinal) of the claim volumes here, listed with the images
        self.claims: frozenset[tuple[str, int]] = frozenset()
        self.disk: tuple[int, int] | None = None  # (free, total) bytes for volumes
        self._images_at: float | None = None  # monotonic time they were listed (None: due)
        self._capacity: Capacity | None = None
        self._capacity_at = 0.0

    # ---- facts --------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        """What this machine offers: cgroup-aware, capped by max_cpu_milli / max_memory_bytes."""
        if self._capacity is None or time.monotonic() - self._capacity_at > CAPACITY_CACHE_S:
            cap = probe_capacity()
            cpu = min(cap.cpu_milli, self.cfg.max_cpu_milli or cap.cpu_milli)
            mem = min(cap.memory_bytes, self.cfg.max_memory_bytes or cap.memory_bytes)
            self._capacity = dataclasses.replace(
                cap, cpu_milli=cpu, memory_bytes=mem,
                memory_available_bytes=min(cap.memory_available_bytes, mem))
            self._capacity_at = time.monotonic()
        return self._capacity

    def free(self) -> tuple[Capacity, int, int]:
        """(capacity, cpu_milli free, memory bytes free) after reservations."""
        cap = self.capacity()
        cpu, mem = self.reservations.free(cap)
        return cap, cpu, mem

    def deploying_pods(self) -> set[str]:
        """Pods being deployed right now (not to be restarted, judged or cleaned up yet)."""
        return {f.pod for f in self.in_flight.values()}

    def replicas_here(self) -> dict[str, int]:
        """Workload id -> replicas running or being deployed here."""
        here: dict[str, int] = {}
        for wid in [p.workload_id for p in self.pods.values()] + [
                f.spec.workload_id for f in self.in_flight.values()]:
            here[wid] = here.get(wid, 0) + 1
        return here

    def ordinals_here(self) -> frozenset[tuple[str, int]]:
        """(workload, ordinal) of the pods here and being deployed here, except those being
        removed: a pod's name is its replica's, so a second copy cannot start beside one."""
        return frozenset([(p.workload_id, p.ordinal) for name, p in self.pods.items()
                          if name not in self.removing]
                         + [(f.spec.workload_id, f.ordinal) for f in self.in_flight.values()])

    def used_host_ports(self) -> frozenset[tuple[int, str]]:
        # The runtime reports port numbers only: hold them for both protocols.
        ports = {(port, proto) for pod in self.pods.values() for port in pod.host_ports
                 for proto in ("TCP", "UDP")}
        for f in self.in_flight.values():
            ports.update(f.spec.host_ports())
        return frozenset(ports)

    # ---- the runtime ----------------------------------------------------------------------

    async def poll_loop(self) -> None:
        while True:
            await trio.sleep(RUNTIME_POLL_S)
            await self.poll()

    async def poll(self) -> None:
        """Refresh runtime health and the pods running here (this is also re-adoption)."""
        try:
            await trio.to_thread.run_sync(self.runtime.ping)
            pods = await trio.to_thread.run_sync(self.runtime.list_pods)
            if self._images_at is None or time.monotonic() - self._images_at >= IMAGES_POLL_S:
                self.images = await trio.to_thread.run_sync(self.runtime.images)
                claims = await trio.to_thread.run_sync(self.runtime.claims)
                self.disk = await trio.to_thread.run_sync(self.runtime.disk)
                if claims != self.claims:
                    self.claims = claims
                    self.announcer.announce_soon()  # where the data is: in the record
                self._images_at = time.monotonic()
        except UserError as e:
            if self.runtime_ok or self.runtime_error != str(e):
                log.error("container runtime unavailable, not bidding: %s", e)
                self.events.add(time.time(), "RuntimeDown", str(e), machine=self.machine)
            self.runtime_ok, self.runtime_error = False, str(e)
            return
        if not self.runtime_ok:
            log.info("container runtime available; %d beemesh pods running here", len(pods))
            self.events.add(time.time(), "RuntimeUp", f"{len(pods)} pods adopted",
                            machine=self.machine)
        self.runtime_ok, self.runtime_error = True, ""
        fresh = {p.name: p for p in pods}
        if {(p.name, p.state) for p in fresh.values()} != {
                (p.name, p.state) for p in self.pods.values()}:
            self.announcer.announce_soon()
        self.pods = fresh
        self._rebuild_reservations()
        if self.configs is not None:
            self.configs.tidy(set(fresh) | self.deploying_pods())

    def _rebuild_reservations(self) -> None:
        cap = self.capacity()
        res = Reservations(cap)
        for pod in self.pods.values():
            res.reserve(pod.task_id, pod.cpu_milli, pod.memory_bytes, cap)
        for f in self.in_flight.values():
            if f.task_id not in res:
                cpu, mem = f.spec.requests()
                res.reserve(f.task_id, cpu, mem, cap)
        self.reservations = res

    def expect(self, task_id: str, spec: WorkloadSpec, ordinal: int,
               replacing: bool = False) -> None:
        """The auction won `task_id` here: count it from now on, before `deploy` runs."""
        self.in_flight[task_id] = InFlight(task_id, spec, ordinal, replacing)

    async def deploy(self, task_id: str) -> Deployment:
        """Reserve and deploy an expected task; the pod, or why not. Ends the expectation."""
        job = self.in_flight[task_id]
        result = Deployment(None, "deploy cancelled")
        try:
            result = await self._deploy(job)
        finally:
            del self.in_flight[task_id]
            self._images_at = None  # a pull may have added images, a deploy a claim
            if result.pod is None:
                self.reservations.release(task_id)
        return result

    async def _deploy(self, job: InFlight) -> Deployment:
        if not self.runtime_ok:
            return Deployment(None, f"runtime unavailable on {self.machine}: "
                                    f"{self.runtime_error}")
        cpu, mem = job.spec.requests()
        if not self.reservations.reserve(job.task_id, cpu, mem, self.capacity()):
            return Deployment(None, "resources were taken by another task meanwhile")
        if self.cfg.deploy_delay_s:
            await trio.sleep(self.cfg.deploy_delay_s)
        directory = self.pod_dirs.make(job.pod) if self.pod_dirs is not None else None
        t0 = time.monotonic()
        try:
            network = self.networks.network_for(job.spec, job.ordinal) \
                if self.networks is not None else None
            config = await self.configs.prepare(job.spec, job.ordinal, job.task_id) \
                if self.configs is not None else None
            pod = await trio.to_thread.run_sync(
                self.runtime.deploy, job.spec, job.ordinal, job.task_id, directory, network,
                config, job.replacing)
        except UserError as e:
            if self.configs is not None:
                self.configs.release(job.pod)
            return Deployment(None, str(e))
        took = time.monotonic() - t0
        if took > self.cfg.deploy_timeout_s:  # kept: the lease held others back
            self.events.add(time.time(), "SlowDeploy", f"{pod.name} took {took:.1f} s to "
                            "start", task=job.task_id, workload=job.spec.workload_id,
                            machine=self.machine)
        if pod.afresh:
            self.events.add(time.time(), "StartedAfresh", f"{pod.name} started with empty "
                            "claim volumes: none were on this machine (the machine that held "
                            "them is gone)", task=job.task_id, workload=job.spec.workload_id,
                            machine=self.machine)
        self.pods[pod.name] = pod
        self.announcer.announce_soon()
        return Deployment(pod, took_s=took)

    async def remove(self, pod_name: str, grace_s: float | None = None) -> None:
        """Stop and remove a pod here (once at a time per pod); errors are logged."""
        if pod_name in self.removing:
            return
        self.removing.add(pod_name)
        try:
            await trio.to_thread.run_sync(self.runtime.remove, pod_name, grace_s)
        except UserError as e:
            log.error("could not remove pod %s: %s", pod_name, e)
            return
        finally:
            self.removing.discard(pod_name)
        if self.configs is not None:
            self.configs.release(pod_name)
        self.pods.pop(pod_name, None)
        self._rebuild_reservations()
        self.announcer.announce_soon()

    async def remove_claims(self, workload_id: str, ordinal: int | None = None) -> None:
        """Remove a workload's claim volumes here (of one ordinal, or all); errors logged."""
        try:
            n = await trio.to_thread.run_sync(self.runtime.remove_claims, workload_id, ordinal)
        except UserError as e:
            log.error("could not remove the claim volumes of %s: %s", workload_id, e)
            return
        if n:
            which = "" if ordinal is None else f" ordinal {ordinal}"
            self.events.add(time.time(), "VolumesDeleted", f"{n} claim volume(s) of "
                            f"{workload_id}{which} removed", workload=workload_id,
                            machine=self.machine)
            self._images_at = None  # the record lists the claims left

    async def start(self, pod_name: str, spec: WorkloadSpec | None = None) -> None:
        """Start a stopped pod again (restartPolicy Always); its configMap and secret files
        are written again first (a reboot empties the tmpfs they were on)."""
        pod = self.pods.get(pod_name)
        try:
            if self.configs is not None and spec is not None and pod is not None:
                await self.configs.prepare(spec, pod.ordinal, pod.task_id)
            await trio.to_thread.run_sync(self.runtime.start, pod_name)
        except UserError as e:
            log.error("could not start %s again: %s", pod_name, e)

    async def address_of(self, pod_name: str) -> str | None:
        """The pod's IP on this machine (HTTP and TCP probes connect there)."""
        return await trio.to_thread.run_sync(self.runtime.pod_address, pod_name)

    def exec_in(self, pod_name: str, container: str, argv: list[str],
                timeout_s: float) -> tuple[int, str]:
        """(exit code, output) of a command in a container (exec probes, `beemesh exec`;
        blocks: call it in a thread)."""
        return self.runtime.exec_in(pod_name, container, argv, timeout_s)

    def logs(self, pod_name: str, follow: bool) -> Iterator[str]:
        """The pod's log lines (blocks: drive it from a thread)."""
        return self.runtime.logs(pod_name, follow)

    async def restart(self, pod_name: str) -> None:
        """Restart a pod whose startup or liveness probe failed."""
        try:
            await trio.to_thread.run_sync(self.runtime.restart, pod_name)
        except UserError as e:
            log.error("could not restart %s: %s", pod_name, e)
