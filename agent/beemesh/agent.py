"""The machine agent: one long-lived process per machine (the trio shell around the cores).

It joins the private mesh (bootstrap with backoff), announces a signed MachineRecord on
pub/sub and in the Machine DHT, keeps a MachineView of the fleet from verified records, and
serves the local API. Every inbound message passes `wire.Verifier` inside the gossipsub
validator, so invalid messages are dropped before they are relayed to anyone else.
"""

from __future__ import annotations

import base64
import binascii
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.records.validator import Validator

from beemesh import __version__, members_file, wire
from beemesh.api.server import ApiError, ApiServer, Request, Response
from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.fleet import Fleet
from beemesh.identity import KeyPair, peer_id, public_key_from_peer_id_bytes
from beemesh.lag import DeliveryLag
from beemesh.logs import (
    LOGS_PROTOCOL,
    encode_error,
    encode_line,
    lines_from_thread,
    read_request,
    relay_remote,
    send_request,
)
from beemesh.machines import (
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    PROTOCOL_VERSION,
    MachineView,
    RecordError,
    entry_from_envelope,
)
from beemesh.manifest_exchange import ManifestExchange
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.metrics import Metrics
from beemesh.resources import machine_arch
from beemesh.scheduler.messages import (
    BID,
    CORDON,
    DELETE,
    DEPLOYED,
    DRAIN,
    FAILED,
    LEASE,
    LOGS_REQUEST,
    TASK,
    TOMBSTONE,
)
from beemesh.scheduling import LEASE_NS, TOPIC_EVENTS, TOPIC_PROPOSALS, TOPIC_TASKS, Scheduling
from beemesh.supervisor import Supervisor
from beemesh.workbridge import WorkBridge

log = logging.getLogger("beemesh.agent")

MACHINE_DHT_PREFIX = "/beemesh/machine"
MACHINE_NS = "machine"
MAX_DIALED_PEERS = 16
DIAL_TIMEOUT_S = 5.0

# Which kinds each topic carries; anything else on a topic is dropped as unknown_kind.
TOPIC_KINDS: dict[str, dict[str, wire.Kind]] = {
    TOPIC_TASKS: {k.name: k for k in (TASK, DELETE, CORDON, DRAIN, TOMBSTONE)},
    TOPIC_PROPOSALS: {BID.name: BID},
    TOPIC_EVENTS: {k.name: k for k in (MACHINE_RECORD, MACHINE_WITHDRAW, DEPLOYED, FAILED,
                                       LEASE)},
}
MACHINE_KINDS = {MACHINE_RECORD.name, MACHINE_WITHDRAW.name}


def dialable(addrs: list[str]) -> list[str]:
    """Replace wildcard listen addresses by this machine's interface addresses."""
    out: list[str] = []
    for addr in addrs:
        if "/ip4/0.0.0.0/" not in addr:
            out.append(addr)
            continue
        for nics in psutil.net_if_addrs().values():
            for nic in nics:
                if nic.family.name == "AF_INET":
                    out.append(addr.replace("/ip4/0.0.0.0/", f"/ip4/{nic.address}/"))
    return out[:16]


def machine_dht_key(pid: str) -> str:
    """DHT key of a machine's record.

    py-libp2p 0.8.1 servers refuse FIND_NODE keys longer than 50 bytes that are not
    multihashes, so the key carries the last 40 characters of the Peer ID (~234 bits).
    """
    return f"/{MACHINE_NS}/{pid[-40:]}"


class MachineRecordValidator(Validator):
    """Machine DHT values: a signed, unexpired MachineRecord stored under its own peer id."""

    def __init__(self, verifier: wire.Verifier,
                 refuse_signer: Callable[[wire.Envelope], None]) -> None:
        self.verifier = verifier
        self.refuse_signer = refuse_signer

    def authenticate(self, value: bytes) -> wire.Envelope:
        env = self.verifier.authenticate(value)
        self.refuse_signer(env)
        return env

    def validate(self, key: str, value: bytes) -> None:
        try:
            env = self.authenticate(value)
            entry = entry_from_envelope(env, time.time())
        except (wire.Rejected, RecordError) as e:
            raise ValueError(f"invalid machine record: {e}") from None
        if key != machine_dht_key(entry.peer_id) or entry.expires_at <= time.time():
            raise ValueError("machine record stored under another key, or expired")

    def select(self, key: str, values: list[bytes]) -> int:
        def ts(v: bytes) -> int:
            try:
                return wire.decode(v).ts_ms
            except wire.Rejected:
                return -1

        return max(range(len(values)), key=lambda i: ts(values[i]))


class LeaseValidator(MachineRecordValidator):
    """Lease hints: signed by the machine they name, stored under their task, unexpired."""

    def validate(self, key: str, value: bytes) -> None:
        try:
            env = self.authenticate(value)
        except wire.Rejected as e:
            raise ValueError(f"invalid lease hint: {e}") from None
        if key != f"/{LEASE_NS}/{env.body['task_id']}":
            raise ValueError("lease hint stored under another task's key")
        if env.body["expires_ms"] <= time.time() * 1000:
            raise ValueError("lease hint expired")


class Agent:
    def __init__(self, cfg: AgentConfig, key: KeyPair, fleet: Fleet,
                 log_level: str = "info") -> None:
        self.cfg = cfg
        self.key = key
        self.fleet = fleet
        self.peer_id = key.peer_id
        self.started = time.monotonic()
        self.joined_after_s: float | None = None
        self.view = MachineView()
        self.view.remember(members_file.load(cfg.state_dir))
        self._members_saved: tuple[frozenset[str], float] = (frozenset(), 0.0)
        self.metrics = Metrics()
        self.metrics.describe("messages_dropped", "inbound messages dropped, by reason")
        self.metrics.describe("messages_accepted", "inbound messages accepted, by kind", "kind")
        self.metrics.describe("bootstrap_attempts", "dials to bootstrap peers", "result")
        self.metrics.describe("dht_records_fetched", "machine records read from the DHT")
        self.events = EventLog()
        self._replay = wire.ReplayGuard()
        self.lag = DeliveryLag()
        self.verifiers = {topic: self.verifier_for(kinds) for topic, kinds in TOPIC_KINDS.items()}
        self._logged_drops: set[tuple[str, str]] = set()
        self.mesh = MeshHost(
            HostSettings(
                key=key,
                psk_hex=fleet.psk_hex,
                listen=cfg.listen,
                dht_prefix=MACHINE_DHT_PREFIX,
                dht_validators={
                    MACHINE_NS: MachineRecordValidator(self.verifiers[TOPIC_EVENTS],
                                                       self.refuse_workload_signer),
                    LEASE_NS: LeaseValidator(self.verifier_for({LEASE.name: LEASE}),
                                             self.refuse_workload_signer),
                },
                heartbeat_s=cfg.gossip_heartbeat_s,
            )
        )
        self.scheduling = Scheduling(
            key=key, cfg=cfg, view=self.view, metrics=self.metrics, events=self.events,
            runtime=make_runtime(cfg), arch=machine_arch(), verifier_for=self.verifier_for,
            publish=self.mesh.publish, put=self.mesh.put, get=self.mesh.get,
            pods_changed=self._announce_soon, late=self.lag.behind_s)
        self.supervisor = Supervisor(self.scheduling, quorum_memory_s=cfg.quorum_memory_s)
        self.bridge: WorkBridge | None = None
        if cfg.workplane:
            self.bridge = WorkBridge(key=key, cfg=cfg, sch=self.scheduling, sup=self.supervisor,
                                     addrs=lambda: dialable(self.mesh.addrs()),
                                     log_level=log_level)
            self.scheduling.prepare_pod = self.bridge.pod_dir
        bridge = self.bridge
        self.scheduling.pod_extras = lambda pod: {
            **self.supervisor.extras(pod), **(bridge.extras(pod) if bridge else {})}
        self._workload_peers: tuple[float, set[str]] = (0.0, set())
        self.manifests = ManifestExchange(self.scheduling, self.mesh)
        self._announce_now = trio.Event()
        self.api = ApiServer(cfg.api_socket)
        self.api.route("GET", "/v1/nodes", self._api_nodes)
        self.api.route("GET", "/v1/status", self._api_status)
        self.api.route("GET", "/v1/metrics", self._api_metrics_json)
        self.api.route("GET", "/metrics", self._api_metrics_text)
        self.api.route("POST", "/v1/apply", self._api_apply)
        self.api.route("POST", "/v1/delete", self._api_delete)
        self.api.route("POST", "/v1/cordon", self._api_cordon)
        self.api.route("POST", "/v1/drain", self._api_drain)
        self.api.route("GET", "/v1/endpoints", self._api_endpoints)
        self.api.route("GET", "/v1/tasks", self._api_tasks)
        self.api.route("GET", "/v1/pods", self._api_pods)
        self.api.route("GET", "/v1/events", self._api_events)
        self.api.route("POST", "/v1/logs", self._api_logs)
        self.logs_verifier = self.verifier_for({LOGS_REQUEST.name: LOGS_REQUEST})
        self.mesh.handle(LOGS_PROTOCOL, self._serve_logs_stream)

    def verifier_for(self, kinds: dict[str, wire.Kind]) -> wire.Verifier:
        """Verifiers share one replay cache and the fleet's operator trust list."""
        return wire.Verifier(kinds, lambda: self.fleet.trusted_operators, replay=self._replay)

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        async with self.mesh.running(), trio.open_nursery() as nursery:
            for topic in TOPIC_KINDS:
                sub = await self.mesh.subscribe(topic, self._validator(topic))
                nursery.start_soon(self._consume, topic, sub)
            await nursery.start(self.api.serve)
            await nursery.start(self.scheduling.run)
            nursery.start_soon(self.supervisor.run)
            nursery.start_soon(self.manifests.run)
            if self.bridge is not None:
                await nursery.start(self.bridge.run)
            log.info("agent %s listening on %s", self.peer_id, ", ".join(self.mesh.addrs()))
            print(f"beemesh agent {self.peer_id} ready; API at {self.cfg.api_socket}", flush=True)
            for addr in self.cfg.bootstrap:
                nursery.start_soon(self._bootstrap, addr)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._maintain_loop)
            await self._wait_for_signal()
            if self.bridge is not None:
                with trio.move_on_after(4):
                    await self.bridge.stop()
            await self._withdraw()
            nursery.cancel_scope.cancel()

    async def _wait_for_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

    async def _withdraw(self) -> None:
        """Tell peers we are leaving so they drop us now rather than at TTL."""
        with trio.move_on_after(1.5):
            body = {"peer_id": self.peer_id}
            await self.mesh.publish(TOPIC_EVENTS, wire.seal(self.key, MACHINE_WITHDRAW.name,
                                                            body, time.time()))
            await trio.sleep(0.3)  # let the publish leave the socket

    # ---- joining and announcing --------------------------------------------------------

    async def _bootstrap(self, addr: str) -> None:
        """Keep one bootstrap peer connected, retrying with exponential backoff while down."""
        if addr.endswith(f"/p2p/{self.peer_id}"):
            return
        try:
            target = ID.from_base58(addr.rsplit("/p2p/", 1)[1])
        except (IndexError, ValueError):
            log.error("bootstrap address %s has no /p2p/<peer id>; ignoring it", addr)
            return
        delay = 0.5
        while True:
            if target in self.mesh.connected():
                delay = 0.5
                await trio.sleep(2)
                continue
            try:
                with trio.fail_after(DIAL_TIMEOUT_S):
                    await self.mesh.connect(addr)
                self.metrics.inc("bootstrap_attempts", "ok")
                log.info("connected to bootstrap peer %s", addr)
                delay = 0.5
            except Exception as e:  # libp2p raises many types for an unreachable peer
                self.metrics.inc("bootstrap_attempts", "failed")
                log.info("bootstrap %s unreachable (%s); retry in %.1f s", addr,
                         str(e) or type(e).__name__, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.cfg.bootstrap_backoff_max_s)

    def _record(self) -> dict[str, Any]:
        cap = self.scheduling.capacity()
        return {
            "peer_id": self.peer_id,
            "addrs": dialable(self.mesh.addrs()),
            "arch": machine_arch(),
            "labels": dict(self.cfg.labels),
            "capacity": {
                "cpu_milli": cap.cpu_milli,
                "memory_bytes": cap.memory_bytes,
                "memory_available_bytes": cap.memory_available_bytes,
                "cgroup": cap.cgroup,
            },
            "protocol": PROTOCOL_VERSION,
            "ttl_s": self.cfg.record_ttl_s,
            "pods": self.scheduling.pod_summaries(),
            "cordoned": self.scheduling.cordoned,
            "draining": self.scheduling.drain_grace_s is not None,
            **({"workplane": self.bridge.host} if self.bridge and self.bridge.host else {}),
        }

    def _announce_soon(self) -> None:
        self._announce_now.set()

    async def _announce_loop(self) -> None:
        while True:
            self._announce_now = trio.Event()
            now = time.time()
            data = wire.seal(self.key, MACHINE_RECORD.name, self._record(), now)
            self.view.apply(entry_from_envelope(wire.decode(data), now), now)
            await self.mesh.publish(TOPIC_EVENTS, data)
            try:
                with trio.move_on_after(self.cfg.record_refresh_s):
                    await self.mesh.put(machine_dht_key(self.peer_id), data)
            except Exception as e:  # a DHT with no peers yet is normal at start-up
                log.debug("machine record not stored in the DHT yet: %s", e)
            with trio.move_on_after(max(0.0, self.cfg.record_refresh_s - (time.time() - now))):
                await self._announce_now.wait()

    async def _maintain_loop(self) -> None:
        """Keep the routing table fed, learn records of new peers, dial machines we know of."""
        while True:
            now = time.time()
            known = self.view.entries(now)  # also drops expired records
            connected = set(self.mesh.connected())
            for pid in connected:
                await self.mesh.dht.add_peer(pid)
                if self.view.get(pid.to_base58()) is None:
                    await self._fetch_record(pid.to_base58())
            dialed = len(connected)
            for entry in known:
                if dialed >= MAX_DIALED_PEERS:
                    break
                if entry.peer_id == self.peer_id or ID.from_base58(entry.peer_id) in connected:
                    continue
                dialed += 1
                await self.mesh.dial_any(entry.body["addrs"], entry.peer_id, DIAL_TIMEOUT_S)
            self._save_members(now)
            if self.joined_after_s is None and len(self.view.entries(time.time())) > 1:
                self.joined_after_s = time.monotonic() - self.started
                log.info("joined the mesh after %.2f s", self.joined_after_s)
            await trio.sleep(1)

    def _save_members(self, now: float) -> None:
        """When a member joins or leaves, and every minute (expiry times move on)."""
        members = self.view.members()
        peers, saved_at = self._members_saved
        if frozenset(members) == peers and now - saved_at < 60:
            return
        try:
            members_file.save(self.cfg.state_dir, members)
        except OSError as e:
            log.warning("could not save the member list (quorum after a restart): %s", e)
        self._members_saved = (frozenset(members), now)

    async def _fetch_record(self, pid: str) -> None:
        data = await self.mesh.get(machine_dht_key(pid))
        if data is None:
            return
        self.metrics.inc("dht_records_fetched")
        try:
            env = self.verifiers[TOPIC_EVENTS].authenticate(data)
            self.refuse_workload_signer(env)
            self.view.apply(entry_from_envelope(env, time.time()), time.time())
        except (wire.Rejected, RecordError) as e:
            self._count_drop("dht", pid, getattr(e, "reason", "schema"), str(e))

    # ---- inbound messages ----------------------------------------------------------------

    def _validator(self, topic: str) -> Any:
        verifier = self.verifiers[topic]

        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                env = verifier.check(msg.data, time.time(), public_key_from_peer_id_bytes(
                    msg.from_id))
                self.refuse_workload_signer(env)
                self._note_lateness(env)
                if env.kind == TASK.name:
                    self.scheduling.check_task(env)
                elif env.kind == TOMBSTONE.name:
                    self.scheduling.check_tombstone(env)
            except wire.Rejected as e:
                if e.reason == "stale":  # too late to accept: the strongest sign of a backlog
                    self._note_lateness(wire.decode(msg.data))  # it decoded before the check
                self._count_drop(topic, ID(msg.from_id).to_base58(), e.reason, e.detail)
                return False
            self.metrics.inc("messages_accepted", env.kind)
            return True

        return validate

    def _note_lateness(self, env: wire.Envelope) -> None:
        """Machine records come every few seconds from every machine: they time the mesh."""
        if env.kind == MACHINE_RECORD.name:
            self.lag.observe(env.sender.hex(), env.ts_ms / 1000, time.time())

    def refuse_workload_signer(self, env: wire.Envelope) -> None:
        """Workload keys never speak on the machine plane: topics, DHT records, lease hints."""
        if peer_id(env.sender) in self.workload_peers():
            raise wire.Rejected("wrong_plane", "signed by a workload key; only machine and "
                                "operator keys speak on the machine plane")

    def workload_peers(self) -> set[str]:
        """Workload Peer IDs this machine knows (refreshed at most once a second)."""
        at, peers = self._workload_peers
        if self.bridge is not None and time.monotonic() - at > 1.0:
            peers = self.bridge.workload_peers()
            self._workload_peers = (time.monotonic(), peers)
        return peers

    def _count_drop(self, topic: str, origin: str, reason: str, detail: str) -> None:
        self.metrics.inc("messages_dropped", reason)
        if (origin, reason) not in self._logged_drops and len(self._logged_drops) < 10_000:
            self._logged_drops.add((origin, reason))
            log.warning("dropped message on %s from %s: %s (logged once per peer and reason)",
                        topic, origin, detail)

    async def _consume(self, topic: str, sub: Any) -> None:
        while True:
            msg = await sub.get()
            env = wire.decode(msg.data)  # already verified by the topic validator
            try:
                if env.kind in MACHINE_KINDS:
                    self._handle(env)
                else:
                    await self.scheduling.handle(env)
            except RecordError as e:
                self._count_drop(topic, peer_id(env.sender), "schema", str(e))

    def _handle(self, env: wire.Envelope) -> None:
        now = time.time()
        if env.kind == MACHINE_RECORD.name:
            self.view.apply(entry_from_envelope(env, now), now)
        elif env.kind == MACHINE_WITHDRAW.name:
            self.view.withdraw(env.body["peer_id"], env.ts_ms / 1000, now)

    # ---- API -------------------------------------------------------------------------------

    async def _api_nodes(self, _req: Request) -> Response:
        now = time.time()
        return Response(200, [e.to_dict(now, self.peer_id) for e in self.view.entries(now)])

    async def _api_status(self, _req: Request) -> Response:
        proc = psutil.Process()
        cpu = proc.cpu_times()
        return Response(200, {
            "peer_id": self.peer_id,
            "version": __version__,
            "arch": machine_arch(),
            "addrs": self.mesh.addrs(),
            "connected_peers": [p.to_base58() for p in self.mesh.connected()],
            "known_machines": len(self.view.entries(time.time())),
            "hears_mesh_late_s": round(self.lag.behind_s(time.time()), 1),
            "joined": self.joined_after_s is not None,
            "joined_after_s": self.joined_after_s,
            "runtime": "ok" if self.scheduling.runtime_ok else self.scheduling.runtime_error,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "rss_bytes": proc.memory_info().rss,
            "cpu_seconds": cpu.user + cpu.system,
        })

    async def _api_apply(self, req: Request) -> Response:
        blobs = [_b64(w) for w in (req.json() or {}).get("workloads", [])]
        if not blobs:
            raise ApiError(400, "no workloads in the request")
        return Response(200, await self.scheduling.apply(blobs))

    async def _api_delete(self, req: Request) -> Response:
        return Response(200, await self.scheduling.delete(_b64((req.json() or {}).get(
            "request", ""))))

    async def _api_cordon(self, req: Request) -> Response:
        env = await self.scheduling.operator_request(_b64((req.json() or {}).get("request", "")))
        if env.kind != CORDON.name:
            raise ApiError(400, "expected a signed Cordon request")
        return Response(200, {"node": env.body["node"], "cordoned": env.body["cordoned"]})

    async def _api_drain(self, req: Request) -> Response:
        env = await self.scheduling.operator_request(_b64((req.json() or {}).get("request", "")))
        if env.kind != DRAIN.name:
            raise ApiError(400, "expected a signed Drain request")
        node = env.body["node"]
        pods = [p for p in self.scheduling.all_pods() if p["machine"] == node]
        return Response(200, {"node": node, "replicas": len(pods)})

    async def _api_endpoints(self, req: Request) -> Response:
        if self.bridge is None:
            raise ApiError(409, "this agent runs without a work plane (workplane = false)")
        return Response(200, self.bridge.endpoints(req.query.get("workload") or None))

    async def _api_tasks(self, req: Request) -> Response:
        ids = [i for i in req.query.get("ids", "").split(",") if i]
        return Response(200, self.scheduling.task_states(ids))

    async def _api_pods(self, _req: Request) -> Response:
        return Response(200, self.scheduling.all_pods())

    async def _api_events(self, req: Request) -> Response:
        after = int(req.query.get("after", "0"))
        wait = min(30.0, float(req.query.get("wait", "0")))
        with trio.move_on_after(wait):
            while not self.events.since(after) and wait > 0:
                await trio.sleep(0.2)
        return Response(200, {"last": self.events.last_seq,
                              "events": [e.to_dict() for e in self.events.since(after)]})

    async def _api_logs(self, req: Request) -> Response:
        blob = _b64((req.json() or {}).get("request", ""))
        return Response(200, stream=self._logs(blob, forwarded=False),
                        content_type="application/x-ndjson")

    async def _serve_logs_stream(self, stream: Any) -> None:
        """Another agent forwards an operator's signed logs request for a pod we run."""
        try:
            blob = await read_request(stream)
            async for chunk in self._logs(blob, forwarded=True):
                await stream.write(chunk)
        except Exception as e:  # the requesting side went away, or garbage on the stream
            log.debug("logs stream ended: %s", e)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    async def _logs(self, blob: bytes, forwarded: bool) -> AsyncIterator[bytes]:
        """JSON lines of a pod's logs, from here or from the machine that runs it."""
        try:
            env = self.logs_verifier.check(blob, time.time())
            pod, follow = env.body["pod"], env.body["follow"]
            runtime = self.scheduling.runtime
            if pod in self.scheduling.local_pods and runtime is not None:
                async for line in lines_from_thread(lambda: runtime.logs(pod, follow)):
                    yield encode_line(line)
                return
            hosts = [r["machine"] for r in self.scheduling.all_pods()
                     if r["pod"] == pod and r["machine"] != self.peer_id]
            if forwarded or not hosts:
                yield encode_error(f"no pod named {pod} runs in the mesh; see `beemesh get pods`"
                                   if not forwarded else f"pod {pod} is not on this machine")
                return
            stream = await self.mesh.open_stream(hosts[0], LOGS_PROTOCOL)
            await send_request(stream, blob)
            async for chunk in relay_remote(stream):
                yield chunk
        except wire.Rejected as e:
            yield encode_error(f"logs request rejected ({e.reason}): {e.detail}")
        except UserError as e:
            yield encode_error(str(e))

    async def _api_metrics_json(self, _req: Request) -> Response:
        return Response(200, self.metrics.as_dict())

    async def _api_metrics_text(self, _req: Request) -> Response:
        return Response(200, self.metrics.prometheus(), "text/plain; version=0.0.4")


def _b64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "expected base64-encoded signed bytes") from None


def make_runtime(cfg: AgentConfig) -> Any:
    from beemesh.runtime.podman import PodmanRuntime, default_socket_url

    return PodmanRuntime(cfg.podman_socket or default_socket_url())


def run_agent(cfg: AgentConfig, key: KeyPair, fleet: Fleet, log_level: str = "info") -> None:
    """Blocking entry point for `beemesh agent`."""
    try:
        trio.run(Agent(cfg, key, fleet, log_level).run)
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
