"""The trio shell around the auction: messages in, bids, leases and deployments out.

All decisions are the `Auctioneer`'s (sans-IO). `AuctionDriver` turns scheduling messages into
its inputs, builds the `LocalState` it scores with (from `node.local`, the cordon, the fleet's
records and the quorum clock), and carries out its actions: messages and DHT writes through
the mesh, deploys and removals through the `LocalNode`. The path of a task:
`handle(Task)` -> `Auctioneer.task` -> `tick` closes the window -> `Deploy` ->
`LocalNode.deploy` -> `Auctioneer.deploy_result` -> `Deployed` published; the pod shows in
this machine's next record (`membership.service`).

Over 400 lines: it is the one owner of the auction's state in the agent (the tasks followed,
their specs, what was published), and every reader of that state (scoring, claims, heals,
updates, `apply --wait`) asks it; split, two services would share one mutable auction.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from beemesh import wire
from beemesh.config import AgentConfig
from beemesh.events import EventLog
from beemesh.identity import KeyPair
from beemesh.manifest import WorkloadSpec
from beemesh.membership.lateness import Lateness
from beemesh.membership.quorum import Quorum
from beemesh.membership.records import MachineEntry, PodSummary
from beemesh.membership.view import MachineView
from beemesh.metrics import Metrics
from beemesh.node.capacity import machine_arch
from beemesh.node.cordon import Cordon
from beemesh.node.local import LocalNode
from beemesh.runtime import PodInfo
from beemesh.scheduling import actions as a
from beemesh.scheduling.auction import Auctioneer, Params
from beemesh.scheduling.bounds import Claims, bid_refusal
from beemesh.scheduling.explain import fleet_fit
from beemesh.scheduling.leases import lease_key
from beemesh.scheduling.messages import (
    BID,
    DEPLOYED,
    FAILED,
    LEASE,
    TASK,
    task_id,
)
from beemesh.scheduling.scoring import LocalState, replica_refusal, stale_refusal
from beemesh.scheduling.tasks import Task
from beemesh.topics import TOPIC_EVENTS, TOPIC_PROPOSALS, TOPIC_TASKS
from beemesh.workloads.store import StoredWorkload, WorkloadStore

log = logging.getLogger("beemesh.scheduling")

REPUBLISH_PENDING_S = 10.0
MAX_EPOCH_CHAIN = 8  # placed tasks of one replica `replace` steps over (`max_tasks_per_replica`)
# A task deployed here is released once its pod is gone, at least this long after the deploy
# (the pod is in the node's list as soon as the deploy returns: this is margin).
RELEASE_AFTER_S = 30.0


class Mesh(Protocol):
    """What the driver uses of the libp2p host: pub/sub and the Machine DHT."""

    def publish(self, topic: str, data: bytes) -> Awaitable[None]: ...

    def put(self, key: str, value: bytes) -> Awaitable[None]: ...

    def get(self, key: str) -> Awaitable[bytes | None]: ...


class AuctionDriver:
    def __init__(self, *, key: KeyPair, cfg: AgentConfig, mesh: Mesh, node: LocalNode,
                 cordon: Cordon, view: MachineView, quorum: Quorum, lateness: Lateness,
                 store: WorkloadStore, events: EventLog, metrics: Metrics,
                 on_drop: Callable[[str, str, str, str], None]) -> None:
        self.key = key
        self.machine = key.peer_id
        self.cfg = cfg
        self.mesh = mesh
        self.node = node
        self.cordon = cordon
        self.view = view
        self.quorum = quorum
        self.store = store
        self.events = events
        self.metrics = metrics
        self.started = time.time()
        self.arch = machine_arch()
        self.auction = Auctioneer(self.machine, random.Random(),
                                    Params(suppression=cfg.bid_suppression), lateness.current)
        self.tasks: dict[str, Task] = {}  # what each followed task is (the auction: its state)
        self._published_at: dict[str, float] = {}  # tasks we originated: last publication
        self.on_drop = on_drop
        # Whether a pod here is ready (the kubelet's probes; set once the kubelet exists):
        # a StatefulSet ordinal under OrderedReady waits for the lower ones.
        self.ready_here: Callable[[PodInfo], bool] = lambda _pod: False
        self.claims = Claims(view, cfg.dead_after_s, self._claim_refused)
        self._pending: list[a.Action] = []  # actions from messages, carried out by the loop
        self._wake = trio.Event()
        metrics.describe("bids", "bids sent, or withheld after a better one was seen", "result")
        metrics.describe("deployments", "replicas deployed here, by result", "result")

    # ---- the loop ------------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._republish_loop)
            task_status.started()
            while True:
                deadline = self.auction.next_deadline()
                delay = 3600.0 if deadline is None else max(0.0, deadline - time.time())
                with trio.move_on_after(delay):
                    await self._wake.wait()
                self._wake = trio.Event()
                actions, self._pending = self._pending, []
                actions += self.auction.tick(time.time(), self.local_state)
                await self._execute(nursery, actions)

    def _feed(self, actions: list[a.Action]) -> None:
        """Hand actions to the loop (which owns the nursery) and let it tick."""
        self._pending += actions
        self._wake.set()

    # ---- what the scorer sees --------------------------------------------------------------

    def local_state(self) -> LocalState:
        now = time.time()
        cap, cpu_free, mem_free = self.node.free()
        kept_elsewhere = frozenset(
            (pod.workload_id, pod.ordinal, pod.template)
            for entry, pod in self.claims_elsewhere(now)
            if not entry.record.draining and not pod.retiring)
        return LocalState(
            arch=self.arch, labels=dict(self.cfg.labels), cordoned=self.cordon.cordoned,
            runtime_ok=self.node.runtime_ok, cpu_milli_total=cap.cpu_milli,
            memory_bytes_total=cap.memory_bytes, cpu_milli_free=cpu_free,
            memory_bytes_free=mem_free, replicas_here=self.node.replicas_here(),
            ordinals_here=self.node.ordinals_here(),
            used_host_ports=self.node.used_host_ports(), uptime_s=now - self.started,
            price=self.cfg.price, running_elsewhere=kept_elsewhere,
            stateful_quorum=self.quorum.sample(now).majority_for >= self.cfg.dead_after_s,
            images=self.node.images, pulls=self.cfg.image_pulls,
            host_path_roots=tuple(self.cfg.host_path_roots),
            volumes_here=self.node.claims,
            ready_replicas=frozenset(
                [(pod.workload_id, pod.ordinal) for _, pod in self.claims_elsewhere(now)
                 if pod.ready] + [(p.workload_id, p.ordinal) for p in self.node.pods.values()
                                  if self.ready_here(p)]),
            disk_free_bytes=self.node.disk[0] if self.node.disk else None,
            disk_total_bytes=self.node.disk[1] if self.node.disk else 0,
            volumes_elsewhere={replica: entry.peer_id for entry in self.view.entries()
                               if entry.peer_id != self.machine
                               for replica in entry.record.volumes},
            newest={w.workload_id: (w.generation, w.spec.template_hash)
                    for w in self.store.workloads()},
            machine=self.machine)

    # ---- what others read ------------------------------------------------------------------

    def claim_counts(self, machine: str, pod: PodSummary) -> bool:
        """Whether a pod `machine`'s record lists is believed (`bounds.Claims`)."""
        return self.claims.count(machine, pod.task, self.auction.winners_of(pod.task))

    def _claim_refused(self, machine: str, task: str, why: str) -> None:
        self.on_drop(TOPIC_EVENTS, machine, "claim",
                     f"its record lists a pod of task {task}, but {why}")

    def claims_elsewhere(self, now: float) -> list[tuple[MachineEntry, PodSummary]]:
        """The pods other machines' live records list and this machine believes."""
        return [(entry, pod) for entry, pod in self.view.pods_elsewhere(self.machine)
                if self.claim_counts(entry.peer_id, pod)]

    def spec_of(self, pod: PodInfo) -> WorkloadSpec | None:
        """The spec a pod here was deployed from: its task's, else the stored manifest's."""
        task = self.tasks.get(pod.task_id)
        if task is not None:
            return task.spec
        stored = self.store.workload(pod.workload_id)
        return stored.spec if stored is not None else None

    def task_statuses(self, ids: list[str]) -> list[dict[str, Any]]:
        """Rows of `/v1/tasks` (what `apply --wait` follows)."""
        out: list[dict[str, Any]] = []
        others = [e.record for e in self.view.entries() if e.peer_id != self.machine]
        local = self.local_state()
        holders = {**local.volumes_elsewhere, **dict.fromkeys(local.volumes_here, self.machine)}
        for tid in ids:
            task, status = self.tasks.get(tid), self.auction.status(tid)
            if task is None or status is None:
                out.append({"task_id": tid, "state": "unknown"})
                continue
            pending = status.state != "deployed"
            out.append({"task_id": tid, "workload": task.workload_id, "replica": task.ordinal,
                        "state": status.state, "machine": status.machine,
                        "pod": task.pod if not pending else "",
                        "reason": status.reason, "failures": list(status.failures),
                        "ineligible_here": status.ineligible_here,
                        "fleet": fleet_fit(task.request(), others, holders,
                                           local.ready_replicas).to_dict() if pending else None})
        return out

    def task_spec(self, task_id: str) -> WorkloadSpec | None:
        """The workload of a task this machine follows."""
        task = self.tasks.get(task_id)
        return task.spec if task is not None else None

    def picked(self, task_id: str) -> frozenset[str]:
        return self.auction.picked(task_id)

    def deployed_replicas(self) -> set[tuple[str, int]]:
        """(workload, ordinal) of tasks reported Deployed (the record may still be on its way)."""
        return {(t.workload_id, t.ordinal) for tid, t in self.tasks.items()
                if (status := self.auction.status(tid)) is not None
                and status.state == "deployed"}

    def placing(self, workload_id: str, ordinal: int) -> str | None:
        return self.auction.placing(workload_id, ordinal)

    def deployed_ago(self, workload_id: str, ordinal: int,
                     now: float) -> tuple[str, float] | None:
        return self.auction.deployed_ago(workload_id, ordinal, now)

    # ---- publishing tasks ------------------------------------------------------------------

    async def publish(self, task: Task) -> None:
        self._published_at[task.task_id] = time.time()
        await self.mesh.publish(TOPIC_TASKS, wire.seal(self.key, TASK.name, task.body(),
                                                       time.time()))

    def task_for(self, stored: StoredWorkload, ordinal: int, epoch: str = "") -> Task:
        """The task of replica `ordinal` of a stored workload; `epoch`: the task it replaces."""
        tid = task_id(stored.workload_id, ordinal, stored.generation, epoch)
        return Task(tid, stored.spec, ordinal, stored.blob, stored.generation, self.machine,
                    epoch)

    async def replace(self, workload_id: str, ordinal: int, epoch: str) -> str | None:
        """Publish the Task that replaces replica `ordinal` whose task was `epoch` (a heal, a
        drain or a rolling update); every machine asking for the same replica publishes the
        same task id. If that task was placed already (its copy has died since, or the asker
        still runs the old copy it replaces), the next id in the chain is asked for: its
        epoch is that task. None: this machine has no manifest of the workload (deleted)."""
        stored = self.store.workload(workload_id)
        if stored is None:
            return None
        task = self.task_for(stored, ordinal, epoch)
        for _ in range(MAX_EPOCH_CHAIN):
            status = self.auction.status(task.task_id)
            if status is None or status.state != "deployed":
                break
            task = self.task_for(stored, ordinal, task.task_id)
        await self.publish(task)
        return task.task_id

    async def _republish_loop(self) -> None:
        """Tasks we originated that nobody placed yet are re-announced (late joiners see them);
        tasks deployed here whose pod is gone are released (`Auctioneer.release`)."""
        while True:
            await trio.sleep(REPUBLISH_PENDING_S)
            now = time.time()
            here = {p.task_id for p in self.node.pods.values()}
            for tid in self.auction.running(finished_before=now - RELEASE_AFTER_S):
                if tid not in here:
                    self.auction.release(tid, now)
            for tid, at in list(self._published_at.items()):
                task, status = self.tasks.get(tid), self.auction.status(tid)
                if task is None or status is None:
                    del self._published_at[tid]
                elif status.state == "pending" and now - at >= REPUBLISH_PENDING_S:
                    await self.publish(task)

    # ---- inbound messages ------------------------------------------------------------------

    def refuse_excess(self, task: Task) -> None:
        """Refuse (in the topic validator) a task beyond what this machine follows at once."""
        reason = self.auction.room_for(task.task_id, task.workload_id, task.ordinal)
        if reason is not None:
            raise wire.Rejected("limit", reason)

    def refuse_bid(self, env: wire.Envelope) -> None:
        """Refuse (in the topic validator) a bid its bidder's machine record does not allow.
        A bid for a task this machine does not follow is left to the machines that do."""
        body = env.body
        task = self.tasks.get(body["task_id"])
        if task is None:
            return
        entry = self.view.get(body["machine"])
        refusal = bid_refusal(task.request(), entry.record if entry is not None else None,
                              body["score"])
        if refusal is not None:
            raise wire.Rejected("score", refusal)

    def on_task(self, task: Task) -> None:
        """A checked Task (`scheduling.tasks.check_task`) arrived."""
        now = time.time()
        if self.auction.room_for(task.task_id, task.workload_id, task.ordinal) is not None:
            return  # filled up since the validator looked
        if task.task_id not in self.tasks:
            # Kept on disk for healing; Tasks older than a Delete were dropped by the validator,
            # and a newer apply lifts the Delete, so its pods are not taken for leftovers.
            stored = self.store.add_workload(task.blob, wire.decode(task.blob))
            if stored is not None and stored.generation == task.generation:
                task = dataclasses.replace(task, blob=stored.blob)  # one copy per workload
            self.tasks[task.task_id] = task
            self.events.add(now, "TaskSeen", f"replica {task.ordinal} of {task.workload_id}",
                            task=task.task_id, workload=task.workload_id, machine=task.origin)
        self._feed(self.auction.task(task.task_id, task.request(), now, self.local_state))

    def on_workload(self, blob: bytes, env: wire.Envelope) -> None:
        """An operator's apply, published on its own: kept if it is the newest, so every
        machine acts on the same replicas count and template (scaling, `workplane.rollout`)."""
        stored = self.store.add_workload(blob, env)
        if stored is not None and stored.ts == env.ts_ms / 1000:
            self.events.add(time.time(), "Applied", f"generation {stored.generation}, "
                            f"{stored.spec.replicas} replica(s), template "
                            f"{stored.spec.template_hash}", workload=stored.workload_id)

    def handle(self, env: wire.Envelope) -> None:
        """Bid, Deployed, Failed, LeaseHint (verified by the topic validator). Raises
        `wire.Rejected` for a Deployed or lease hint from a machine the auction did not pick."""
        now, body = time.time(), env.body
        if env.kind == BID.name:
            self._feed(self.auction.bid(body["task_id"], body["round"], body["score"],
                                        body["machine"], now, self.local_state))
        elif env.kind == DEPLOYED.name:  # its score ranks nothing (scheduling.bounds)
            actions = self.auction.deployed(body["task_id"], body["machine"], now)
            self.events.add(now, "Deployed", f"{body['pod']} running on {body['machine']}",
                            task=body["task_id"], workload=body["workload_id"],
                            machine=body["machine"])
            self._feed(actions)
        elif env.kind == FAILED.name:
            self.events.add(now, "Failed", body["reason"], task=body["task_id"],
                            workload=body["workload_id"], machine=body["machine"])
            self._feed(self.auction.failed(body["task_id"], body["machine"], body["reason"], now,
                                           self.local_state))
        elif env.kind == LEASE.name:
            self.auction.lease_seen(body["task_id"], body["machine"], body["expires_ms"] / 1000,
                                    now)
            self._wake.set()

    def forget_workload(self, workload_id: str) -> None:
        """Its Delete arrived: stop following its tasks."""
        for tid in self.auction.forget_workload(workload_id):
            self.tasks.pop(tid, None)

    # ---- actions -------------------------------------------------------------------------------

    async def _execute(self, nursery: trio.Nursery, actions: list[a.Action]) -> None:
        expected, refused = self._expect(actions)  # before anything below awaits
        for act in actions:
            if isinstance(act, a.PublishBid):
                body = {"task_id": act.task_id, "round": act.round, "score": act.score,
                        "machine": self.machine}
                await self.mesh.publish(TOPIC_PROPOSALS, wire.seal(self.key, BID.name, body,
                                                                   time.time()))
            elif isinstance(act, a.WriteLease):
                nursery.start_soon(self._write_lease, act.task_id, act.ttl_s)
            elif isinstance(act, a.Deploy) and act.task_id in expected:
                nursery.start_soon(self._deploy, self.tasks[act.task_id])
            elif isinstance(act, a.CheckLease):
                nursery.start_soon(self._check_lease, act.task_id)
            elif isinstance(act, a.PublishDeployed | a.PublishFailed):
                await self._publish_outcome(act)
            elif isinstance(act, a.DropDuplicate):
                self._drop_duplicate(nursery, act)
            elif isinstance(act, a.Forget):
                self.tasks.pop(act.task_id, None)
            elif isinstance(act, a.Note):
                noted = self.tasks.get(act.task_id)
                self.events.add(time.time(), "Note", act.text, task=act.task_id,
                                workload=noted.workload_id if noted else "",
                                machine=self.machine)
        self.metrics.set("bids", "sent", self.auction.bids_sent_total)
        self.metrics.set("bids", "withheld", self.auction.bids_suppressed_total)
        if refused:
            self._feed(refused)

    def _drop_duplicate(self, nursery: trio.Nursery, act: a.DropDuplicate) -> None:
        task = self.tasks.get(act.task_id)
        if task is None:
            return
        self.events.add(time.time(), "DuplicateDropped", f"duplicate of {task.pod}; "
                        f"{act.winner} keeps it", task=act.task_id, machine=self.machine)
        nursery.start_soon(self.node.remove, task.pod)

    async def _publish_outcome(self, act: a.PublishDeployed | a.PublishFailed) -> None:
        task = self.tasks.get(act.task_id)
        if task is None:
            return  # its workload was deleted after the deploy ended: nothing to report
        base = {"task_id": act.task_id, "workload_id": task.workload_id,
                "ordinal": task.ordinal, "machine": self.machine}
        if isinstance(act, a.PublishDeployed):
            kind, body = DEPLOYED.name, {**base, "score": act.score, "pod": task.pod}
        else:
            kind, body = FAILED.name, {**base, "reason": act.reason}
        await self.mesh.publish(TOPIC_EVENTS, wire.seal(self.key, kind, body, time.time()))

    async def _write_lease(self, tid: str, ttl_s: float) -> None:
        """The lease hint goes on pub/sub (every waiting machine hears the renewal at once) and
        into the Machine DHT (where a machine that missed it looks before re-entering)."""
        now = time.time()
        body = {"task_id": tid, "machine": self.machine,
                "expires_ms": int((now + ttl_s) * 1000)}
        await self.mesh.publish(TOPIC_EVENTS, wire.seal(self.key, LEASE.name, body, now))
        with trio.move_on_after(ttl_s / 2):
            try:
                await self.mesh.put(lease_key(tid), wire.seal(self.key, LEASE.name, body, now))
            except Exception as e:  # a DHT write can fail with few peers; the lease is a hint
                log.debug("lease hint for %s not stored: %s", tid, e)

    async def _check_lease(self, tid: str) -> None:
        holder, expires = None, 0.0
        data = await self.mesh.get(lease_key(tid))
        if data is not None:
            env = wire.decode(data)  # the DHT validator already verified it
            holder, expires = env.body["machine"], env.body["expires_ms"] / 1000
        self._feed(self.auction.lease_result(tid, holder, expires, time.time(),
                                             self.local_state))

    def _expect(self, actions: list[a.Action]) -> tuple[set[str], list[a.Action]]:
        """The deploys won here: counted on the node at once (so the next score sees them),
        or refused. Returns the task ids expected, and the auction's answer to the refusals."""
        expected: set[str] = set()
        refused: list[a.Action] = []
        for act in actions:
            if not isinstance(act, a.Deploy):
                continue
            task = self.tasks[act.task_id]
            refusal = self._refusal(task)
            if refusal is None:
                self.node.expect(task.task_id, task.spec, task.ordinal, bool(task.epoch))
                expected.add(task.task_id)
            else:
                self._deployed(task, False, refusal)
                refused += self.auction.deploy_result(task.task_id, False, refusal, time.time())
        return expected, refused

    def _refusal(self, task: Task) -> str | None:
        """Won here: checked again now (it was when bidding), with whatever arrived during
        the selection window: a newer apply of another template (a replica never starts on
        an older one), and for a StatefulSet ordinal the records (it must never run twice)."""
        state = self.local_state()
        if task.spec.kind != "StatefulSet":
            return stale_refusal(task.request(), state)
        return replica_refusal(task.request(), state)

    async def _deploy(self, task: Task) -> None:
        result = await self.node.deploy(task.task_id)
        ok = result.pod is not None
        self._deployed(task, ok, result.reason)
        self._feed(self.auction.deploy_result(task.task_id, ok, result.reason, time.time()))

    def _deployed(self, task: Task, ok: bool, reason: str) -> None:
        self.metrics.inc("deployments", "ok" if ok else "failed")
        if ok:
            self.events.add(time.time(), "Deployed", f"{task.pod} started here",
                            task=task.task_id, workload=task.workload_id, machine=self.machine)
        else:
            log.warning("deploy of %s replica %d failed: %s", task.workload_id, task.ordinal,
                        reason)
