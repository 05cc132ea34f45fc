"""`beemesh workplane`: the work plane of one machine (the trio shell around the cores).

Started by the machine agent as its child (as `workplane_user` when the agent is root). It
runs one libp2p host of its own: its own key (`host.key`), the fleet's work-plane network key,
the Workload DHT (`/beemesh/workload`) and the `workplane-events` topic. It admits only the
work-plane hosts that machines of the fleet announce in their signed machine records, so a
machine key (or anyone else) is refused on its streams (`admission.py`).

It talks with its agent over the local socket (`workplane.sync`): it learns the replicas this
machine runs and their probe results, the workloads the fleet runs, and the live machines, as
soon as they change (a long poll), and reports what it sees when that changes. For each local
replica it keeps a workload key (`keys.py`), has the machine certify it, publishes a signed
ServiceRecord every 5 s (and at once on a change) on the topic and into the DHT, and keeps
the pod's discovery files (`discovery.py`) current. Its `Reconciler` decides which lost
replicas to ask the agent to heal and which surplus copies here to remove. On SIGTERM it
withdraws its records.

One host per machine, not one per replica (the guide's default): every replica still has its
own key, Peer ID and certificate, but a machine with 20 replicas runs one gossipsub heartbeat,
one DHT and one set of connections instead of 20 (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import trio

from beemesh import wire
from beemesh.allocator import give_back_loop
from beemesh.api.trio_client import call
from beemesh.errors import UserError
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.workplane import discovery, handoff, handshake, sync
from beemesh.workplane.admission import Admission, RecordValidator
from beemesh.workplane.keys import WorkloadKeys, load_or_create
from beemesh.workplane.local import Local, content, sealed_record, sealed_withdrawal
from beemesh.workplane.reconcile import (
    ORPHAN_EPOCH,
    AskHeal,
    LocalReplica,
    Params,
    Reconciler,
    RemoveReplica,
    Situation,
)
from beemesh.workplane.records import DHT_NS, DHT_PREFIX, TOPIC, ServiceView, dht_key
from beemesh.workplane.rollout import AskUpdate, Rollouts, copies_of, target_of
from beemesh.workplane.streams import Streams

log = logging.getLogger("beemesh.workplane")

REFRESH_S = 5.0
SYNC_S = 1.0  # the pace of the report, of applying the agent's view and of reconciling
VIEW_WAIT_S = 5  # how long the agent may hold a view request (AGENT_SILENCE_S is 3 of them)
AGENT_SILENCE_S = 15.0  # stop vouching for replicas when the agent has not answered this long
DIAL_TIMEOUT_S = 5.0
AGENT_PID_ENV = "BEEMESH_AGENT_PID"  # set by the agent that starts us: we stop when it is gone


class WorkPlane:
    def __init__(self, directory: Path, pods_dir: Path, agent_socket: Path, psk_hex: str,
                 listen: list[str]) -> None:
        """`directory`: its own (keys); `pods_dir`: one directory per pod the agent made for
        its discovery files (`machine.workplane_dirs`)."""
        self.directory = directory
        self.pods_dir = pods_dir
        self.agent_socket = agent_socket
        self.keys = WorkloadKeys(directory / "keys")
        self.host_key = load_or_create(directory / "host.key", "work-plane host key")
        self.view = ServiceView()
        self.reconciler = Reconciler()
        self.rollouts = Rollouts()
        self.progress: tuple[dict[str, Any], ...] = ()  # `rollout.Progress`, for the agent
        self.state: sync.AgentView | None = None
        self.state_at = 0.0
        self.local: dict[str, Local] = {}
        self.started = time.time()
        self.admission = Admission(self.host_key.peer_id, self.view)
        self._publish_now = trio.Event()
        self.mesh = MeshHost(HostSettings(
            key=self.host_key, psk_hex=psk_hex, listen=listen, dht_prefix=DHT_PREFIX,
            dht_validators={DHT_NS: RecordValidator(self.admission, self._deleted)},
            allow_peer=self.admission.allowed))
        self.streams = Streams(self, self.mesh, listen)

    def _deleted(self, workload_id: str) -> bool:
        return self.state is not None and workload_id in self.state.deleted

    @property
    def peer_id(self) -> str:
        return self.host_key.peer_id

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        async with self.mesh.running(), trio.open_nursery() as nursery:
            sub = await self.mesh.subscribe(TOPIC, self.admission.validate)
            nursery.start_soon(self._consume, sub)
            self.mesh.handle(handshake.PROTOCOL, self.streams.serve)
            nursery.start_soon(self.streams.run_channel)
            if fd := os.environ.get(handoff.FD_ENV):
                nursery.start_soon(self.streams.receive_listeners, int(fd), nursery)
            nursery.start_soon(self._report_loop)
            nursery.start_soon(self._view_loop)
            nursery.start_soon(self._apply_loop)
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._reconcile_loop)
            nursery.start_soon(give_back_loop)
            nursery.start_soon(self._watch_agent,
                               int(os.environ.get(AGENT_PID_ENV) or os.getppid()))
            log.info("work plane %s listening on %s", self.peer_id, ", ".join(self.mesh.addrs()))
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            with trio.move_on_after(2):
                await self._withdraw(list(self.local.values()))
                await trio.sleep(0.3)  # let the withdrawals leave the socket
            nursery.cancel_scope.cancel()

    async def _watch_agent(self, agent: int) -> None:
        """Stop (withdrawing our records, as on SIGTERM) once the agent that started us is gone,
        so no orphan keeps publishing for replicas nobody supervises. The agent passes its pid:
        one read from getppid() here could already be init's if the agent died while we
        started."""
        while os.getppid() == agent:
            await trio.sleep(1)
        log.warning("agent (pid %d) is gone; stopping the work plane", agent)
        os.kill(os.getpid(), signal.SIGTERM)

    # ---- talking to the agent ------------------------------------------------------------------

    async def _agent(self, target: str, body: Any, timeout: float = 10) -> Any:
        return await call(self.agent_socket, "POST", target, body, timeout=timeout)

    def synced(self, now: float) -> bool:
        """Long enough up to have heard every live replica's refresh at least twice."""
        return self.state is not None and now - self.started >= 2 * REFRESH_S + 2

    async def _report_loop(self) -> None:
        """Tell the agent what this work plane sees, when that changes (checked every SYNC_S)."""
        sent = None
        while True:
            now = time.time()
            report = sync.Report(
                host=sync.WorkPlaneHost(self.peer_id, tuple(self.mesh.addrs())),
                records=tuple(r.to_dict(now) for r in self.view.records(now)),
                peers={m.pod: m.key.peer_id for m in self.local.values() if m.cert},
                synced=self.synced(now), dropped=dict(self.admission.dropped),
                gated=self.mesh.gated, rollouts=self.progress,
                streams=self.streams.counters.report())
            key = report.key()
            if key != sent:
                try:
                    await self._agent("/v1/work/report", report.to_json())
                    sent = key
                except UserError as e:
                    log.warning("no answer from the agent: %s", e)
            await trio.sleep(SYNC_S)

    async def _view_loop(self) -> None:
        """The agent's view, as soon as it changes (a long poll: `sync.ViewRequest`)."""
        have = ""
        while True:
            ask = sync.ViewRequest(have, VIEW_WAIT_S)
            try:
                answer = sync.ViewAnswer.from_json(
                    await self._agent("/v1/work/view", ask.to_json(), timeout=VIEW_WAIT_S + 10))
            except (UserError, sync.SyncError) as e:
                log.warning("no answer from the agent: %s", e)
                await trio.sleep(SYNC_S)
                continue
            self.state_at = time.time()
            if answer.view is not None:
                self.state, have = answer.view, answer.version

    async def _apply_loop(self) -> None:
        while True:
            if self.state is not None:
                await self._apply_state(self.state, time.time())
            await trio.sleep(SYNC_S)

    async def _apply_state(self, state: sync.AgentView, now: float) -> None:
        self.admission.learn(state.machines, now)
        await self._connect_hosts(state)
        replicas = {r.pod: r for r in state.replicas}
        # A replica being removed withdraws its record as its removal starts (as Kubernetes
        # takes a terminating pod out of its endpoints): a pod may take its whole grace to
        # stop, and a rollout counts the copies that records show.
        gone = [m for pod, m in self.local.items()
                if pod not in replicas or replicas[pod].task != m.task or replicas[pod].removing]
        if gone:
            await self._withdraw(gone)
            for m in gone:
                del self.local[m.pod]
        for pod, r in replicas.items():
            if r.removing:
                continue
            mine = self.local.get(pod)
            if mine is None:
                mine = self.local[pod] = Local(pod, r.workload_id, r.ordinal, r.task,
                                                self.keys.key_for(pod, r.task))
            if mine.cert is None:
                await self._certify(mine)
        self.keys.keep_only({(m.pod, m.task) for m in self.local.values()})
        changed = any(content(m, state) != m.content for m in self.local.values())
        if changed:
            self._publish_now.set()
        self._write_discovery(state, now)

    async def _certify(self, mine: Local) -> None:
        ask = sync.CertifyRequest(mine.pod, mine.task, mine.key.public_key.hex())
        try:
            got = sync.Certificate.from_json(await self._agent("/v1/work/certify",
                                                               ask.to_json()))
            mine.cert = got.cert
            self._publish_now.set()
        except (UserError, sync.SyncError) as e:
            log.warning("no certificate for %s yet: %s", mine.pod, e)

    async def _connect_hosts(self, state: sync.AgentView) -> None:
        connected = {p.to_base58() for p in self.mesh.connected()}
        async with trio.open_nursery() as nursery:  # at once: one budget per pass
            for m in state.machines:
                wp = m.workplane
                if wp and wp.peer_id != self.peer_id and wp.peer_id not in connected:
                    nursery.start_soon(self.mesh.dial_any, list(wp.addrs), wp.peer_id,
                                       DIAL_TIMEOUT_S)

    # ---- publishing ------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                self._publish_now = trio.Event()
                now = time.time()
                state = self.state
                if state is not None and now - self.state_at < AGENT_SILENCE_S:
                    for mine in list(self.local.values()):
                        data = sealed_record(mine, state, now)
                        if data is None:
                            continue
                        try:
                            self.admission.accept(wire.decode(data), None, now)
                        except wire.Rejected as e:  # never expected: certify checks the task
                            log.warning("not publishing %s: %s; certifying it again", mine.pod, e)
                            mine.cert = None
                            continue
                        await self.mesh.publish(TOPIC, data)
                        mine.published_at = now
                        nursery.start_soon(self._store, dht_key(mine.workload_id, mine.ordinal),
                                           data)
                with trio.move_on_after(REFRESH_S):
                    await self._publish_now.wait()
                await trio.sleep(0.2)  # several changes in a burst make one publication

    async def _store(self, key: str, data: bytes) -> None:
        with trio.move_on_after(REFRESH_S):
            try:
                await self.mesh.put(key, data)
            except Exception as e:  # a DHT with few peers can fail a put; records also gossip
                log.debug("service record not stored in the DHT: %s", e)

    async def _withdraw(self, gone: list[Local]) -> None:
        now = time.time()
        for mine in gone:
            if mine.cert is None:
                continue
            self.view.withdraw(mine.workload_id, mine.ordinal, mine.key.peer_id, now, now)
            await self.mesh.publish(TOPIC, sealed_withdrawal(mine, now))

    def _write_discovery(self, state: sync.AgentView, now: float) -> None:
        records = [r.to_dict(now) for r in self.view.records(now)]
        for mine in self.local.values():
            me = next((r for r in records if r["peer_id"] == mine.key.peer_id), None)
            if me is not None:
                naming = next((s.spec.name for s in state.services
                               if s.spec.headless and mine.workload_id in s.workloads), None)
                discovery.write(self.pods_dir / mine.pod, mine.workload_id, me, records, naming)

    # ---- receiving -------------------------------------------------------------------------------

    async def _consume(self, sub: Any) -> None:
        while True:
            self.admission.handle(await sub.get())

    # ---- reconcile -------------------------------------------------------------------------------

    def situation(self, state: sync.AgentView, now: float) -> Situation:
        local = []
        for r in state.replicas:
            mine = self.local.get(r.pod)
            if r.removing:
                continue
            if mine is None or not mine.content:  # no record published yet
                local.append(LocalReplica(r.pod, r.workload_id, r.ordinal, r.task, None, False,
                                          False, r.template))
                continue
            ready, retiring = mine.content[0], mine.content[1]
            local.append(LocalReplica(r.pod, r.workload_id, r.ordinal, r.task, mine.key.peer_id,
                                      ready, retiring, r.template))
        return Situation(
            now=now, machine=state.machine,
            machines=tuple(m.peer_id for m in state.machines if m.workplane),
            workloads={w.workload_id: w for w in state.workloads
                       if w.workload_id not in state.deleted},
            local=tuple(local), synced=self.synced(now) and now - self.state_at < AGENT_SILENCE_S)

    async def _reconcile_loop(self) -> None:
        while True:
            await trio.sleep(SYNC_S)
            state, now = self.state, time.time()
            if state is None:
                continue
            margin = state.statefulset_margin_s
            if margin != self.reconciler.params.statefulset_margin_s:
                self.reconciler.params = Params(statefulset_margin_s=margin)
            situation = self.situation(state, now)
            for act in self.reconciler.step(situation, self.view) + self._roll(situation):
                try:
                    if isinstance(act, AskHeal | AskUpdate):
                        await self._ask_heal(act)
                    elif isinstance(act, RemoveReplica):
                        log.info("removing surplus replica %s: %s", act.pod, act.reason)
                        await self._agent("/v1/work/remove",
                                          sync.RemoveRequest(act.pod, act.reason).to_json())
                except UserError as e:
                    log.warning("agent refused %s: %s", act, e)

    def _roll(self, s: Situation) -> list[AskUpdate | RemoveReplica]:
        """What the rollouts of the workloads this machine knows ask of it (`rollout`), and
        how far each is (reported to the agent for `beemesh rollout status`)."""
        actions: list[AskUpdate | RemoveReplica] = []
        progress = []
        for w in s.workloads.values():
            acts, p = self.rollouts.step(target_of(w), copies_of(self.view, w, s.local, s.now),
                                         s.now)
            actions += acts if s.synced else []
            progress.append(p.to_json())
        self.rollouts.forget(set(s.workloads))
        self.progress = tuple(progress)
        return actions

    async def _ask_heal(self, act: AskHeal | AskUpdate) -> None:
        epoch = act.epoch
        if epoch == ORPHAN_EPOCH:
            epoch = await self._last_task_in_dht(act.workload_id, act.ordinal) or epoch
        update = act.template if isinstance(act, AskUpdate) else ""
        ask = sync.HealRequest(act.workload_id, act.ordinal, epoch, update)
        what = f"update of {act.workload_id} replica {act.ordinal} to template {update}" \
            if update else f"heal of {act.workload_id} replica {act.ordinal}"
        try:
            got = sync.HealAnswer.from_json(await self._agent("/v1/work/heal", ask.to_json()))
        except sync.SyncError as e:
            log.warning("unreadable answer to the %s: %s", what, e)
            return
        if got.published:
            log.info("asked for the %s (task %s)", what, got.task_id)
        else:
            log.info("%s not published: %s", what, got.reason)

    async def _last_task_in_dht(self, workload_id: str, ordinal: int) -> str | None:
        """The task of the last record the DHT holds for that ordinal, even an expired one."""
        try:
            data = await self.mesh.get(dht_key(workload_id, ordinal))
        except Exception as e:  # no peers, timeouts: fall back to the orphan epoch
            log.debug("DHT read for %s/%d failed: %s", workload_id, ordinal, e)
            return None
        return None if data is None else self.admission.last_task(data)


def run_workplane(directory: Path, pods_dir: Path, agent_socket: Path, psk_hex: str,
                  listen: list[str]) -> None:
    """Blocking entry point for `beemesh workplane`."""
    trio.run(WorkPlane(directory, pods_dir, agent_socket, psk_hex, listen).run)
