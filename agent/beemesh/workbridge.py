"""The agent's side of its work plane: the child process, the socket it talks to, and the
checks on what it asks for.

The work plane (`beemesh workplane`, see `beemesh.workplane.process`) runs as a child of the
agent, as `workplane_user` when the agent runs as root, in its own directory (0700, owned by
that user): it holds the workload keys, which the agent never reads, and it never sees the
machine key. The two talk over a unix socket in that directory, refused to any other uid:

- `POST /v1/work/sync` (every second): the work plane reports its host and what it sees; the
  agent answers with the replicas it runs (and their probe results), the workloads it knows,
  the live machines and their work-plane hosts.
- `POST /v1/work/certify`: the machine vouches for a replica's new workload key (WorkloadCert).
- `POST /v1/work/heal`: ask for a lost replica; the agent checks it (`heal_refusal`) and
  publishes the Task on the machine plane, which only machine keys may do.
- `POST /v1/work/remove`: stop a surplus replica here.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from beemesh import wire
from beemesh.api.server import ApiError, ApiServer, Request, Response
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.identity import KeyPair, peer_id
from beemesh.runtime import PodInfo
from beemesh.scheduler import auction as a
from beemesh.scheduler.messages import WORKLOAD_CERT
from beemesh.scheduling import Scheduling
from beemesh.store import StoredWorkload
from beemesh.supervisor import Supervisor
from beemesh.workplane.process import AGENT_PID_ENV
from beemesh.workplane.records import RECORD_TTL_S

log = logging.getLogger("beemesh.workbridge")

SOCKET_NAME = "agent.sock"
PODS_DIR = "pods"
REMOVE_GRACE_S = 10
RESPAWN_MAX_S = 30.0
DIR_CLEANUP_S = 30.0


def heal_refusal(*, uptime_s: float, settle_s: float, late_s: float, late_limit_s: float,
                 stored: StoredWorkload | None, deleted: bool, ordinal: int,
                 running_on: list[str], placing: str | None,
                 deployed_ago: tuple[str, float] | None, has_majority: bool) -> str | None:
    """Why a heal of replica `ordinal` must not be published now, or None when it may.

    The work plane asks from what its service records show; the machine plane may know better
    (a Delete, a replica whose work plane is down but whose pod runs, a task being placed).
    `has_majority`: a strict majority of the members has been in sight long enough for their
    records (which list their pods) to have arrived. `late_s`: how much later than usual
    machine records arrive (lag.py); in a backlog, live machines' records lapse.
    `deployed_ago`: (task, seconds) of the newest deployment of this replica: its service record
    takes a sync, a certificate and a gossip round to arrive, seconds in a busy mesh.
    """
    if uptime_s < settle_s:
        return (f"agent started {uptime_s:.0f} s ago; heals wait {settle_s:.0f} s for peers to "
                "pass on deletes and records")
    if late_s > late_limit_s:
        return (f"machine records arrive {late_s:.0f} s late (a backlog, not dead machines); "
                f"heals wait until they are under {late_limit_s:g} s late again")
    if stored is None:
        return "no signed manifest of this workload here"
    if deleted:
        return "the workload was deleted"
    if not 0 <= ordinal < stored.spec.replicas:
        return f"replica {ordinal} is beyond replicas={stored.spec.replicas}"
    if running_on:
        return f"replica {ordinal} still runs on {', '.join(sorted(running_on))}"
    if placing is not None:
        return f"task {placing} for replica {ordinal} is being placed"
    if deployed_ago is not None and deployed_ago[1] < RECORD_TTL_S:
        return (f"task {deployed_ago[0]} for replica {ordinal} was deployed "
                f"{deployed_ago[1]:.0f} s ago; its service record may not be out yet")
    if stored.spec.kind == "StatefulSet" and not has_majority:
        return "a StatefulSet replica heals only where a majority of machines is in sight"
    return None


def resolve_user(name: str) -> tuple[int, int] | None:
    """(uid, gid) for `workplane_user` (a name or a number), None for "same as the agent"."""
    if not name:
        return None
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        if name.isdigit():
            return int(name), int(name)
        raise UserError(f"workplane_user {name!r} does not exist on this machine; create it "
                        "(useradd --system beemesh-work) or fix workplane_user") from None
    return entry.pw_uid, entry.pw_gid


class WorkBridge:
    def __init__(self, *, key: KeyPair, cfg: AgentConfig, sch: Scheduling, sup: Supervisor,
                 addrs: Callable[[], list[str]], log_level: str = "info") -> None:
        self.key = key
        self.cfg = cfg
        self.sch = sch
        self.sup = sup
        self.addrs = addrs
        self.log_level = log_level
        self.directory = cfg.workplane_dir
        self.user = resolve_user(cfg.workplane_user) if os.geteuid() == 0 else None
        uid = self.user[0] if self.user else os.getuid()
        self.api = ApiServer(self.directory / SOCKET_NAME,
                             owner=self.user, allowed_uids={uid, 0, os.getuid()})
        self.api.route("POST", "/v1/work/sync", self._sync)
        self.api.route("POST", "/v1/work/certify", self._certify)
        self.api.route("POST", "/v1/work/heal", self._heal)
        self.api.route("POST", "/v1/work/remove", self._remove)
        self.host: dict[str, Any] | None = None  # our work plane's {peer_id, addrs}
        self.peers: dict[str, str] = {}  # pod -> its workload Peer ID
        self.records: list[dict[str, Any]] = []  # the work plane's view, for `get endpoints`
        self.synced = False
        self.started = time.time()
        self.proc: trio.Process | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        sch.metrics.describe("workplane_messages_dropped",
                             "work-plane messages its validator dropped, by reason")
        sch.metrics.describe("workplane_connections_refused",
                             "connections the work plane closed: not an announced work plane",
                             "who")

    # ---- what the agent reads --------------------------------------------------------------

    def extras(self, pod: PodInfo) -> dict[str, Any]:
        peer = self.peers.get(pod.name)
        return {"peer": peer} if peer else {}

    def workload_peers(self) -> set[str]:
        """Every workload Peer ID this machine knows of: refused on the machine plane."""
        known = set(self.peers.values())
        for entry in self.sch.view.entries(time.time()):
            known.update(p["peer"] for p in entry.body.get("pods", []) if p.get("peer"))
        return known

    def endpoints(self, workload: str | None) -> list[dict[str, Any]]:
        return [r for r in self.records if workload is None or r["workload"] == workload]

    def pod_dir(self, pod: str) -> Path:
        """The pod's discovery directory (mounted read-only at /run/beemesh in it): made by the
        agent before the deploy, written by the work plane."""
        path = self.directory / PODS_DIR / pod
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755)
        if self.user is not None:
            os.chown(path, *self.user)
        return path

    # ---- lifecycle -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """The work plane's directory: owned by its user, 0700, with the pods' directories."""
        (self.directory / PODS_DIR).mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        os.chmod(self.directory / PODS_DIR, 0o755)
        if self.user is not None:
            # The state dir must be traversable (not readable) for the work plane's user.
            os.chmod(self.cfg.state_dir, os.stat(self.cfg.state_dir).st_mode | 0o111)
            for path in (self.directory, self.directory / PODS_DIR):
                os.chown(path, *self.user)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.prepare()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.api.serve)
            nursery.start_soon(self._cleanup_loop)
            task_status.started()
            await self._child_loop()

    async def _cleanup_loop(self) -> None:
        """Discovery directories of pods that are gone (not running, not being deployed)."""
        while True:
            await trio.sleep(DIR_CLEANUP_S)
            keep = set(self.sch.local_pods) | self.sch.deploying_pods()
            for path in (self.directory / PODS_DIR).iterdir():
                if path.name not in keep and time.time() - path.stat().st_mtime > DIR_CLEANUP_S:
                    shutil.rmtree(path, ignore_errors=True)

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "beemesh", "workplane", "--dir", str(self.directory),
                "--agent", str(self.directory / SOCKET_NAME),
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
            options: dict[str, Any] = {"env": {**os.environ, AGENT_PID_ENV: str(os.getpid())}}
            if self.user is not None:
                options.update(user=self.user[0], group=self.user[1], extra_groups=[])
            try:
                self.proc = await trio.lowlevel.open_process(self.argv(), **options)
            except OSError as e:
                raise UserError(f"cannot start the work plane ({e}); is `{sys.executable}` "
                                "runnable by workplane_user?") from None
            try:
                code = await self.proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_child()
            if self._stopping:
                return
            log.error("work plane exited with status %s; starting it again in %.0f s",
                      code, delay)
            self.sch.events.add(time.time(), "WorkPlaneExited", f"status {code}",
                                node=self.sch.node)
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

    async def _sync(self, req: Request) -> Response:
        report = req.json() or {}
        host = report.get("host")
        if isinstance(host, dict) and isinstance(host.get("peer_id"), str):
            if self.host is None or self.host.get("peer_id") != host["peer_id"]:
                self.sch.pods_changed()  # announce where our work plane listens at once
            self.host = {"peer_id": host["peer_id"],
                         "addrs": [str(a) for a in host.get("addrs", [])][:16]}
        self.records = [r for r in report.get("records", []) if isinstance(r, dict)]
        peers = report.get("peers", {})
        if isinstance(peers, dict):
            local = set(self.sch.local_pods)
            self.peers = {p: str(v) for p, v in peers.items() if p in local}
        self.synced = bool(report.get("synced"))
        dropped = report.get("dropped", {})
        if isinstance(dropped, dict):  # the work plane's counts, shown in the agent's metrics
            for reason, count in dropped.items():
                if isinstance(count, int):
                    self.sch.metrics.set("workplane_messages_dropped", str(reason)[:32], count)
        if isinstance(report.get("gated"), int):
            self.sch.metrics.set("workplane_connections_refused", "peer", report["gated"])
        return Response(200, self.state())

    def state(self) -> dict[str, Any]:
        now = time.time()
        view = self.sch.view
        machines = []
        for entry in view.entries(now):
            wp = entry.body.get("workplane")
            machines.append({"peer_id": entry.peer_id, "workplane": wp})
        replicas = []
        for pod in self.sch.local_pods.values():
            spec = self.sup.spec_of(pod)
            replicas.append({
                "pod": pod.name, "workload": pod.workload_id, "ordinal": pod.ordinal,
                "task": pod.task_id, "state": pod.state, "ready": self.sup.ready(pod),
                "retiring": pod.name in self.sup.retiring,
                "ports": [] if spec is None else ports_of(spec),
                "removing": pod.name in self.sch.removing,
            })
        workloads = [{"workload_id": w.workload_id, "replicas": w.spec.replicas,
                      "stateful": w.spec.kind == "StatefulSet"}
                     for w in self.sch.store.workloads()]
        return {
            "machine": self.sch.node,
            "uptime_s": now - self.started,
            "addrs": machine_ips(self.addrs()),
            "replicas": replicas,
            "workloads": workloads,
            "deleted": [d.workload_id for d in self.sch.store.tombstones()],
            "machines": machines,
            "statefulset_margin_s": self.cfg.statefulset_margin_s,
        }

    async def _certify(self, req: Request) -> Response:
        body = req.json() or {}
        pod_name, key_hex = body.get("pod"), body.get("public_key")
        pod = self.sch.local_pods.get(str(pod_name))
        if pod is None:
            raise ApiError(404, f"no pod {pod_name} runs on this machine")
        if "task" in body and body["task"] != pod.task_id:  # the pod was replaced meanwhile
            raise ApiError(409, f"pod {pod_name} now runs task {pod.task_id}, not "
                           f"{body['task']}; certify the new one after the next sync")
        try:
            peer = peer_id(bytes.fromhex(str(key_hex)))
        except ValueError:
            raise ApiError(400, "public_key must be 64 hex digits (an Ed25519 key)") from None
        if peer == self.sch.node or peer in self.sch.machine_ids():
            raise ApiError(400, "a machine key cannot be a workload key")
        body = {"machine": self.sch.node, "peer_id": peer, "workload_id": pod.workload_id,
                "ordinal": pod.ordinal, "pod": pod.name, "task": pod.task_id}
        cert = wire.seal(self.key, WORKLOAD_CERT.name, body, time.time())
        self.peers[pod.name] = peer
        self.sch.pods_changed()
        return Response(200, {"cert": cert.hex(), "peer_id": peer})

    async def _heal(self, req: Request) -> Response:
        body = req.json() or {}
        wid, ordinal, epoch = body.get("workload_id"), body.get("ordinal"), body.get("epoch")
        if not (isinstance(wid, str) and isinstance(ordinal, int) and isinstance(epoch, str)) \
                or isinstance(ordinal, bool):
            raise ApiError(400, "heal needs workload_id (str), ordinal (int) and epoch (str)")
        now = time.time()
        stored = self.sch.store.workload(wid)
        reason = heal_refusal(
            uptime_s=now - self.started, settle_s=self.cfg.heal_settle_s,
            late_s=self.sch.late(now), late_limit_s=self.cfg.heal_pause_late_s, stored=stored,
            deleted=self.sch.store.tombstone(wid) is not None, ordinal=ordinal,
            running_on=self.sch.running_on(wid, ordinal), placing=self._placing(wid, ordinal),
            deployed_ago=self._deployed_ago(wid, ordinal, now),
            has_majority=self.sch.majority_for(now) >= self.cfg.record_ttl_s)
        if reason is not None or stored is None:
            return Response(200, {"state": "refused", "reason": reason})
        tid = await self.sch.replace(stored, ordinal, epoch)
        self.sch.events.add(now, "HealAsked", f"replica {ordinal} has no live record; "
                            f"replacing task {epoch}", task=tid, workload=wid, node=self.sch.node)
        return Response(200, {"state": "published", "task_id": tid})

    def _auctions_of(self, wid: str, ordinal: int) -> Iterator[tuple[str, a.TaskState]]:
        """Every auction this machine follows for replica `ordinal` of `wid`."""
        for tid, info in self.sch.tasks.items():
            st = self.sch.auction.tasks.get(tid)
            if info.spec.workload_id == wid and info.ordinal == ordinal and st is not None:
                yield tid, st

    def _placing(self, wid: str, ordinal: int) -> str | None:
        return next((tid for tid, st in self._auctions_of(wid, ordinal)
                     if st.phase not in (a.Phase.DONE, a.Phase.RUNNING)), None)

    def _deployed_ago(self, wid: str, ordinal: int, now: float) -> tuple[str, float] | None:
        """The newest task of this replica that some machine reported Deployed, and when."""
        deployed = [(tid, now - st.finished_at) for tid, st in self._auctions_of(wid, ordinal)
                    if st.deployed_by is not None and st.finished_at is not None]
        return min(deployed, key=lambda d: d[1], default=None)

    async def _remove(self, req: Request) -> Response:
        body = req.json() or {}
        pod_name, reason = str(body.get("pod")), str(body.get("reason", ""))[:300]
        pod = self.sch.local_pods.get(pod_name)
        if pod is None:
            raise ApiError(404, f"no pod {pod_name} runs on this machine")
        self.sch.events.add(time.time(), "Removing", f"{pod_name}: {reason}",
                            workload=pod.workload_id, node=self.sch.node)
        assert self._nursery is not None
        self._nursery.start_soon(self.sch.remove, pod_name, REMOVE_GRACE_S)
        return Response(200, {"pod": pod_name, "state": "removing"})


def ports_of(spec: Any) -> list[dict[str, Any]]:
    """The ports a replica offers, as its ServiceRecord lists them."""
    return [{"name": p.name or "", "port": p.container_port, "host_port": p.host_port or 0,
             "protocol": p.protocol} for c in spec.containers for p in c.ports]


def machine_ips(addrs: list[str]) -> list[str]:
    """The IP addresses in a machine's dialable multiaddrs, where its replicas' hostPorts are."""
    out: list[str] = []
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and parts[2] not in out:
            out.append(parts[2])
    return out
