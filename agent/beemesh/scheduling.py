"""The trio shell around the auction core: tasks in, bids out, deployments through the runtime.

All decisions are the `Auctioneer`'s (sans-IO); this module only turns messages into calls,
actions into messages / DHT writes / Podman calls, and keeps the local facts the scorer needs
(capacity, reservations, pods running here). Nothing is persisted: after a restart the pods
Podman runs (found by their `beemesh.*` labels) are the whole local state.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from beemesh import resources, wire
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.identity import KeyPair
from beemesh.machines import MachineView
from beemesh.manifest import ManifestError, WorkloadSpec
from beemesh.metrics import Metrics
from beemesh.runtime import PodInfo, Runtime
from beemesh.scheduler import auction as a
from beemesh.scheduler.messages import (
    BID,
    CORDON,
    DELETE,
    DEPLOYED,
    DRAIN,
    FAILED,
    LEASE,
    MAX_WORKLOAD_BYTES,
    TASK,
    TOMBSTONE,
    WORKLOAD,
    task_id,
)
from beemesh.scheduler.scoring import LocalState, TaskRequest, replica_refusal
from beemesh.store import TOMBSTONE_TTL_S, StoredWorkload, WorkloadStore

log = logging.getLogger("beemesh.scheduling")

TOPIC_TASKS = "scheduler-tasks"
TOPIC_PROPOSALS = "scheduler-proposals"
TOPIC_EVENTS = "scheduler-events"
LEASE_NS = "lease"
REPLICA_STAGGER_S = 0.4  # > the longest selection window: replica k+1 sees who won replica k
REPUBLISH_PENDING_S = 10.0
RUNTIME_POLL_S = 3.0
TOMBSTONE_PASS_ON_S = 10.0  # tell a machine still running a deleted workload at most this often


def lease_key(tid: str) -> str:
    return f"/{LEASE_NS}/{tid}"


@dataclass
class TaskInfo:
    """A task as this machine knows it."""

    task_id: str
    spec: WorkloadSpec
    ordinal: int
    workload_blob: bytes
    origin: str
    seen_at: float
    state: str = "pending"  # pending | deployed | failed | deleted
    node: str = ""
    pod: str = ""
    reason: str = ""
    published_at: float = 0.0
    failures: list[str] = field(default_factory=list)
    epoch: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "workload": self.spec.workload_id,
                "replica": self.ordinal, "state": self.state, "machine": self.node,
                "pod": self.pod, "reason": self.reason, "failures": self.failures}


def request_of(spec: WorkloadSpec, ordinal: int) -> TaskRequest:
    cpu, mem = spec.requests()
    return TaskRequest(spec.workload_id, cpu, mem, spec.arch, dict(spec.node_selector),
                       spec.host_ports(), ordinal, spec.kind == "StatefulSet")


class Scheduling:
    def __init__(self, *, key: KeyPair, cfg: AgentConfig, view: MachineView, metrics: Metrics,
                 events: EventLog, runtime: Runtime | None, arch: str,
                 verifier_for: Callable[[dict[str, wire.Kind]], wire.Verifier],
                 publish: Callable[[str, bytes], Awaitable[None]],
                 put: Callable[[str, bytes], Awaitable[None]],
                 get: Callable[[str], Awaitable[bytes | None]],
                 pods_changed: Callable[[], None] = lambda: None,
                 late: Callable[[float], float] = lambda _now: 0.0) -> None:
        self.key = key
        self.node = key.peer_id
        self.cfg = cfg
        self.view = view
        self.metrics = metrics
        self.events = events
        self.runtime = runtime
        self.arch = arch
        self.publish = publish
        self.put = put
        self.get = get
        self.pods_changed = pods_changed  # re-announce our record now, not at the next refresh
        self.late = late  # how late machine records arrive (lag.py): auctions and heals wait
        self.started = time.time()
        self.auction = a.Auctioneer(self.node, random.Random(),
                                    a.Params(suppression=cfg.bid_suppression), late)
        self.tasks: dict[str, TaskInfo] = {}
        self.reservations = resources.Reservations()
        self.local_pods: dict[str, PodInfo] = {}
        self.runtime_ok = False
        self.runtime_error = "not checked yet"
        self.workload_verifier = verifier_for({WORKLOAD.name: WORKLOAD})
        self.delete_verifier = verifier_for({DELETE.name: DELETE, CORDON.name: CORDON,
                                             DRAIN.name: DRAIN})
        self.deleted_verifier = verifier_for({DELETE.name: DELETE})  # any age: stored Deletes
        self.store = WorkloadStore(cfg.state_dir, self.workload_verifier.authenticate,
                                   self.deleted_verifier.authenticate)
        # Cordon and drain survive restarts: an operator took this machine out on purpose.
        self.cordon_file = cfg.state_dir / "cordoned"
        self.cordoned = self.cordon_file.exists()
        self.drain_file = cfg.state_dir / "draining"
        self.drain_grace_s: int | None = _read_grace(self.drain_file)
        # What the supervisor and the work plane add to each pod's summary (ready, peer, ...).
        self.pod_extras: Callable[[PodInfo], dict[str, Any]] = lambda _pod: {}
        # Where a pod's discovery files live (mounted at /run/beemesh), made before its deploy.
        self.prepare_pod: Callable[[str], Any] = lambda _pod: None
        self._tombstone_sent: dict[tuple[str, str], float] = {}  # (workload, machine) -> when
        self._tombstone_wanted: set[str] = set()  # workloads whose Tombstone to send at once
        self._majority_since: float | None = None
        self._capacity: resources.Capacity | None = None
        self._capacity_at = 0.0
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.removing: set[str] = set()
        metrics.describe("bids", "bids sent, or withheld after a better one was seen", "result")
        metrics.describe("deployments", "replicas deployed here, by result", "result")

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.store.load(time.time())
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.poll_runtime()
            nursery.start_soon(self._runtime_loop)
            nursery.start_soon(self._republish_loop)
            nursery.start_soon(self._tombstone_loop)
            task_status.started()
            await self._driver()

    async def _driver(self) -> None:
        while True:
            deadline = self.auction.next_deadline()
            delay = 3600.0 if deadline is None else max(0.0, deadline - time.time())
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._execute(self.auction.tick(time.time(), self.local_state))

    def _kick(self) -> None:
        self._wake.set()

    # ---- local facts -------------------------------------------------------------------------

    def capacity(self) -> resources.Capacity:
        """What this machine offers: cgroup-aware, capped by max_cpu_milli / max_memory_bytes."""
        if self._capacity is None or time.monotonic() - self._capacity_at > 2:
            cap = resources.probe_capacity()
            cpu = min(cap.cpu_milli, self.cfg.max_cpu_milli or cap.cpu_milli)
            mem = min(cap.memory_bytes, self.cfg.max_memory_bytes or cap.memory_bytes)
            self._capacity = dataclasses.replace(
                cap, cpu_milli=cpu, memory_bytes=mem,
                memory_available_bytes=min(cap.memory_available_bytes, mem))
            self._capacity_at = time.monotonic()
        return self._capacity

    def local_state(self) -> LocalState:
        cap = self.capacity()
        cpu_free, mem_free = self.reservations.free(cap)
        here: dict[str, int] = {}
        ports: set[tuple[int, str]] = set()
        for pod in self.local_pods.values():
            here[pod.workload_id] = here.get(pod.workload_id, 0) + 1
            # The runtime reports port numbers only: hold them for both protocols.
            ports.update((port, proto) for port in pod.host_ports for proto in ("TCP", "UDP"))
        for tid, st in self.auction.tasks.items():
            if st.phase is a.Phase.DEPLOYING and tid in self.tasks:
                spec = self.tasks[tid].spec
                here[spec.workload_id] = here.get(spec.workload_id, 0) + 1
                ports.update(spec.host_ports())
        return LocalState(
            arch=self.arch, labels=dict(self.cfg.labels), cordoned=self.cordoned,
            runtime_ok=self.runtime_ok, cpu_milli_total=cap.cpu_milli,
            memory_bytes_total=cap.memory_bytes, cpu_milli_free=cpu_free,
            memory_bytes_free=mem_free, replicas_here=here,
            used_host_ports=frozenset(ports), uptime_s=time.time() - self.started,
            price=self.cfg.price, running_elsewhere=frozenset(
                (r["workload"], r["replica"]) for r in self._kept_elsewhere()),
            stateful_quorum=self.majority_for(time.time()) >= self.cfg.record_ttl_s)

    def deploying_pods(self) -> set[str]:
        """Pods this machine is deploying right now (not to be restarted or judged yet)."""
        return {info.spec.pod_name(info.ordinal) for tid, info in self.tasks.items()
                if (st := self.auction.tasks.get(tid)) is not None
                and st.phase is a.Phase.DEPLOYING}

    def pod_summaries(self) -> list[dict[str, Any]]:
        return [{"workload": p.workload_id, "replica": p.ordinal, "task": p.task_id,
                 "pod": p.name, "state": p.state, "created": float(p.created),
                 **self.pod_extras(p)}
                for p in sorted(self.local_pods.values(), key=lambda p: p.name)]

    async def _runtime_loop(self) -> None:
        while True:
            await trio.sleep(RUNTIME_POLL_S)
            await self.poll_runtime()

    async def poll_runtime(self) -> None:
        """Refresh runtime health and the pods running here (this is also re-adoption)."""
        if self.runtime is None:
            self.runtime_ok, self.runtime_error = False, "no container runtime configured"
            return
        try:
            await trio.to_thread.run_sync(self.runtime.ping)
            pods = await trio.to_thread.run_sync(self.runtime.list_pods)
        except UserError as e:
            if self.runtime_ok or self.runtime_error != str(e):
                log.error("container runtime unavailable, not bidding: %s", e)
                self.events.add(time.time(), "RuntimeDown", str(e), node=self.node)
            self.runtime_ok, self.runtime_error = False, str(e)
            return
        if not self.runtime_ok:
            log.info("container runtime available; %d beemesh pods running here", len(pods))
            self.events.add(time.time(), "RuntimeUp", f"{len(pods)} pods adopted", node=self.node)
        self.runtime_ok, self.runtime_error = True, ""
        fresh = {p.name: p for p in pods}
        if {(p.name, p.state) for p in fresh.values()} != {
                (p.name, p.state) for p in self.local_pods.values()}:
            self.pods_changed()
        self.local_pods = fresh
        self._rebuild_reservations()
        self._remove_deleted()

    def _remove_deleted(self) -> None:
        """Pods of deleted workloads go, whenever they turn up: a deploy that was in flight
        when the Delete arrived finishes after the Delete removed everything else."""
        assert self._nursery is not None
        for pod in list(self.local_pods.values()):
            if self.store.tombstone(pod.workload_id) is not None and pod.name not in self.removing:
                self._nursery.start_soon(self.remove, pod.name)

    def _rebuild_reservations(self) -> None:
        cap = self.capacity()
        res = resources.Reservations(cap)
        for pod in self.local_pods.values():
            res.reserve(pod.task_id, pod.cpu_milli, pod.memory_bytes, cap)
        for tid, st in self.auction.tasks.items():
            if st.phase is a.Phase.DEPLOYING and tid in self.tasks and tid not in res:
                cpu, mem = self.tasks[tid].spec.requests()
                res.reserve(tid, cpu, mem, cap)
        self.reservations = res

    # ---- operator requests (API) ---------------------------------------------------------------

    async def apply(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        """Verify operator-signed workloads and publish a Task for each missing replica."""
        now = time.time()
        accepted: list[tuple[WorkloadSpec, bytes, wire.Envelope]] = []
        for blob in blobs:
            if len(blob) > MAX_WORKLOAD_BYTES:
                raise UserError(f"workload is {len(blob)} bytes; the limit is "
                                f"{MAX_WORKLOAD_BYTES} (trim the manifest)")
            try:
                env = self.workload_verifier.check(blob, now)
            except wire.Rejected as e:
                raise UserError(f"apply rejected ({e.reason}): {e.detail}") from None
            accepted.append((WorkloadSpec.from_dict(env.body["spec"]), blob, env))
        out: list[dict[str, Any]] = []
        for spec, blob, env in accepted:
            if self.store.add_workload(blob, env) is None:
                raise UserError(f"{spec.workload_id}: a newer apply or delete is already known; "
                                "check the clock of this machine and apply again")
            generation = env.ts_ms
            running = {(p["workload"], p["replica"]) for p in self.all_pods()}
            # Deployments announced by events but not yet in their machine's record.
            running |= {(t.spec.workload_id, t.ordinal) for t in self.tasks.values()
                        if t.state == "deployed"}
            for ordinal in range(spec.replicas):
                tid = task_id(spec.workload_id, ordinal, generation)
                if (spec.workload_id, ordinal) in running:
                    out.append({"task_id": tid, "workload": spec.workload_id,
                                "replica": ordinal, "state": "exists"})
                    continue
                if out and out[-1]["workload"] == spec.workload_id:
                    await trio.sleep(REPLICA_STAGGER_S)
                await self._publish_task(tid, spec.workload_id, ordinal, blob, "")
                out.append({"task_id": tid, "workload": spec.workload_id, "replica": ordinal,
                            "state": "pending"})
        return out

    async def _publish_task(self, tid: str, workload_id: str, ordinal: int, blob: bytes,
                            epoch: str) -> None:
        body = {"task_id": tid, "workload_id": workload_id, "ordinal": ordinal,
                "origin": self.node, "workload": blob}
        if epoch:
            body["epoch"] = epoch
        await self.publish(TOPIC_TASKS, wire.seal(self.key, TASK.name, body, time.time()))

    async def replace(self, stored: StoredWorkload, ordinal: int, epoch: str) -> str:
        """Publish the Task that replaces replica `ordinal` whose task was `epoch` (a heal or a
        drain); every machine asking for the same lost replica publishes the same task id."""
        tid = task_id(stored.workload_id, ordinal, stored.generation, epoch)
        await self._publish_task(tid, stored.workload_id, ordinal, stored.blob, epoch)
        return tid

    async def _republish_loop(self) -> None:
        """Tasks we originated that nobody placed yet are re-announced (late joiners see them)."""
        while True:
            await trio.sleep(REPUBLISH_PENDING_S)
            now = time.time()
            for info in list(self.tasks.values()):
                if (info.origin == self.node and info.state == "pending"
                        and now - info.published_at >= REPUBLISH_PENDING_S):
                    info.published_at = now
                    await self._publish_task(info.task_id, info.spec.workload_id, info.ordinal,
                                             info.workload_blob, info.epoch)

    async def operator_request(self, blob: bytes) -> wire.Envelope:
        """Check an operator-signed Delete/Cordon/Drain and publish it; every machine (this one
        too, when the message comes back) acts on it."""
        try:
            env = self.delete_verifier.check(blob, time.time(), remember=False)
        except wire.Rejected as e:
            raise UserError(f"request rejected ({e.reason}): {e.detail}") from None
        await self.publish(TOPIC_TASKS, blob)
        return env

    async def delete(self, blob: bytes) -> dict[str, Any]:
        env = await self.operator_request(blob)
        if env.kind != DELETE.name:
            raise UserError("expected a signed Delete request")
        wid = env.body["workload_id"]
        known = [p for p in self.all_pods() if p["workload"] == wid]
        return {"workload": wid, "replicas": len(known)}

    def task_states(self, ids: list[str]) -> list[dict[str, Any]]:
        out = []
        for tid in ids:
            info = self.tasks.get(tid)
            out.append(info.to_dict() if info else {"task_id": tid, "state": "unknown"})
        return out

    def running_on(self, workload_id: str, ordinal: int) -> list[str]:
        """Machines whose live record (ours: Podman) lists a pod of that replica."""
        return sorted({r["machine"] for r in self.all_pods()
                       if r["workload"] == workload_id and r["replica"] == ordinal})

    def _kept_elsewhere(self) -> list[dict[str, Any]]:
        """Pods other machines' live records list and keep (not retiring, not draining)."""
        now = time.time()
        return [{**p, "machine": e.peer_id} for e in self.view.entries(now)
                if e.peer_id != self.node and not e.body.get("draining")
                for p in e.body.get("pods", []) if not p.get("retiring")]

    def majority_for(self, now: float) -> float:
        """How long this machine has seen a strict majority of the members without a break."""
        if not self.view.has_majority(now, self.cfg.quorum_memory_s):
            self._majority_since = None
            return 0.0
        if self._majority_since is None:
            self._majority_since = now
        return now - self._majority_since

    def machine_ids(self) -> set[str]:
        return {e.peer_id for e in self.view.entries(time.time())}

    def all_pods(self) -> list[dict[str, Any]]:
        """Every pod in the mesh, from machine records (ours from Podman directly)."""
        now = time.time()
        rows: list[dict[str, Any]] = []
        for entry in self.view.entries(now):
            pods = self.pod_summaries() if entry.peer_id == self.node else \
                entry.body.get("pods", [])
            for p in pods:
                rows.append({**p, "machine": entry.peer_id, "age_s": round(now - p["created"])})
        return sorted(rows, key=lambda r: (r["workload"], r["replica"], r["machine"]))

    # ---- inbound messages ------------------------------------------------------------------------

    def check_task(self, env: wire.Envelope) -> None:
        """Extra validation of a Task (run in the topic validator, before relaying)."""
        inner = env.body["workload"]
        if len(inner) > MAX_WORKLOAD_BYTES:
            raise wire.Rejected("oversized", "embedded workload over the size cap")
        w = self.workload_verifier.authenticate(inner)  # trusted operator, any age
        try:
            spec = WorkloadSpec.from_dict(w.body["spec"])
        except ManifestError as e:
            raise wire.Rejected("schema", f"embedded workload: {e}") from None
        body = env.body
        consistent = (
            spec.workload_id == body["workload_id"]
            and 0 <= body["ordinal"] < max(1, spec.replicas)
            and body["task_id"] == task_id(spec.workload_id, body["ordinal"], w.ts_ms,
                                           body.get("epoch", ""))
        )
        if not consistent:
            raise wire.Rejected("schema", "task does not match its embedded workload")
        if self.store.is_deleted(spec.workload_id, w.ts_ms / 1000):
            self._tombstone_wanted.add(spec.workload_id)  # the asker missed the Delete: tell it
            raise wire.Rejected("stale", f"{spec.workload_id} was deleted after this apply")

    def check_tombstone(self, env: wire.Envelope) -> wire.Envelope:
        """The operator's Delete inside a Tombstone: trusted signer, younger than its TTL."""
        inner = self.deleted_verifier.authenticate(env.body["delete"])
        if inner.ts_ms / 1000 + TOMBSTONE_TTL_S <= time.time():
            raise wire.Rejected("stale", "passed-on Delete is older than the tombstone TTL")
        return inner

    async def handle(self, env: wire.Envelope) -> None:
        now = time.time()
        body = env.body
        actions: list[a.Action] = []
        if env.kind == TASK.name:
            actions = self._on_task(body, now)
        elif env.kind == BID.name:
            actions = self.auction.bid(body["task_id"], body["round"], body["score"],
                                       body["node"], now, self.local_state)
        elif env.kind == DEPLOYED.name:
            info = self.tasks.get(body["task_id"])
            if info is not None and info.state != "deleted":
                info.state, info.node, info.pod = "deployed", body["node"], body["pod"]
            self.events.add(now, "Deployed", f"{body['pod']} running on {body['node']}",
                            task=body["task_id"], workload=body["workload_id"],
                            node=body["node"])
            actions = self.auction.deployed(body["task_id"], body["node"], body["score"], now)
        elif env.kind == FAILED.name:
            info = self.tasks.get(body["task_id"])
            if info is not None:
                info.failures.append(f"{body['node']}: {body['reason']}")
                info.reason = body["reason"]
            self.events.add(now, "Failed", body["reason"], task=body["task_id"],
                            workload=body["workload_id"], node=body["node"])
            actions = self.auction.failed(body["task_id"], body["node"], now, self.local_state)
        elif env.kind == LEASE.name:
            self.auction.lease_seen(body["task_id"], body["node"], body["expires_ms"] / 1000, now)
        elif env.kind == DELETE.name:
            self._on_delete(env, now)
        elif env.kind == TOMBSTONE.name:
            self._on_delete(self.check_tombstone(env), now)
        elif env.kind == CORDON.name and body["node"] == self.node:
            self._set_cordoned(body["cordoned"], now)
        elif env.kind == DRAIN.name and body["node"] == self.node:
            self._set_draining(body["grace_s"], now)
        await self._execute(actions)
        self._kick()

    def _on_task(self, body: dict[str, Any], now: float) -> list[a.Action]:
        tid = body["task_id"]
        info = self.tasks.get(tid)
        if info is None:
            blob = body["workload"]
            workload = wire.decode(blob)  # verified by check_task in the topic validator
            spec = WorkloadSpec.from_dict(workload.body["spec"])
            # Kept on disk for healing; check_task dropped Tasks older than a Delete, and a
            # newer apply lifts the tombstone, so its pods are not taken for leftovers.
            self.store.add_workload(blob, workload)
            info = self.tasks[tid] = TaskInfo(tid, spec, body["ordinal"], blob, body["origin"],
                                              now, published_at=now,
                                              epoch=body.get("epoch", ""))
            self.events.add(now, "TaskSeen", f"replica {info.ordinal} of {spec.workload_id}",
                            task=tid, workload=spec.workload_id, node=body["origin"])
        if info.state != "pending":
            return []
        return self.auction.task(tid, request_of(info.spec, info.ordinal), now, self.local_state)

    def _set_cordoned(self, cordoned: bool, now: float) -> None:
        if cordoned:
            self.cordon_file.write_text("cordoned by an operator; `beemesh uncordon` undoes it\n")
        else:
            self.cordon_file.unlink(missing_ok=True)
            self.drain_file.unlink(missing_ok=True)  # uncordon also ends a drain
            self.drain_grace_s = None
        self.cordoned = cordoned
        self.events.add(now, "Cordoned" if cordoned else "Uncordoned",
                        "no new replicas will be placed here" if cordoned else
                        "this machine takes new replicas again", node=self.node)
        self.pods_changed()  # re-announce now: others show the new state at once

    def _set_draining(self, grace_s: int, now: float) -> None:
        """Drain: cordon, then (supervisor) replace every replica here and stop the originals."""
        self.drain_file.write_text(f"{grace_s}\n")
        self.drain_grace_s = grace_s
        self.events.add(now, "Draining", f"moving every replica off this machine (stop grace "
                        f"{grace_s} s)", node=self.node)
        if not self.cordoned:
            self._set_cordoned(True, now)
        self.pods_changed()

    def _on_delete(self, env: wire.Envelope, now: float) -> None:
        wid = env.body["workload_id"]
        if not self.store.add_delete(wire.encode(env), env, now) and \
                self.store.tombstone(wid) is None:
            return  # older than a newer apply, or expired
        for tid in self.auction.forget_workload(wid):
            if tid in self.tasks:
                self.tasks[tid].state = "deleted"
        doomed = [p for p in self.local_pods.values() if p.workload_id == wid]
        self.events.add(now, "Deleted", f"{wid}: removing {len(doomed)} pod(s) here",
                        workload=wid, node=self.node)
        self._remove_deleted()  # in the background: a stop may wait out its grace period

    async def _tombstone_loop(self) -> None:
        """Pass Deletes on to machines that missed them: any machine whose record still lists
        a pod of a deleted workload, or that asked for a task of one, gets the operator's
        Delete again, wrapped in a Tombstone (the Delete itself is too old to travel alone)."""
        while True:
            now = time.time()
            self.store.expire(now)
            wanted = set(self._tombstone_wanted)
            self._tombstone_wanted.clear()
            for entry in self.view.entries(now):
                if entry.peer_id == self.node:
                    continue
                for pod in entry.body.get("pods", []):
                    key = (pod["workload"], entry.peer_id)
                    if (self.store.tombstone(pod["workload"]) is not None
                            and now - self._tombstone_sent.get(key, 0.0) >= TOMBSTONE_PASS_ON_S):
                        self._tombstone_sent[key] = now
                        wanted.add(pod["workload"])
            for wid in sorted(wanted):
                tomb = self.store.tombstone(wid)
                if tomb is not None:
                    body = {"origin": self.node, "delete": tomb.blob}
                    await self.publish(TOPIC_TASKS, wire.seal(self.key, TOMBSTONE.name, body, now))
            for key in [k for k, t in self._tombstone_sent.items()
                        if now - t > 6 * TOMBSTONE_PASS_ON_S]:
                del self._tombstone_sent[key]
            self.majority_for(now)  # sampled every second, so a lost majority resets the clock
            await trio.sleep(1)

    # ---- actions -------------------------------------------------------------------------------

    async def _execute(self, actions: list[a.Action]) -> None:
        assert self._nursery is not None
        for act in actions:
            if isinstance(act, a.PublishBid):
                body = {"task_id": act.task_id, "round": act.round, "score": act.score,
                        "node": self.node}
                await self.publish(TOPIC_PROPOSALS, wire.seal(self.key, BID.name, body,
                                                              time.time()))
            elif isinstance(act, a.WriteLease):
                self._nursery.start_soon(self._write_lease, act.task_id, act.ttl_s)
            elif isinstance(act, a.Deploy):
                self._nursery.start_soon(self._deploy, act.task_id)
            elif isinstance(act, a.CheckLease):
                self._nursery.start_soon(self._check_lease, act.task_id)
            elif isinstance(act, a.PublishDeployed | a.PublishFailed):
                await self._publish_outcome(act)
            elif isinstance(act, a.Drain):
                info = self.tasks.get(act.task_id)
                if info is not None:
                    self.events.add(time.time(), "Drained", f"duplicate of {info.pod}; "
                                    f"{act.winner} keeps it", task=act.task_id, node=self.node)
                    self._nursery.start_soon(self.remove, info.spec.pod_name(info.ordinal))
            elif isinstance(act, a.Note):
                info = self.tasks.get(act.task_id)
                self.events.add(time.time(), "Note", act.text, task=act.task_id,
                                workload=info.spec.workload_id if info else "", node=self.node)
        self.metrics.set("bids", "sent", self.auction.bids_sent_total)
        self.metrics.set("bids", "withheld", self.auction.bids_suppressed_total)

    async def _publish_outcome(self, act: a.PublishDeployed | a.PublishFailed) -> None:
        info = self.tasks[act.task_id]
        base = {"task_id": act.task_id, "workload_id": info.spec.workload_id,
                "ordinal": info.ordinal, "node": self.node}
        if isinstance(act, a.PublishDeployed):
            kind, body = DEPLOYED.name, {**base, "score": act.score,
                                         "pod": info.spec.pod_name(info.ordinal)}
        else:
            kind, body = FAILED.name, {**base, "reason": act.reason}
        await self.publish(TOPIC_EVENTS, wire.seal(self.key, kind, body, time.time()))

    async def _write_lease(self, tid: str, ttl_s: float) -> None:
        """The lease hint goes on pub/sub (every waiting machine hears the renewal at once) and
        into the Machine DHT (where a machine that missed it looks before re-entering)."""
        now = time.time()
        body = {"task_id": tid, "node": self.node, "expires_ms": int((now + ttl_s) * 1000)}
        await self.publish(TOPIC_EVENTS, wire.seal(self.key, LEASE.name, body, now))
        with trio.move_on_after(ttl_s / 2):
            try:
                await self.put(lease_key(tid), wire.seal(self.key, LEASE.name, body, now))
            except Exception as e:  # a DHT write can fail with few peers; the lease is a hint
                log.debug("lease hint for %s not stored: %s", tid, e)

    async def _check_lease(self, tid: str) -> None:
        holder, expires = None, 0.0
        data = await self.get(lease_key(tid))
        if data is not None:
            env = wire.decode(data)  # the DHT validator already verified it
            holder, expires = env.body["node"], env.body["expires_ms"] / 1000
        await self._execute(self.auction.lease_result(tid, holder, expires, time.time(),
                                                      self.local_state))
        self._kick()

    async def _deploy(self, tid: str) -> None:
        info = self.tasks[tid]
        spec, ordinal = info.spec, info.ordinal
        cpu, mem = spec.requests()
        ok, reason = False, ""
        # Checked when bidding too; a StatefulSet ordinal is checked again now, with whatever
        # records arrived during the selection window (it must never run twice).
        refusal = replica_refusal(request_of(spec, ordinal), self.local_state()) \
            if spec.kind == "StatefulSet" else None
        if self.runtime is None or not self.runtime_ok:
            reason = f"runtime unavailable on {self.node}: {self.runtime_error}"
        elif refusal is not None:
            reason = refusal
        elif not self.reservations.reserve(tid, cpu, mem, self.capacity()):
            reason = "resources were taken by another task meanwhile"
        else:
            if self.cfg.deploy_delay_s:
                await trio.sleep(self.cfg.deploy_delay_s)
            runtime = self.runtime
            t0 = time.monotonic()
            try:
                directory = self.prepare_pod(spec.pod_name(ordinal))
                pod = await trio.to_thread.run_sync(
                    lambda: runtime.deploy(spec, ordinal, tid, discovery_dir=directory))
            except UserError as e:
                reason = str(e)
            else:
                took = time.monotonic() - t0
                if took > self.cfg.deploy_timeout_s:  # kept: the lease held others back
                    self.events.add(time.time(), "SlowDeploy", f"{pod.name} took {took:.1f} s "
                                    "to start", task=tid, workload=spec.workload_id,
                                    node=self.node)
                ok = True
                self.local_pods[pod.name] = pod
                self.pods_changed()
                self._remove_deleted()
            if not ok:
                self.reservations.release(tid)
        self.metrics.inc("deployments", "ok" if ok else "failed")
        if ok:
            info.state, info.node, info.pod = "deployed", self.node, spec.pod_name(ordinal)
            self.events.add(time.time(), "Deployed", f"{info.pod} started here", task=tid,
                            workload=spec.workload_id, node=self.node)
        else:
            log.warning("deploy of %s replica %d failed: %s", spec.workload_id, ordinal, reason)
        await self._execute(self.auction.deploy_result(tid, ok, reason, time.time()))
        self._kick()

    async def remove(self, pod_name: str, grace_s: float = 10) -> None:
        if self.runtime is None or pod_name in self.removing:
            return
        self.removing.add(pod_name)
        runtime = self.runtime
        try:
            await trio.to_thread.run_sync(lambda: runtime.remove(pod_name, grace_s))
        except UserError as e:
            log.error("could not remove pod %s: %s", pod_name, e)
            return
        finally:
            self.removing.discard(pod_name)
        self.local_pods.pop(pod_name, None)
        self._rebuild_reservations()
        self.pods_changed()


def _read_grace(path: Path) -> int | None:
    """The stop grace of a drain in progress (kept across restarts), or None."""
    try:
        return int(path.read_text().strip() or "30")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return 30  # a damaged marker still means "draining"
