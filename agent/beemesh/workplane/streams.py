"""Workload streams: the trio service that carries pods' connections to Services.

The agent hands over each pod's listeners (`handoff`); every connection a pod makes to one is
a caller of that pod's replica. It goes to an endpoint `routing.Router` orders: on this
machine, straight to the serving pod's IP (policy still checked); on another, over a libp2p
stream to that machine's work plane, opened with the mutual replica handshake
(`handshake`), the bytes then on the stream's own encrypted TCP connection (`channel`), or on
the libp2p stream when that cannot be reached. The serving side checks the caller, then
connects to its pod's IP at the Service's target port. Bytes are copied both ways until both
sides end (half-closes pass through). Counts go to the agent at each sync (`stream_counters`).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

import trio
from libp2p.abc import INetStream

from beemesh import wire
from beemesh.errors import UserError
from beemesh.identity import KeyPair
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.once import Once
from beemesh.workplane import channel, handoff, handshake
from beemesh.workplane.admission import Admission
from beemesh.workplane.carrying import Libp2pStream, splice
from beemesh.workplane.handshake import Refused
from beemesh.workplane.names import Listener
from beemesh.workplane.records import ServiceView
from beemesh.workplane.routing import Endpoint, Router
from beemesh.workplane.stream_counters import Counters
from beemesh.workplane.sync import AgentView, Replica, Service

log = logging.getLogger("beemesh.streams")

CONNECT_S = 3.0  # to open one endpoint (handshake included) before trying the next
DIAL_S = 1.0  # to reach a channel's port before carrying on the libp2p stream instead
NO_CHANNEL_S = 60.0  # how long a host whose channel port failed is not offered one
MAX_NO_CHANNEL = 1024


class Identity(Protocol):
    """A local replica's stream identity (`local.Local`)."""

    workload_id: str
    key: KeyPair
    cert: bytes | None


class Plane(Protocol):
    """What streams read of the work plane."""

    state: AgentView | None
    local: Mapping[str, Any]  # pod -> Identity
    view: ServiceView
    admission: Admission


def _service_port(svc: Service, port: int) -> Any:
    return next((p for p in svc.spec.ports if p.port == port), None)


def _target_port(replica: Replica, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    return next((p.port for p in replica.ports if p.name == target), None)


class Streams:
    def __init__(self, plane: Plane, mesh: MeshHost, listen: list[str]) -> None:
        self.plane = plane
        self.mesh = mesh
        self.tokens = channel.Tokens()
        self.channel = channel.Listener(self.tokens, self._refused_channel, CONNECT_S, time.time)
        self.channel_at = channel.listen_address(listen)
        self._no_channel: dict[str, float] = {}  # host -> until when it gets no offer
        self.router = Router()
        self.counters = Counters()
        self.verifier = handshake.Verifier()
        self._listeners: dict[str, trio.CancelScope] = {}
        self._once = Once()

    async def run_channel(self) -> None:
        """The channel listener (`channel`); without one, streams carry on libp2p."""
        if self.channel_at is None:
            log.warning("no TCP listen address: workload streams carry on libp2p streams")
            return
        try:
            await self.channel.run(self.channel_at)
        except OSError as e:
            log.warning("cannot listen for workload stream channels on %s: %s; streams carry "
                        "on libp2p streams", self.channel_at, e.strerror or e)

    def _refused_channel(self, reason: str) -> None:
        self._refuse(reason, "channel", "a connection to the channel port without a token "
                     "issued here" if reason == "untrusted" else "too many connections at once")

    # ---- listeners from the agent ---------------------------------------------------------

    async def receive_listeners(self, fd: int, nursery: trio.Nursery) -> None:
        """Take the listeners the agent hands over (`handoff`) and serve each."""
        channel = trio.socket.from_stdlib_socket(
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd))
        while True:
            data, anc, _, _ = await channel.recvmsg(handoff.MAX_MESSAGE,
                                                    socket.CMSG_SPACE(4 * 4))
            if not data:
                log.warning("the agent closed the listener channel")
                return
            fds = handoff.fds_of(anc)
            try:
                got = handoff.parse(data, fds)
            except ValueError as e:
                log.warning("%s", e)
                for f in fds:
                    socket.close(f)
                continue
            if isinstance(got, str):
                scope = self._listeners.pop(got, None)
                if scope is not None:
                    scope.cancel()
                continue
            old = self._listeners.pop(got.key, None)
            if old is not None:
                old.cancel()
            scope = self._listeners[got.key] = trio.CancelScope()
            nursery.start_soon(self._serve, got, fds[0], scope)

    async def _serve(self, li: Listener, fd: int, scope: trio.CancelScope) -> None:
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
        listener = trio.SocketListener(sock)
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    while True:
                        try:
                            conn = await listener.accept()
                        except OSError as e:  # EMFILE and the like: wait, never spin
                            log.warning("accepting on %s:%d: %s", li.address, li.port, e)
                            await trio.sleep(1)
                            continue
                        nursery.start_soon(self._call, li, conn)
            finally:
                sock.close()

    # ---- calling ------------------------------------------------------------------------------

    def _refuse(self, reason: str, where: str, detail: str) -> None:
        self.counters.refuse(reason)
        if self._once.first(where, reason):
            log.warning("workload stream refused (%s): %s: %s (logged once per service and "
                        "reason)", where, reason, detail)

    async def _call(self, li: Listener, conn: trio.SocketStream) -> None:
        """One connection a pod made to a listener; never raises (one connection's trouble
        is not the work plane's)."""
        try:
            await self._carry(li, conn)
        except Exception as e:
            self._refuse("unhandled", li.service_id, f"{type(e).__name__}: {e}")
            log.debug("connection to %s", li.service_id, exc_info=e)

    async def _carry(self, li: Listener, conn: trio.SocketStream) -> None:
        async with conn:
            state = self.plane.state
            svc = next((s for s in state.services if s.service_id == li.service_id), None) \
                if state else None
            me = self.plane.local.get(li.pod)
            port = _service_port(svc, li.port) if svc else None
            if state is None or svc is None or port is None:
                self._refuse("no_endpoint", li.service_id, "no such Service or port (yet)")
                return
            if me is None or me.cert is None:
                if li.workload_id in state.deleted:
                    self._refuse("deleted", li.service_id, f"{li.workload_id} is deleted")
                else:
                    self._refuse("not_ready", li.service_id,
                                 f"{li.pod} has no certified key (yet, or any more)")
                return
            now = time.time()
            endpoints = self._endpoints(state, svc, li.ordinal, now)
            order = self.router.order(svc.service_id, endpoints, now)
            if not order:
                self._refuse("no_endpoint", svc.service_id, "no ready replica")
                return
            for ep in order:
                try:
                    with trio.fail_after(CONNECT_S):
                        other = await self._open(state, svc, port, me, ep)
                except Refused as e:
                    self._refuse(e.reason, svc.service_id, e.detail)
                    if e.reason in ("policy", "deleted", "untrusted"):
                        return
                    self.router.failed(ep.peer_id, time.time())
                    continue
                except Exception as e:  # dial failures of every kind py-libp2p raises
                    log.info("endpoint %s/%d of %s did not answer: %s", ep.workload_id,
                             ep.ordinal, svc.service_id, str(e) or type(e).__name__)
                    self.router.failed(ep.peer_id, time.time())
                    continue
                self.counters.add(svc.service_id, "opened")
                async with other:
                    await splice(self.counters, svc.service_id, conn, other)
                return
            self._refuse("unreachable", svc.service_id, "no endpoint answered")

    def _endpoints(self, state: AgentView, svc: Service, ordinal: int | None,
                   now: float) -> list[Endpoint]:
        hosts = {m.peer_id: m.workplane.peer_id for m in state.machines if m.workplane}
        return [Endpoint(r.peer_id, r.workload_id, r.ordinal, r.machine,
                         r.machine == state.machine,
                         None if r.machine == state.machine or r.machine not in hosts
                         else self.mesh.rtt(hosts[r.machine]), hosts.get(r.machine))
                for r in self.plane.view.records(now)
                if r.workload_id in svc.workloads and (r.ready or svc.spec.not_ready)
                and not r.retiring
                and (ordinal is None or r.ordinal == ordinal)]

    async def _open(self, state: AgentView, svc: Service, port: Any, me: Identity,
                    ep: Endpoint) -> trio.abc.HalfCloseableStream:
        if ep.local:
            self._check_caller(state, svc, me.workload_id)
            target = next((r for r in state.replicas
                           if r.workload_id == ep.workload_id and r.ordinal == ep.ordinal), None)
            return await self._connect_pod(target, port.target)
        host = ep.host
        if host is None:
            raise Refused("unreachable", f"machine {ep.machine} announces no work plane")
        stream = await self.mesh.open_stream(host, handshake.PROTOCOL)
        dialled = None
        try:
            assert me.cert is not None
            remote = stream.get_remote_address()
            offer = channel.Offer.new() if remote and self._no_channel.get(host, 0) < \
                time.time() else None
            hello = handshake.open_message(me.key, me.cert, svc.service_id, port.port,
                                           ep.peer_id, self.mesh.peer_id.to_base58(), host,
                                           time.time(), offer and {
                                               "key": offer.public,
                                               "aes": channel.hardware_aes()})
            await send_request(stream, hello)
            answer = await read_request(stream)
            server, body = handshake.check_answer(self.verifier, answer, time.time(), hello,
                                                  ep.peer_id, ep.machine)
            if server.workload_id not in svc.workloads:
                raise Refused("untrusted", "answered by a replica the Service does not select")
            if offer is not None and remote and (offered := body.get("channel")):
                dialled = await self._dial_channel(host, remote[0], offered, offer)
                if dialled is not None:
                    self.counters.add(svc.service_id, "on_channel")
                    with trio.move_on_after(1):
                        await stream.close()  # the bytes go on the channel
                    return dialled
                await stream.write(channel.CARRY_HERE)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.reset()  # also when cancelled (the 3 s budget ran out)
                if dialled is not None:
                    await dialled.stream.aclose()
            raise
        return Libp2pStream(stream)

    async def _dial_channel(self, host: str, address: str, offered: dict[str, Any],
                            offer: channel.Offer) -> channel.Channel | None:
        tcp = None
        try:
            with trio.fail_after(DIAL_S):
                tcp = await trio.open_tcp_stream(address, offered["port"])
                await tcp.send_all(offered["token"])
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
            if tcp is not None:
                await tcp.aclose()
            if len(self._no_channel) >= MAX_NO_CHANNEL:
                self._no_channel.clear()
            self._no_channel[host] = time.time() + NO_CHANNEL_S
            log.info("channel port %s:%d of work plane %s unreachable (%s): carrying on the "
                     "libp2p stream for %.0f s", address, offered["port"], host,
                     str(e) or type(e).__name__, NO_CHANNEL_S)
            return None
        return channel.Channel(tcp, offer.keys(offered["key"], offered["cipher"]))

    @staticmethod
    def _check_caller(state: AgentView, svc: Service, workload_id: str) -> None:
        handshake.check_caller(svc.spec, workload_id, {w.workload_id for w in state.workloads},
                               state.deleted)

    async def _connect_pod(self, target: Replica | None,
                           port: int | str) -> trio.abc.HalfCloseableStream:
        if target is None or not target.address:
            raise Refused("no_replica", "the replica is not running here (any more)")
        number = _target_port(target, port)
        if number is None:
            raise Refused("no_port", f"{target.pod} has no port named {port}")
        try:
            return await trio.open_tcp_stream(target.address, number)
        except OSError as e:
            raise Refused("unreachable", f"{target.pod} at {target.address}:{number}: "
                          f"{e.strerror or e}") from None

    # ---- serving --------------------------------------------------------------------------

    async def serve(self, stream: INetStream) -> None:
        """A StreamOpen from another machine's work plane (admitted hosts only)."""
        from_host = stream.muxed_conn.peer_id.to_base58()
        a = self.plane.admission
        service = "?"
        try:
            with trio.fail_after(CONNECT_S):  # an admitted host that says nothing is dropped
                data = await read_request(stream)
            state = self.plane.state
            if state is None:
                raise Refused("not_ready", "this work plane has not synced yet")
            caller, body = handshake.check_open(self.verifier, data, time.time(), from_host,
                                                self.mesh.peer_id.to_base58(),
                                                a.machine_of_host.get(from_host))
            service = body["service"]
            try:
                a.holdings.check(caller.machine, caller.pod, caller.workload_id,
                                 caller.ordinal, caller.task)
            except wire.Rejected as e:
                raise Refused("not_held", e.detail) from None
            svc = next((s for s in state.services if s.service_id == service), None)
            port = _service_port(svc, body["port"]) if svc else None
            if svc is None or port is None:
                raise Refused("no_endpoint", f"no Service {service} port {body['port']} here")
            self._check_caller(state, svc, caller.workload_id)
            mine = next(((pod, m) for pod, m in self.plane.local.items()
                         if m.key.peer_id == body["target"] and m.cert), None)
            target = next((r for r in state.replicas if mine and r.pod == mine[0]), None)
            if mine is None or target is None or target.workload_id not in svc.workloads:
                raise Refused("no_replica", "the replica asked for is not here")
            if not target.ready and not svc.spec.not_ready:
                raise Refused("not_ready", f"{target.pod} is not ready")
            tcp = await self._connect_pod(target, port.target)
            offered, keys, arrival = None, None, channel.Arrival()
            if "channel" in body and self.channel.port:
                cipher = channel.choose_cipher(body["channel"]["aes"])
                public, keys = channel.server_keys(body["channel"]["key"], cipher)
                offered = {"key": public, "port": self.channel.port, "cipher": cipher,
                           "token": self.tokens.issue(arrival, time.time(), CONNECT_S)}
        except Refused as e:
            self._refuse(e.reason, f"{service} from {from_host}", e.detail)
            try:
                await send_request(stream, handshake.refusal(e.reason))
                await stream.close()
            except Exception:  # the caller is gone
                await stream.reset()
            return
        except (UserError, trio.TooSlowError) as e:  # closed, too much, or nothing in time
            self._refuse("malformed", f"{service} from {from_host}", str(e) or "no StreamOpen")
            await stream.reset()
            return
        async with tcp:
            await send_request(stream, handshake.accept_message(
                mine[1].key, mine[1].cert, data, time.time(), offered))
            if offered is not None and keys is not None:
                conn = await arrival.wait(stream, CONNECT_S)
                self.tokens.withdraw(offered["token"])
                if conn is None and not arrival.here:
                    self._refuse("broken", f"{service} from {from_host}",
                                 "neither the channel nor the libp2p stream was chosen in time")
                    await stream.reset()
                    return
                if conn is not None:
                    await stream.reset()  # the bytes go on the channel
                    self.counters.add(svc.service_id, "served")
                    self.counters.add(svc.service_id, "on_channel")
                    async with channel.Channel(conn, keys) as ch:
                        await splice(self.counters, svc.service_id, tcp, ch)
                    return
            self.counters.add(svc.service_id, "served")
            async with Libp2pStream(stream) as remote:
                await splice(self.counters, svc.service_id, tcp, remote)
