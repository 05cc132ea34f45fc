"""One hardened py-libp2p host: TCP + Noise only, private network key, gossipsub, Kademlia.

py-libp2p's defaults are unsafe for us (plaintext/secio/TLS accepted, 120 s gossip heartbeat,
10 msg/s spam cap, eclipse protection that starves a mesh on one IP, no TCP timeouts, a 60 s
negative dial cache), so every one of them is set here, once, for both planes. The host's
identity is the caller's Ed25519 key: the Peer ID on the wire is the key that signs our
envelopes. An optional peer gate lets a plane refuse the other plane's keys.

About 430 lines: every override of py-libp2p stays in this one module (the gate on
connections, the fail-closed pub/sub read loop, the streams' guard, the sweep of spent DHT
values), so that what differs from py-libp2p's defaults can be read in one place; the larger
replacements have their own modules (noise, with the gate at the handshake; yamux_window,
yamux_writes, sender_records, recent, tcp_timeouts, pubsub_caches, dht_expiry).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import (
    IHost,
    INetConn,
    INetStream,
    INetwork,
    INotifee,
    ISubscriptionAPI,
)
from libp2p.crypto.ed25519 import create_new_key_pair as libp2p_ed25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.stream.exceptions import StreamError
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.peer.peerstore import PeerStore
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.rcmgr import new_resource_manager
from libp2p.records.validator import NamespacedValidator, Validator
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.manager import TransportManager
from libp2p.transport.tcp.tcp import TCP
from libp2p.transport.upgrader import TransportUpgrader

from beemesh.identity import KeyPair
from beemesh.mesh import dht_expiry, sender_records, tcp_timeouts, yamux_window, yamux_writes
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.noise import PROTOCOL_ID as NOISE_PROTOCOL_ID
from beemesh.mesh.noise import NoiseTransport
from beemesh.mesh.pubsub_caches import RefusalCache, Unrecorded
from beemesh.mesh.recent import EQUIVOCATION_WINDOW, Recent

log = logging.getLogger(__name__)

# Messages relayed per peer per topic per second before gossipsub calls it spam. Bids,
# announcements and relayed traffic of a whole site pass through one peer, so 10 is far too low.
SPAM_LIMIT_PER_S = 500.0
MAX_RPC_BYTES = 1024 * 1024
MAX_NEW_CONNECTIONS = 256  # new connections waiting to be read from MeshHost.connections
MAX_DIAL_ADDRS = 16  # addresses of one peer dialed at once (a record lists 16 at most)
ADDRS_FRESH_S = 5.0  # our own addresses are worked out again at most this often
FORGET_EVERY_S = 60.0  # spent DHT values are removed this often (mesh/dht_expiry.py)
# A stream that closes under a handler: the asker gave up or its connection went.
GONE_MIDWAY = (StreamError, MuxedStreamError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(frozen=True)
class HostSettings:
    key: KeyPair
    psk_hex: str
    listen: list[str]
    dht_prefix: str
    dht_validators: Mapping[str, Validator]
    heartbeat_s: float = 1.0
    # Called with the remote base58 Peer ID of every connection and inbound stream; False
    # closes the connection / resets the stream. None lets every fleet member in.
    allow_peer: Callable[[str], bool] | None = None
    # Whether a peer may use the host's stream protocols (those not open to the unadmitted);
    # None: every peer the gate lets in.
    admitted: Callable[[str], bool] | None = None


class MeshHost:
    """A running libp2p host with one Pubsub (gossipsub) and one Kademlia DHT."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        kp = libp2p_ed25519_key_pair(settings.key.seed)
        self.gated = 0  # connections ended because allow_peer refused the peer
        noise = NoiseTransport(kp, self.allowed, self._count_gated)
        # What libp2p.new_host builds for TCP + Noise + Yamux, from its parts (import_guard.py:
        # its package __init__ imports every other transport too). Yamux alone: every peer
        # is a Beemesh agent, so mplex is never negotiated.
        peer_id = ID.from_pubkey(kp.public_key)
        peerstore = PeerStore()
        peerstore.add_key_pair(peer_id, kp)
        upgrader = TransportUpgrader(
            secure_transports_by_protocol={TProtocol(NOISE_PROTOCOL_ID): noise},
            muxer_transports_by_protocol={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        )
        limits = new_resource_manager()
        swarm = Swarm(peer_id, peerstore, upgrader, transports=[TCP()], psk=settings.psk_hex,
                      transport_manager=TransportManager(port_demuxers={}))
        swarm.set_resource_manager(limits)
        self.host: IHost = BasicHost(network=swarm, resource_manager=limits)
        self._addrs: tuple[float, list[multiaddr.Multiaddr]] = (0.0, [])
        self._get_addrs = self.host.get_addrs
        self.host.get_addrs = self._fresh_addrs  # type: ignore[method-assign]
        self.gossipsub = GossipSub(
            # Not v1.2: py-libp2p sends IDONTWANT for every message it publishes or forwards,
            # whatever its size, to every mesh peer (go-libp2p: received messages over 1 KB
            # only), which more than doubled the frames of an idle mesh.
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=settings.heartbeat_s,  # type: ignore[arg-type]
            max_messages_per_topic_per_second=SPAM_LIMIT_PER_S,
            eclipse_protection_enabled=False,  # a site's machines often share one IP or LAN
            # Its "adaptive gossip" rates the mesh every 30 s and below a health of 0.7 (a
            # small or quiet mesh: fewer mesh peers than D, peer scores still 0) sets the
            # heartbeat to 30-60 s, as if it were py-libp2p's default of 120 s: the message
            # cache then held 5 minutes of messages instead of 5 s (issue 20's warm-up and
            # soak growth) and the mesh was repaired once a minute.
            adaptive_gossip_enabled=False,
        )
        self.gossipsub.equivocation_detection = Recent(EQUIVOCATION_WINDOW)  # see mesh/recent
        self.gossipsub.recent_message_deliveries = defaultdict(Unrecorded)  # pubsub_caches
        self.pubsub = Pubsub(self.host, self.gossipsub, max_inbound_rpc_size=MAX_RPC_BYTES)
        self.pubsub.validation_cache = RefusalCache()  # type: ignore[assignment]
        self.rpc_failures = 0  # pub/sub streams that broke on a bad RPC (connection closed)
        self._read_rpcs = self.pubsub.continuously_read_stream
        self.pubsub.continuously_read_stream = self._read_rpcs_or_close  # type: ignore[method-assign]
        self.sender_records = sender_records.install()  # each peer's record checked once
        yamux_window.install()  # window updates in 32 KiB steps, not after every read
        yamux_writes.install()  # one message at a time per stream; a failed write resets it
        self.dht = KadDHT(
            self.host,
            DHTMode.SERVER,
            validator=NamespacedValidator(dict(settings.dht_validators), strict_validation=True),
            validator_changed=True,
            protocol_prefix=TProtocol(settings.dht_prefix),
            enable_providers=False,
            strict_validation=True,
        )
        self.swarm = swarm
        # The Peer ID of every new connection the gate let in, for whoever wants to know.
        self.new_connections: trio.MemorySendChannel[str]
        self.new_connections, self.connections = trio.open_memory_channel[str](
            MAX_NEW_CONNECTIONS)
        self.swarm.register_notifee(_ConnectionGuard(self))

    async def _read_rpcs_or_close(self, stream: INetStream) -> None:
        """py-libp2p's pub/sub read loop, failing closed: an RPC it cannot parse (protobuf's
        DecodeError), or any other error its loop lets through, would otherwise escape into
        the connection's nursery and end the whole host. The stream has lost its framing, so
        the connection is closed; the peer redials (a fresh connection, fresh streams)."""
        try:
            await self._read_rpcs(stream)
        except Exception as e:
            peer = stream.muxed_conn.peer_id
            self.rpc_failures += 1
            log.warning("closed the connection with %s: its pub/sub stream broke (%s: %s)",
                        peer, type(e).__name__, str(e)[:200])
            with suppress(Exception):
                await stream.reset()
            with suppress(Exception):
                await self.swarm.close_peer(peer)

    def _count_gated(self) -> None:
        self.gated += 1

    def allowed(self, peer: ID) -> bool:
        """Whether the peer gate lets this peer in."""
        return _ask(self.settings.allow_peer, peer, "allow_peer")

    def _admitted(self, peer: ID) -> bool:
        return _ask(self.settings.admitted, peer, "admitted")

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MeshHost]:
        listen = [multiaddr.Multiaddr(a) for a in self.settings.listen]
        async with (
            self.host.run(listen_addrs=listen),
            background_trio_service(self.pubsub),
            background_trio_service(self.gossipsub),
            background_trio_service(self.dht),
            trio.open_nursery() as nursery,
        ):
            await self.pubsub.wait_until_ready()
            nursery.start_soon(self._forget_spent_loop)
            yield self
            nursery.cancel_scope.cancel()

    async def _forget_spent_loop(self) -> None:
        """Remove the DHT values their namespace says are spent (`mesh/dht_expiry.py`)."""
        while True:
            await trio.sleep(FORGET_EVERY_S)
            store = self.dht.value_store
            for key in dht_expiry.spent(store.store, self.settings.dht_validators, time.time()):
                store.remove(key)

    async def shun(self, peer: ID) -> None:
        """Close every connection with `peer` and forget how to reach it (routing table,
        addresses), so neither the DHT nor pub/sub dials it again on this host's own account."""
        with contextlib.suppress(Exception):
            self.dht.routing_table.remove_peer(peer)
        with contextlib.suppress(Exception):
            self.host.get_peerstore().clear_addrs(peer)
        await self.swarm.close_peer(peer)

    def _fresh_addrs(self) -> list[multiaddr.Multiaddr]:
        """BasicHost.get_addrs at most every ADDRS_FRESH_S: py-libp2p asks for it with every
        pub/sub RPC it sends (to compare with its signed peer record), and each answer parses
        multiaddrs (~0.7 ms). An empty one (not listening yet) is not kept."""
        at, addrs = self._addrs
        now = time.monotonic()
        if not addrs or now - at >= ADDRS_FRESH_S:
            addrs = self._get_addrs()
            self._addrs = now, addrs
        return list(addrs)

    def addrs(self) -> list[str]:
        """Our dialable addresses, each ending in /p2p/<peer id>."""
        return [str(a) for a in self.host.get_addrs()]

    def connected(self) -> list[ID]:
        return list(self.host.get_connected_peers())

    def rtt(self, peer: str) -> float | None:
        """The round-trip time yamux last measured to `peer` (its pings), None if unknown."""
        try:
            conns = self.host.get_network().get_connections(ID.from_base58(peer))
        except Exception:  # an unreadable peer id: not connected
            return None
        times = [t for c in conns if (t := getattr(c.muxed_conn, "rtt", lambda: 0.0)()) > 0]
        return min(times) if times else None

    async def connect(self, maddr: str) -> ID:
        """Dial now, even if the peer failed recently (it may have just started).

        Raises PermissionError for a peer the gate refuses, rather than connecting only to close.
        """
        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        if not self.allowed(info.peer_id):
            raise PermissionError(f"peer {info.peer_id} is not allowed on this host")
        # The swarm refuses to redial a peer for 60 s after all its addresses failed; an explicit
        # dial (bootstrap retry) must not hit that cached failure.
        self.swarm.unblock_peer(info.peer_id)
        await self.host.connect(info)
        await self.dht.add_peer(info.peer_id)
        return info.peer_id

    async def dial_any(self, addrs: list[str], peer: str, budget_s: float = 5.0) -> bool:
        """Connect to `peer` at whichever of its first `MAX_DIAL_ADDRS` announced addresses
        answers first: all are dialed at once, the others cancelled on the first success, the
        whole within `budget_s`. A record full of black-hole addresses costs one budget, not
        one timeout per address (py-libp2p's own `connect` dials one address per peer)."""
        try:
            target = ID.from_base58(peer)
        except ValueError:
            return False
        if not self.allowed(target):
            return False
        won: list[multiaddr.Multiaddr] = []

        async def dial(addr: str, done: trio.CancelScope) -> None:
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(
                    addr if "/p2p/" in addr else f"{addr}/p2p/{peer}"))
                if info.peer_id != target:
                    return  # an address of another peer: not this record's to offer
                conn = await self.swarm.dial_addr(info.addrs[0], target)
                if hasattr(conn, "event_started"):
                    await conn.event_started.wait()
            except Exception as e:  # unreachable address, refused peer: the others may answer
                log.debug("could not dial %s: %s", addr, e)
                return
            won.append(info.addrs[0])
            done.cancel()

        with trio.move_on_after(budget_s):
            async with trio.open_nursery() as nursery:
                for addr in addrs[:MAX_DIAL_ADDRS]:
                    nursery.start_soon(dial, addr, nursery.cancel_scope)
        if not won:
            return False
        self.host.get_peerstore().add_addrs(target, won[:1], 120)
        with suppress(Exception):  # the routing table is a hint; the connection stands
            await self.dht.add_peer(target)
        return True

    async def subscribe(
        self, topic: str, validator: Callable[[ID, rpc_pb2.Message], bool]
    ) -> ISubscriptionAPI:
        self.pubsub.set_topic_validator(topic, validator, False)
        return await self.pubsub.subscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.pubsub.publish(topic, data)

    def handle(self, protocol: str, handler: Callable[[INetStream], Awaitable[None]], *,
               unadmitted: bool = False) -> None:
        """Serve a request/response protocol on streams (Noise-authenticated peers only; only
        admitted ones unless `unadmitted`).

        Streams from peers the gate refuses are reset before the handler sees them: a stream can
        arrive on a connection in the moment before the gate closes it. An error escaping the
        handler resets only its stream: py-libp2p runs handlers in the connection's nursery, where
        it would crash the whole host, or cancel the cleanup of a dying connection and leave the
        dead peer listed as connected.
        """

        async def guarded(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id
            try:
                if self.allowed(peer) and (unadmitted or self._admitted(peer)):
                    await handler(stream)
                    return
                log.debug("reset a %s stream from refused peer %s", protocol, peer)
            except GONE_MIDWAY as e:  # the asker gave up or its connection went: no fault here
                log.debug("%s stream from %s closed midway: %s", protocol, peer, e)
            except Exception:
                log.warning("%s handler failed for %s", protocol, peer, exc_info=True)
            with suppress(Exception):  # the connection may be gone already
                await stream.reset()

        self.host.set_stream_handler(TProtocol(protocol), guarded)

    async def open_stream(self, peer: str, protocol: str) -> INetStream:
        return await self.host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])

    async def ask(self, peer: str, protocol: str, request: bytes | None, max_bytes: int,
                  timeout_s: float) -> bytes:
        """One exchange of a request/response protocol (`framing`): open a stream, send
        `request` (if any), read the one answer (refused over `max_bytes`), close. The whole
        within `timeout_s` (trio.TooSlowError)."""
        with trio.fail_after(timeout_s):
            stream = await self.open_stream(peer, protocol)
            try:
                if request is not None:
                    await send_request(stream, request)
                return await read_request(stream, max_bytes)
            finally:
                with trio.move_on_after(1):
                    await stream.close()

    async def put(self, key: str, value: bytes) -> None:
        await self.dht.put_value(key, value)

    async def get(self, key: str) -> bytes | None:
        with trio.move_on_after(5):
            return await self.dht.get_value(key)
        return None


class _ConnectionGuard(INotifee):
    """On every new connection: close it if the gate refuses the peer, else set TCP timeouts."""

    def __init__(self, mesh: MeshHost) -> None:
        self.mesh = mesh

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not self.mesh.allowed(peer):
            self.mesh.gated += 1
            log.debug("closed a connection with refused peer %s", peer)
            await conn.close()
            await self.mesh.shun(peer)
            return
        with contextlib.suppress(trio.WouldBlock):  # nobody reading, or a burst: dropped
            self.mesh.new_connections.send_nowait(peer.to_base58())
        sock = tcp_timeouts.raw_socket(conn)
        if sock is None:
            log.debug("no TCP socket under the connection to %s; no timeouts set", peer)
        else:
            with contextlib.suppress(OSError):  # closed meanwhile (lost a dial race): no matter
                tcp_timeouts.apply(sock)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass


def _ask(gate: Callable[[str], bool] | None, peer: ID, name: str) -> bool:
    """A gate's answer for `peer` (no gate: yes); a gate that raises refuses (fail closed)."""
    if gate is None:
        return True
    try:
        return gate(peer.to_base58())
    except Exception:
        log.exception("%s raised for %s; refusing it", name, peer)
        return False


def publisher(msg: rpc_pb2.Message) -> str:
    """The Peer ID that published a pub/sub message, for counting and logging (never raises:
    a `from` that is no Peer ID is named by its length)."""
    try:
        return ID(msg.from_id).to_base58()
    except Exception:
        return f"<{len(msg.from_id)} bytes>"
