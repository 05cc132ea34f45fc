"""The agent's side of its work plane: the child process, the socket it talks to, and the
checks on what it asks for.

The work plane (`beemesh workplane`, see `beemesh.workplane.process`) runs as a child of the
agent, as `workplane_user` when the agent runs as root, in its own directory (0700, owned by
that user): it holds the workload keys, which the agent never reads, and it never sees the
machine key. The two talk over a unix socket in that directory, refused to any other uid, in
the records of `beemesh.workplane.sync`: report, view (held until the view changes), certify,
heal (checked by `scheduling.heal_gate`, then published by the auction driver) and remove.

Over 400 lines: every route the work plane calls and the checks on it, kept in one module
beside the child process they serve.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from beemesh import wire
from beemesh.api.server import ApiError, ApiServer, Request, Response
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.identity import KeyPair, peer_id
from beemesh.machine.listeners import Listeners
from beemesh.machine.workplane_dirs import WorkPlaneDirs
from beemesh.manifest import WorkloadSpec
from beemesh.membership.lateness import Lateness
from beemesh.membership.quorum import Quorum
from beemesh.membership.records import MachineEntry, PodSummary
from beemesh.membership.view import MachineView
from beemesh.metrics import Metrics
from beemesh.node.evictions import Evictions
from beemesh.node.kubelet import Kubelet
from beemesh.node.local import Announcer, LocalNode
from beemesh.runtime import PodInfo
from beemesh.scheduling import heal_gate
from beemesh.workloads.store import WorkloadStore
from beemesh.workplane import handoff, sync
from beemesh.workplane.process import AGENT_PID_ENV
from beemesh.workplane.records import WORKLOAD_CERT
from beemesh.workplane.stream_counters import REFUSED, STREAM_COUNTERS, STREAM_METRICS

log = logging.getLogger("beemesh.workplane_link")

RESPAWN_MAX_S = 30.0
DIR_CLEANUP_S = 30.0
VIEW_CHECK_S = 1.0  # how often a held view request looks for a change (the old sync's pace)


class Placements(Protocol):
    """What the link reads of the auction (`scheduling.driver.AuctionDriver`)."""

    def spec_of(self, pod: PodInfo) -> WorkloadSpec | None: ...

    def placing(self, workload_id: str, ordinal: int) -> str | None: ...

    def claims_elsewhere(self, now: float) -> list[tuple[MachineEntry, PodSummary]]: ...

    def claim_counts(self, machine: str, pod: PodSummary) -> bool: ...

    def deployed_ago(self, workload_id: str, ordinal: int,
                     now: float) -> tuple[str, float] | None: ...

    async def replace(self, workload_id: str, ordinal: int, epoch: str) -> str | None: ...


class CertifiedKeys:
    """The workload Peer IDs this machine vouched for, by pod: the link writes them (certify,
    and each sync prunes pods that are gone); this machine's record and the machine plane's
    guard against workload keys read them."""

    def __init__(self) -> None:
        self._by_pod: dict[str, str] = {}

    def peer_of(self, pod: str) -> str:
        return self._by_pod.get(pod, "")

    def peers(self) -> set[str]:
        return set(self._by_pod.values())

    def add(self, pod: str, peer: str) -> None:
        self._by_pod[pod] = peer

    def replace(self, by_pod: dict[str, str]) -> None:
        self._by_pod = dict(by_pod)


class WorkPlaneLink:
    def __init__(self, *, key: KeyPair, cfg: AgentConfig, dirs: WorkPlaneDirs,
                 certified: CertifiedKeys, node: LocalNode, kubelet: Kubelet,
                 evictions: Evictions,
                 driver: Placements, store: WorkloadStore, view: MachineView,
                 quorum: Quorum, lateness: Lateness, addrs: Callable[[], list[str]],
                 events: EventLog, metrics: Metrics, announcer: Announcer,
                 listeners: Listeners | None = None, log_level: str = "info") -> None:
        self.key = key
        self.machine = key.peer_id
        self.cfg = cfg
        self.dirs = dirs
        self.user = dirs.user
        self.certified = certified
        self.node = node
        self.kubelet = kubelet
        self.evictions = evictions
        self.driver = driver
        self.store = store
        self.view = view
        self.quorum = quorum
        self.lateness = lateness
        self.addrs = addrs
        self.events = events
        self.metrics = metrics
        self.announcer = announcer
        self.listeners = listeners
        self.log_level = log_level
        uid = self.user[0] if self.user else os.getuid()
        self.api = ApiServer(dirs.socket, owner=self.user, allowed_uids={uid, 0, os.getuid()})
        self.api.route("POST", "/v1/work/report", self._report)
        self.api.route("POST", "/v1/work/view", self._view)
        self.api.route("POST", "/v1/work/certify", self._certify)
        self.api.route("POST", "/v1/work/heal", self._heal)
        self.api.route("POST", "/v1/work/remove", self._remove)
        self.host: sync.WorkPlaneHost | None = None  # where our work plane listens
        self.records: tuple[dict[str, Any], ...] = ()  # the work plane's view: get endpoints
        self.records_at = 0.0  # when they were reported (their ages count from then)
        self.rollouts: tuple[dict[str, Any], ...] = ()  # `workplane.rollout.Progress` reports
        self.started = time.time()
        self._built: tuple[sync.AgentView | None, int] = (None, 0)  # last view built, version
        self._removals_in, self._removals_out = trio.open_memory_channel[str](math.inf)
        self.proc: trio.Process | None = None
        self._stopping = False
        metrics.describe("workplane_messages_dropped",
                         "work-plane messages its validator dropped, by reason")
        metrics.describe("workplane_connections_refused",
                         "connections the work plane closed: not an announced work plane", "who")
        for name, text in STREAM_METRICS.items():
            metrics.describe(name, text, "service")
        metrics.describe("workload_streams_refused",
                         "workload streams refused, by reason (`workplane.handshake`)", "reason")

    # ---- what the agent reads --------------------------------------------------------------

    def endpoints(self, workload: str | None) -> list[dict[str, Any]]:
        since = max(0.0, time.time() - self.records_at)
        return [sync.aged(r, since) for r in self.records
                if workload is None or r.get("workload") == workload]

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.dirs.prepare()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.api.serve)
            nursery.start_soon(self._cleanup_loop)
            nursery.start_soon(self._removal_loop)
            task_status.started()
            await self._child_loop()

    async def _removal_loop(self) -> None:
        """Surplus replicas the work plane asked to remove (each stop may take its grace)."""
        async with trio.open_nursery() as nursery:
            async for pod in self._removals_out:
                nursery.start_soon(self._remove_surplus, pod)

    async def _remove_surplus(self, name: str) -> None:
        """Stop it within its own grace; a StatefulSet ordinal scaled away whose
        persistentVolumeClaimRetentionPolicy says whenScaled: Delete loses its volumes."""
        pod = self.node.pods.get(name)
        await self.node.remove(name)
        stored = self.store.workload(pod.workload_id) if pod is not None else None
        if pod is not None and stored is not None and stored.spec.delete_claims_on_scale \
                and pod.ordinal >= stored.spec.replicas and name not in self.node.pods:
            await self.node.remove_claims(pod.workload_id, pod.ordinal)

    async def _cleanup_loop(self) -> None:
        """Discovery directories of pods that are gone (not running, not being deployed)."""
        while True:
            await trio.sleep(DIR_CLEANUP_S)
            keep = set(self.node.pods) | self.node.deploying_pods()
            await trio.to_thread.run_sync(self.dirs.clean, keep, time.time(), DIR_CLEANUP_S)

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "beemesh", "workplane", "--dir", str(self.dirs.own),
                "--pods", str(self.dirs.pods), "--agent", str(self.dirs.socket),
                "--network-key", str(self.cfg.workplane_key_path),
                "--log-level", self.log_level]
        for addr in self.cfg.workplane_listen:
            argv += ["--listen", addr]
        return argv

    async def _child_loop(self) -> None:
        """Keep the work plane running; on shutdown let it withdraw its records first."""
        delay = 1.0
        while True:
            started = time.monotonic()
            # No PR_SET_PDEATHSIG: trio starts processes from a worker thread, and that signal
            # fires when the *thread* ends (idle 10 s), not the agent. The work plane watches
            # for the agent named here itself (process.WorkPlane._watch_agent).
            env = {**os.environ, AGENT_PID_ENV: str(os.getpid())}
            theirs = self.listeners.channel() if self.listeners is not None else None
            if theirs is not None:
                env[handoff.FD_ENV] = str(theirs.fileno())
            options: dict[str, Any] = {
                "env": env, "pass_fds": (theirs.fileno(),) if theirs is not None else ()}
            if self.user is not None:
                options.update(user=self.user[0], group=self.user[1], extra_groups=[])
            try:
                self.proc = await trio.lowlevel.open_process(self.argv(), **options)
            except OSError as e:
                raise UserError(f"cannot start the work plane ({e}); is `{sys.executable}` "
                                "runnable by workplane_user?") from None
            finally:
                if theirs is not None:
                    theirs.close()  # the child has its copy
            try:
                code = await self.proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_child()
            if self._stopping:
                return
            log.error("work plane exited with status %s; starting it again in %.0f s",
                      code, delay)
            self.events.add(time.time(), "WorkPlaneExited", f"status {code}",
                            machine=self.machine)
            self.host = None
            await trio.sleep(delay)
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, RESPAWN_MAX_S)

    async def stop(self) -> None:
        """Clean shutdown: the work plane withdraws its records while peers still admit it
        (before this machine withdraws its own record, which announces the work plane)."""
        self._stopping = True
        await self._stop_child()

    async def _stop_child(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(3):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # ---- routes ----------------------------------------------------------------------------------

    @staticmethod
    def _parse(parse: Callable[[Any], Any], req: Request) -> Any:
        try:
            return parse(req.json())
        except (sync.SyncError, ValueError) as e:
            raise ApiError(400, f"bad work-plane request: {e}") from None

    async def _report(self, req: Request) -> Response:
        report: sync.Report = self._parse(sync.Report.from_json, req)
        if self.host is None or self.host.peer_id != report.host.peer_id:
            self.announcer.announce_soon()  # announce where our work plane listens at once
        self.host = report.host
        self.records, self.records_at = report.records, time.time()
        self.certified.replace({pod: peer for pod, peer in report.peers.items()
                                if pod in self.node.pods})
        self.rollouts = report.rollouts
        for reason, count in report.dropped.items():  # its counts, in the agent's metrics
            self.metrics.set("workplane_messages_dropped", reason[:32], count)
        for service, counts in report.streams.items():
            for name, count in counts.items():
                if service == REFUSED:
                    self.metrics.set("workload_streams_refused", name[:32], count)
                elif name in STREAM_COUNTERS:
                    self.metrics.set(STREAM_COUNTERS[name], service[:128], count)
        self.metrics.set("workplane_connections_refused", "peer", report.gated)
        return Response(200, {})

    async def _view(self, req: Request) -> Response:
        """Answer once the view is not the version the work plane has, or after its wait."""
        ask: sync.ViewRequest = self._parse(sync.ViewRequest.from_json, req)
        deadline = trio.current_time() + ask.wait_s
        while True:
            view, version = self._current_view()
            if version != ask.have or trio.current_time() >= deadline:
                break
            await trio.sleep(VIEW_CHECK_S)
        answer = sync.ViewAnswer(version, view if version != ask.have else None)
        return Response(200, answer.to_json())

    def _current_view(self) -> tuple[sync.AgentView, str]:
        view = self.view_for_workplane()
        last, number = self._built
        if view != last:
            self._built = view, number + 1
        return view, f"{self.started:.6f}/{self._built[1]}"

    def view_for_workplane(self) -> sync.AgentView:
        machines = tuple(
            sync.Machine(e.peer_id, e.record.workplane,
                         held_pods(e, self.machine, self.driver.claim_counts))
            for e in self.view.entries())
        replicas = []
        for pod in self.node.pods.values():
            spec = self.driver.spec_of(pod)
            replicas.append(sync.Replica(
                pod.name, pod.workload_id, pod.ordinal, pod.task_id, pod.state,
                self.kubelet.ready(pod), self.evictions.retiring(pod.name),
                pod.name in self.node.removing, () if spec is None else ports_of(spec),
                pod.template,
                self.listeners.address_of(pod.name) if self.listeners is not None else ""))
        workloads = tuple(sync.Workload(w.workload_id, w.spec.replicas,
                                        w.spec.kind == "StatefulSet", w.spec.template_hash,
                                        w.spec.strategy)
                          for w in self.store.workloads())
        return sync.AgentView(
            machine=self.machine, addrs=tuple(machine_ips(self.addrs())), replicas=tuple(replicas),
            workloads=workloads, deleted=frozenset(d.workload_id for d in self.store.deletes()),
            machines=machines, statefulset_margin_s=self.cfg.statefulset_margin_s,
            services=tuple(sync.Service(s.spec, tuple(
                w.workload_id for w in s.spec.picks(w.spec for w in self.store.workloads())))
                for s in self.store.services()))

    async def _certify(self, req: Request) -> Response:
        ask: sync.CertifyRequest = self._parse(sync.CertifyRequest.from_json, req)
        pod = self.node.pods.get(ask.pod)
        if pod is None:
            raise ApiError(404, f"no pod {ask.pod} runs on this machine")
        if pod.ordinal < 0:
            raise ApiError(409, f"pod {ask.pod} has no readable replica label; it is not "
                           "certified (the agent removes such pods)")
        if ask.task != pod.task_id:  # the pod was replaced meanwhile
            raise ApiError(409, f"pod {ask.pod} now runs task {pod.task_id}, not {ask.task}; "
                           "certify the new one after the next sync")
        try:
            peer = peer_id(bytes.fromhex(ask.public_key))
        except ValueError:
            raise ApiError(400, "public_key must be 64 hex digits (an Ed25519 key)") from None
        if peer == self.machine or peer in self.view.machine_ids():
            raise ApiError(400, "a machine key cannot be a workload key")
        body = {"machine": self.machine, "peer_id": peer, "workload_id": pod.workload_id,
                "ordinal": pod.ordinal, "pod": pod.name, "task": pod.task_id,
                **({"template": pod.template} if pod.template else {})}
        cert = wire.seal(self.key, WORKLOAD_CERT.name, body, time.time())
        self.certified.add(pod.name, peer)
        self.announcer.announce_soon()
        return Response(200, sync.Certificate(cert, peer).to_json())

    async def _heal(self, req: Request) -> Response:
        ask: sync.HealRequest = self._parse(sync.HealRequest.from_json, req)
        now = time.time()
        stored = self.store.workload(ask.workload_id)
        # An update of a Deployment replica waits only for a copy on the new template; a
        # StatefulSet ordinal never runs twice, whatever the template.
        only = ask.template if stored is not None and stored.spec.kind != "StatefulSet" else ""
        refusal = heal_gate.refusal(heal_gate.HealFacts(
            uptime_s=now - self.started, settle_s=self.cfg.heal_settle_s,
            lateness_s=self.lateness.current(now), lateness_limit_s=self.cfg.heal_pause_late_s,
            stored=stored, deleted=self.store.deleted(ask.workload_id), ordinal=ask.ordinal,
            running_on=self.running_on(ask.workload_id, ask.ordinal, now, only),
            template=ask.template,
            placing=self.driver.placing(ask.workload_id, ask.ordinal),
            deployed_ago=self.driver.deployed_ago(ask.workload_id, ask.ordinal, now),
            majority_for=self.quorum.sample(now).majority_for,
            majority_needed_s=self.cfg.dead_after_s))
        tid = None if refusal is not None else await self.driver.replace(
            ask.workload_id, ask.ordinal, ask.epoch)
        if tid is None:
            return Response(200, sync.HealAnswer(False, reason=refusal or "deleted").to_json())
        if ask.template:
            self.events.add(now, "UpdateAsked", f"replica {ask.ordinal} to template "
                            f"{ask.template}, replacing task {ask.epoch}", task=tid,
                            workload=ask.workload_id, machine=self.machine)
        else:
            self.events.add(now, "HealAsked", f"replica {ask.ordinal} has no live record; "
                            f"replacing task {ask.epoch}", task=tid, workload=ask.workload_id,
                            machine=self.machine)
        return Response(200, sync.HealAnswer(True, task_id=tid).to_json())

    def running_on(self, workload_id: str, ordinal: int, now: float,
                   template: str = "") -> tuple[str, ...]:
        """Machines whose live record (ours: Podman) lists a pod of that replica (on that
        pod template, when one is given)."""
        here = any(p.workload_id == workload_id and p.ordinal == ordinal
                   and (not template or p.template == template)
                   for p in self.node.pods.values())
        elsewhere = {entry.peer_id for entry, pod in self.driver.claims_elsewhere(now)
                     if pod.workload_id == workload_id and pod.ordinal == ordinal
                     and (not template or pod.template == template)}
        return tuple(sorted(elsewhere | ({self.machine} if here else set())))

    async def _remove(self, req: Request) -> Response:
        ask: sync.RemoveRequest = self._parse(sync.RemoveRequest.from_json, req)
        pod = self.node.pods.get(ask.pod)
        if pod is None:
            raise ApiError(404, f"no pod {ask.pod} runs on this machine")
        self.events.add(time.time(), "Removing", f"{ask.pod}: {ask.reason}",
                        workload=pod.workload_id, machine=self.machine)
        self._removals_in.send_nowait(ask.pod)
        return Response(200, {"pod": ask.pod, "state": "removing"})


def ports_of(spec: WorkloadSpec) -> tuple[sync.Port, ...]:
    """The ports a replica offers, as its ServiceRecord lists them."""
    return tuple(sync.Port(p.name or "", p.container_port, p.host_port or 0, p.protocol)
                 for c in spec.containers for p in c.ports)


def machine_ips(addrs: list[str]) -> list[str]:
    """The IP addresses in a machine's dialable multiaddrs, where its replicas' hostPorts are."""
    out: list[str] = []
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and parts[2] not in out:
            out.append(parts[2])
    return out


def held_pods(entry: MachineEntry, self_id: str,
              counts: Callable[[str, PodSummary], bool]) -> tuple[sync.HeldPod, ...]:
    """The pods of `entry`'s record its machine may vouch for on the work plane (certify a
    workload key of, `workplane.holding`): those this agent believes it runs
    (`scheduling.bounds.Claims`), so a rogue listing a replica the auction placed
    elsewhere cannot certify a ServiceRecord for it."""
    return tuple(sync.HeldPod(p.pod, p.workload_id, p.ordinal, p.task)
                 for p in entry.record.pods
                 if p.ordinal >= 0 and (entry.peer_id == self_id or counts(entry.peer_id, p)))
