"""The machine agent: one long-lived process per machine, composed of thin services.

`Agent` builds every service with the narrow views it reads and runs them all in one nursery;
this is the only place they are wired together. Lowest first: the mesh host and the fleet view
(`membership`), this machine's node (`node`), the auction (`scheduling`), then the services
that combine them (this package). Shutdown: the work plane withdraws its records first, then
this machine withdraws its own record, then everything stops.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import trio

from beemesh import wire
from beemesh.allocator import give_back_loop
from beemesh.api.server import ApiServer
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.fleet import Fleet
from beemesh.identity import KeyPair
from beemesh.machine.audit_log import AuditLog
from beemesh.machine.deleting import Deleter
from beemesh.machine.exchange import ManifestExchange
from beemesh.machine.inbound import TOPIC_KINDS, Drops, Inbound, PlaneGuard
from beemesh.machine.listeners import Listeners
from beemesh.machine.persistence import Persister
from beemesh.machine.pod_access import PodAccess
from beemesh.machine.pod_configs import PodConfigs, secrets_used
from beemesh.machine.pods import Pods
from beemesh.machine.requests import OperatorRequests
from beemesh.machine.routes import AgentApi
from beemesh.machine.workplane_dirs import WorkPlaneDirs, resolve_user
from beemesh.machine.workplane_link import CertifiedKeys, WorkPlaneLink
from beemesh.membership import members_file
from beemesh.membership.admission import REVOKE, Admission
from beemesh.membership.admission_service import AdmissionService, load_own_cert
from beemesh.membership.dht import MACHINE_DHT_PREFIX, MACHINE_NS, MachineRecordValidator
from beemesh.membership.lateness import Lateness
from beemesh.membership.quorum import Quorum
from beemesh.membership.records import MachineRecord, RecordCapacity
from beemesh.membership.service import Membership, dialable
from beemesh.membership.view import MachineView
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.metrics import Metrics
from beemesh.node.capacity import machine_arch
from beemesh.node.cordon import Cordon
from beemesh.node.evictions import Evictions
from beemesh.node.kubelet import Kubelet
from beemesh.node.local import LocalNode
from beemesh.podconfig.holding import SecretCopies
from beemesh.podconfig.writing import PodFiles
from beemesh.runtime import Runtime
from beemesh.scheduling.driver import AuctionDriver
from beemesh.scheduling.leases import LEASE_NS, LeaseValidator
from beemesh.scheduling.messages import LEASE
from beemesh.topics import TOPIC_EVENTS
from beemesh.workloads.messages import (
    CORDON,
    DELETE,
    DRAIN,
    EXEC_REQUEST,
    LOGS_REQUEST,
    OBJECT_KINDS,
    WORKLOAD,
)
from beemesh.workloads.store import WorkloadStore

log = logging.getLogger("beemesh.agent")


class Agent:
    def __init__(self, cfg: AgentConfig, key: KeyPair, fleet: Fleet, runtime: Runtime,
                 log_level: str = "info") -> None:
        self.cfg = cfg
        self.key = key
        self.fleet = fleet
        self.machine = key.peer_id
        self._replay = wire.ReplayGuard()
        self.metrics = Metrics()
        self.events = EventLog()
        self.files = WriteBehind()
        self.view = MachineView()
        remembered = members_file.load(cfg.state_dir)
        self.view.remember(remembered.members)
        self.lateness = Lateness(others=lambda: len(self.view.machine_ids() - {self.machine}))
        self.quorum = Quorum(self.view, cfg.quorum_memory_s, unsure_until=0.0 if
                             remembered.trusted else time.time() + cfg.quorum_memory_s)
        workloads = self.verifier_for({WORKLOAD.name: WORKLOAD})
        deletes = self.verifier_for({DELETE.name: DELETE})  # any age: stored and relayed
        objects = self.verifier_for(OBJECT_KINDS)
        self.store = WorkloadStore(cfg.state_dir, workloads.authenticate, deletes.authenticate,
                                   self.files, objects.authenticate)

        self.persister = Persister(self.files, self.events, self.machine)
        self.audit = AuditLog(cfg.state_dir, self.files, self.events,
                              self.fleet.trusted_operators, self.machine)
        self.drops = Drops(self.metrics)
        self.certified = CertifiedKeys()
        self.admission = Admission(fleet.trusted_operators, fleet.admission_required)
        self.cert = load_own_cert(cfg.cert_path, self.machine, cfg.labels,
                                  fleet.admission_required, self.admission, time.time())
        guard = PlaneGuard(self.view, self.certified, self.admission)
        records = MachineRecordValidator(self.verifier_for(TOPIC_KINDS[TOPIC_EVENTS]),
                                         guard.refuse, self.drops.refused_value)
        self.mesh = MeshHost(HostSettings(
            key=key, psk_hex=fleet.psk_hex, listen=cfg.listen, dht_prefix=MACHINE_DHT_PREFIX,
            dht_validators={MACHINE_NS: records, LEASE_NS: LeaseValidator(
                self.verifier_for({LEASE.name: LEASE}), guard.refuse, self.drops.refused_value)},
            heartbeat_s=cfg.gossip_heartbeat_s, allow_peer=guard.allows_connection,
            admitted=guard.admitted))
        self.membership = Membership(key=key, cfg=cfg, mesh=self.mesh, view=self.view,
                                     metrics=self.metrics, authenticate=records.authenticate,
                                     on_drop=self.drops.count, files=self.files,
                                     lateness=self.lateness, events=self.events)

        user = resolve_user(cfg.workplane_user) if cfg.workplane and os.geteuid() == 0 else None
        dirs = WorkPlaneDirs(cfg, user)
        self.listeners: Listeners | None = None
        if cfg.workplane:
            self.listeners = Listeners(runtime=runtime, store=self.store,
                                       directory=cfg.state_dir / "names",
                                       running=lambda: list(self.node.pods.values()),
                                       deploying=lambda: self.node.deploying_pods(),
                                       metrics=self.metrics)
        self.node = LocalNode(
            machine=self.machine, cfg=cfg, runtime=runtime, events=self.events,
            announcer=self.membership, pod_dirs=dirs if cfg.workplane else None,
            networks=self.listeners)
        self.cordon = Cordon(cfg.state_dir, self.machine, self.events, self.membership,
                             self.files)
        self.driver = AuctionDriver(
            key=key, cfg=cfg, mesh=self.mesh, node=self.node, cordon=self.cordon,
            view=self.view, quorum=self.quorum, lateness=self.lateness, store=self.store,
            events=self.events, metrics=self.metrics, on_drop=self.drops.count)
        self.secrets = SecretCopies(
            key=key, mesh=self.mesh, secrets=self.store, tasks=self.driver,
            directory=cfg.state_dir / "secrets", events=self.events, metrics=self.metrics,
            used=self._secrets_used)
        self.node.configs = PodConfigs(store=self.store, copies=self.secrets,
                                       files=PodFiles(cfg.pod_files_dir))
        self.kubelet = Kubelet(node=self.node, specs=self.driver, deletions=self.store,
                               events=self.events, announcer=self.membership)
        self.driver.ready_here = self.kubelet.ready
        self.evictions = Evictions(
            node=self.node, specs=self.driver, store=self.store, quorum=self.quorum,
            cordon=self.cordon, replacer=self.driver, events=self.events,
            announcer=self.membership)
        self.link: WorkPlaneLink | None = None
        if cfg.workplane:
            self.link = WorkPlaneLink(
                key=key, cfg=cfg, dirs=dirs, certified=self.certified, node=self.node,
                kubelet=self.kubelet,
                evictions=self.evictions, driver=self.driver, store=self.store,
                view=self.view, quorum=self.quorum, lateness=self.lateness,
                addrs=self._addrs, events=self.events, metrics=self.metrics,
                announcer=self.membership, listeners=self.listeners, log_level=log_level)
        self.pods = Pods(machine=self.machine, node=self.node, kubelet=self.kubelet,
                         evictions=self.evictions, view=self.view, certified=self.certified,
                         believed=self.driver.claim_counts)
        self.deleter = Deleter(key=key, store=self.store, node=self.node, tasks=self.driver,
                               view=self.view, mesh=self.mesh, events=self.events,
                               authenticate_delete=deletes.authenticate)
        self.admitting = AdmissionService(
            admission=self.admission, cert=self.cert, mesh=self.mesh, view=self.view,
            state_dir=cfg.state_dir, files=self.files, events=self.events, metrics=self.metrics,
            revokes=self.verifier_for({REVOKE.name: REVOKE}), on_drop=self.drops.count,
            on_admitted=self.membership.peer_admitted)
        self.admitting.load()
        self.exchange = ManifestExchange(machine=self.machine, view=self.view, store=self.store,
                                         authenticate=workloads.authenticate, mesh=self.mesh,
                                         events=self.events,
                                         authenticate_object=objects.authenticate)
        self.inbound = Inbound(
            machine=self.machine, verifier_for=self.verifier_for,
            authenticate_workload=workloads.authenticate, guard=guard, drops=self.drops,
            membership=self.membership, driver=self.driver,
            deleter=self.deleter, cordon=self.cordon, admitting=self.admitting,
            metrics=self.metrics, audit=self.audit.accepted, keep_object=self.store.add_object,
            secrets=self.secrets)
        self.requests = OperatorRequests(
            driver=self.driver, store=self.store, pods=self.pods, mesh=self.mesh,
            applies=self.verifier_for({WORKLOAD.name: WORKLOAD, **OBJECT_KINDS}),
            requests=self.verifier_for({k.name: k for k in (DELETE, CORDON, DRAIN, REVOKE)}),
            audit=self.audit.accepted)
        self.pod_access = PodAccess(
            node=self.node, mesh=self.mesh,
            verifier=self.verifier_for({k.name: k for k in (LOGS_REQUEST, EXEC_REQUEST)}),
            machines_running=self.pods.machines_running, audit=self.audit.accepted)
        self.api = ApiServer(cfg.api_socket)
        AgentApi(self.api, machine=self.machine, mesh=self.mesh, view=self.view,
                 membership=self.membership, lateness=self.lateness, node=self.node,
                 persister=self.persister, admission=self.admission,
                 driver=self.driver, requests=self.requests, pods=self.pods, link=self.link,
                 pod_access=self.pod_access, events=self.events, metrics=self.metrics,
                 secrets=self.secrets)

    def verifier_for(self, kinds: dict[str, wire.Kind]) -> wire.Verifier:
        """Verifiers share one replay cache and the fleet's operator trust list."""
        return wire.Verifier(kinds, self.fleet.trusted_operators, replay=self._replay)

    def _secrets_used(self) -> set[str]:
        specs = [self.driver.spec_of(p) for p in self.node.pods.values()]
        return secrets_used([s for s in specs if s is not None]
                            + [f.spec for f in self.node.in_flight.values()])

    def _addrs(self) -> list[str]:
        return dialable(self.mesh.addrs())

    def record(self) -> MachineRecord:
        """This machine's record, as it is now."""
        cap = self.node.capacity()
        return MachineRecord(
            peer_id=self.machine, addrs=tuple(self._addrs()), arch=machine_arch(),
            labels=dict(self.cfg.labels),
            capacity=RecordCapacity(cap.cpu_milli, cap.memory_bytes, cap.memory_available_bytes,
                                    cap.cgroup),
            pods=self.pods.here(), cordoned=self.cordon.cordoned,
            draining=self.cordon.draining,
            workplane=self.link.host if self.link is not None else None, cert=self.cert,
            # A drain that moves the data-holding ordinals away releases them (data gravity
            # would keep them here); `drain --keep-data` keeps them here.
            volumes=() if self.cordon.draining and not self.cordon.keep_data
            else tuple(sorted(self.node.claims)),
            host_path_roots=tuple(self.cfg.host_path_roots))

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        self.store.load(time.time())
        self.audit.restore()
        async with self.mesh.running(), trio.open_nursery() as nursery:
            nursery.start_soon(self.persister.run)
            nursery.start_soon(give_back_loop)
            for topic in TOPIC_KINDS:
                sub = await self.mesh.subscribe(topic, self.inbound.validator(topic))
                nursery.start_soon(self.inbound.consume, topic, sub)
            await nursery.start(self.api.serve)
            await self.node.poll()
            nursery.start_soon(self.node.poll_loop)
            await nursery.start(self.driver.run)
            nursery.start_soon(self.deleter.run)
            nursery.start_soon(self.kubelet.run)
            nursery.start_soon(self.evictions.run)
            nursery.start_soon(self.exchange.run)
            nursery.start_soon(self.secrets.run)
            nursery.start_soon(self.admitting.run)
            if self.link is not None:
                await nursery.start(self.link.run)
            if self.listeners is not None:
                nursery.start_soon(self.listeners.run)
            log.info("agent %s listening on %s", self.machine, ", ".join(self.mesh.addrs()))
            print(f"beemesh agent {self.machine} ready; API at {self.cfg.api_socket}",
                  flush=True)
            for addr in self.cfg.bootstrap:
                nursery.start_soon(self.membership.bootstrap, addr)
            nursery.start_soon(self.membership.run, self.record)
            await self._wait_for_signal()
            if self.link is not None:
                with trio.move_on_after(4):
                    await self.link.stop()
            await self.membership.withdraw()
            with trio.move_on_after(2):
                await self.persister.flush()
            nursery.cancel_scope.cancel()

    async def _wait_for_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return


def run_agent(cfg: AgentConfig, key: KeyPair, fleet: Fleet, log_level: str = "info") -> None:
    """Blocking entry point for `beemesh agent`."""
    from beemesh.runtime.podman import PodmanRuntime, default_socket_url

    runtime = PodmanRuntime(cfg.podman_socket or default_socket_url(),
                            pull_missing=cfg.image_pulls)
    try:
        trio.run(Agent(cfg, key, fleet, runtime, log_level).run)
    except BaseExceptionGroup as group:  # trio wraps errors raised inside nurseries
        user_errors = group.subgroup(UserError)
        if user_errors is None:
            raise
        raise first_leaf(user_errors) from None


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
