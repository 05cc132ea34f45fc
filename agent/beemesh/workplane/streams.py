"""Workload streams: the trio service that carries pods' connections to Services.

The agent hands over each pod's listeners (`handoff`); every connection a pod makes to one is
a caller of that pod's replica. It goes to an endpoint `routing.Router` orders: on this
machine, straight to the serving pod's IP (policy still checked); on another, over a libp2p
stream to that machine's work plane, opened with the mutual replica handshake
(`handshake`). The serving side checks the caller, then connects to its pod's IP at the
Service's target port. Bytes are copied both ways until both sides end (half-closes pass
through). Counts go to the agent at each sync (`stream_counters`).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from beemesh import wire
from beemesh.errors import UserError
from beemesh.identity import KeyPair
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.workplane import handoff, handshake
from beemesh.workplane.admission import Admission
from beemesh.workplane.handshake import Refused
from beemesh.workplane.names import Listener
from beemesh.workplane.records import ServiceView
from beemesh.workplane.routing import Endpoint, Router
from beemesh.workplane.stream_counters import Counters
from beemesh.workplane.sync import AgentView, Replica, Service

log = logging.getLogger("beemesh.streams")

CONNECT_S = 3.0  # to open one endpoint (handshake included) before trying the next
CHUNK = 64 * 1024


class Identity(Protocol):
    """A local replica's stream identity (`process._Local`)."""

    workload_id: str
    key: KeyPair
    cert: bytes | None


class Plane(Protocol):
    """What streams read of the work plane."""

    state: AgentView | None
    local: Mapping[str, Any]  # pod -> Identity
    view: ServiceView
    admission: Admission


class _Libp2pStream(trio.abc.HalfCloseableStream):
    """A libp2p stream as a trio stream, so one copy loop serves both kinds."""

    def __init__(self, stream: INetStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.write(bytes(data))
        except StreamError as e:
            raise trio.BrokenResourceError(str(e)) from None

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.stream.read(max_bytes or CHUNK)
        except StreamError:
            return b""  # closed or reset by the other end: the copy ends

    async def send_eof(self) -> None:
        await self.stream.close()  # yamux FIN: half-close, reads go on

    async def aclose(self) -> None:
        try:
            await self.stream.close()
        except Exception:  # the connection may be gone already
            await self.stream.reset()


def _service_port(svc: Service, port: int) -> Any:
    return next((p for p in svc.spec.ports if p.port == port), None)


def _target_port(replica: Replica, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    return next((p.port for p in replica.ports if p.name == target), None)


class Streams:
    def __init__(self, plane: Plane, mesh: MeshHost) -> None:
        self.plane = plane
        self.mesh = mesh
        self.router = Router()
        self.counters = Counters()
        self.verifier = handshake.Verifier()
        self._listeners: dict[str, trio.CancelScope] = {}
        self._logged: set[str] = set()

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
        if f"{where}|{reason}" not in self._logged and len(self._logged) < 10_000:
            self._logged.add(f"{where}|{reason}")
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
                             ep.ordinal, svc.service_id, e or type(e).__name__)
                    self.router.failed(ep.peer_id, time.time())
                    continue
                self.counters.add(svc.service_id, "opened")
                async with other:
                    await self.splice(svc.service_id, conn, other)
                return
            self._refuse("unreachable", svc.service_id, "no endpoint answered")

    def _endpoints(self, state: AgentView, svc: Service, ordinal: int | None,
                   now: float) -> list[Endpoint]:
        hosts = {m.peer_id: m.workplane.peer_id for m in state.machines if m.workplane}
        return [Endpoint(r.peer_id, r.workload_id, r.ordinal, r.machine,
                         r.machine == state.machine,
                         None if r.machine == state.machine or r.machine not in hosts
                         else self.mesh.rtt(hosts[r.machine]))
                for r in self.plane.view.records(now)
                if r.workload_id in svc.workloads and r.ready and not r.retiring
                and (ordinal is None or r.ordinal == ordinal)]

    async def _open(self, state: AgentView, svc: Service, port: Any, me: Identity,
                    ep: Endpoint) -> trio.abc.HalfCloseableStream:
        if ep.local:
            self._check_caller(state, svc, me.workload_id)
            target = next((r for r in state.replicas
                           if r.workload_id == ep.workload_id and r.ordinal == ep.ordinal), None)
            return await self._connect_pod(target, port.target)
        host = next((m.workplane.peer_id for m in state.machines
                     if m.peer_id == ep.machine and m.workplane), None)
        if host is None:
            raise Refused("unreachable", f"machine {ep.machine} announces no work plane")
        stream = await self.mesh.open_stream(host, handshake.PROTOCOL)
        try:
            assert me.cert is not None
            hello = handshake.open_message(me.key, me.cert, svc.service_id, port.port,
                                           ep.peer_id, self.mesh.peer_id.to_base58(), host,
                                           time.time())
            await send_request(stream, hello)
            answer = await read_request(stream)
            server = handshake.check_answer(self.verifier, answer, time.time(), hello,
                                            ep.peer_id, ep.machine)
            if server.workload_id not in svc.workloads:
                raise Refused("untrusted", "answered by a replica the Service does not select")
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.reset()  # also when cancelled (the 3 s budget ran out)
            raise
        return _Libp2pStream(stream)

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
            if not target.ready:
                raise Refused("not_ready", f"{target.pod} is not ready")
            tcp = await self._connect_pod(target, port.target)
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
                mine[1].key, mine[1].cert, data, time.time()))
            self.counters.add(svc.service_id, "served")
            async with _Libp2pStream(stream) as remote:
                await self.splice(svc.service_id, tcp, remote)

    # ---- copying --------------------------------------------------------------------------

    async def splice(self, service: str, pod: trio.abc.HalfCloseableStream,
                     other: trio.abc.HalfCloseableStream) -> None:
        """Copy both ways until both have ended; `pod` is this machine's pod's side."""

        async def copy(src: trio.abc.HalfCloseableStream, dst: trio.abc.HalfCloseableStream,
                       counter: str) -> None:
            try:
                while data := await src.receive_some(CHUNK):
                    await dst.send_all(data)
                    self.counters.add(service, counter, len(data))
                await dst.send_eof()
            except Exception:  # one side broke (reset, closed, gone): end both
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, pod, other, "bytes_out")
            nursery.start_soon(copy, other, pod, "bytes_in")
