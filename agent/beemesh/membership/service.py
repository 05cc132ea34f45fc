"""Joining the mesh and announcing this machine (trio shell around `MachineView`).

- **Join**: one task per `--bootstrap` address keeps it connected, retrying with exponential
  backoff while it is down; connected peers feed the DHT routing table, and machines learned
  from records are dialed too (up to `MAX_DIALED_PEERS`), so the mesh outlives its bootstrap
  peer.
- **Announce**: every `record_refresh_s`, and at once when something in it changed
  (`announce_soon`), this machine signs its `MachineRecord` and publishes it.
- **Learn**: records arrive on pub/sub (`on_message`); a connected peer with no record yet is
  asked for its own over `RECORD_PROTOCOL` (admitted peers only), at once when it passes
  admission. (Records used to be stored in the Machine DHT every refresh for that one read:
  ~a quarter of an idle agent's CPU went to those puts.) The member list is saved for quorum
  after a restart.
- **Leave**: a signed `MachineWithdraw` on shutdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psutil
import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from beemesh import wire
from beemesh.config import AgentConfig
from beemesh.files import WriteBehind
from beemesh.identity import KeyPair
from beemesh.membership import members_file
from beemesh.membership.lateness import Lateness
from beemesh.membership.records import (
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    MachineRecord,
    RecordError,
    entry_from_envelope,
)
from beemesh.membership.view import MachineView
from beemesh.mesh.framing import send_request
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics
from beemesh.topics import TOPIC_EVENTS

log = logging.getLogger("beemesh.membership")

MAX_DIALED_PEERS = 16
DIAL_TIMEOUT_S = 5.0
RECORD_PROTOCOL = "/beemesh/machine-record/1.0.0"  # a peer's own signed record, on request
FETCH_TIMEOUT_S = 5.0
MEMBERS_SAVE_EVERY_S = 60.0


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


class Membership:
    def __init__(self, *, key: KeyPair, cfg: AgentConfig, mesh: MeshHost, view: MachineView,
                 metrics: Metrics, authenticate: Callable[[bytes], wire.Envelope],
                 on_drop: Callable[[str, str, str, str], None], files: WriteBehind,
                 lateness: Lateness) -> None:
        """`authenticate`: checks a record a peer sent (signature, signer, plane);
        `on_drop(topic, origin, reason, detail)`: counts and logs a refused one; `lateness`
        is timed by the records this view accepts from pub/sub."""
        self.key = key
        self.machine = key.peer_id
        self.cfg = cfg
        self.mesh = mesh
        self.view = view
        self.metrics = metrics
        self.authenticate = authenticate
        self.on_drop = on_drop
        self.files = files
        self.lateness = lateness
        self.started = time.monotonic()
        self.joined_after_s: float | None = None
        self._announce_now = trio.Event()
        self._maintain_now = trio.Event()
        self._members_saved: tuple[frozenset[str], float] = (frozenset(), 0.0)
        self._signed: bytes | None = None  # this machine's latest signed record
        metrics.describe("bootstrap_attempts", "dials to bootstrap peers", "result")
        metrics.describe("records_fetched", "machine records asked of connected peers")
        metrics.describe("pubsub_streams_broken",
                         "connections closed on a pub/sub RPC that could not be read")

    def peer_admitted(self, _peer: str) -> None:
        """A new peer passed admission: run the maintenance pass now (ask for its record, add
        it to the routing table) rather than within the next second."""
        self._maintain_now.set()

    def announce_soon(self) -> None:
        """Something in this machine's record changed: announce it now, not at the refresh."""
        self._announce_now.set()

    # ---- joining -----------------------------------------------------------------------------

    async def bootstrap(self, addr: str) -> None:
        """Keep one bootstrap peer connected, retrying with exponential backoff while down."""
        if addr.endswith(f"/p2p/{self.machine}"):
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

    # ---- announcing --------------------------------------------------------------------------

    async def announce_loop(self, record: Callable[[], MachineRecord]) -> None:
        self.mesh.handle(RECORD_PROTOCOL, self._serve_record)  # the latest, to who asks
        while True:
            self._announce_now = trio.Event()
            now = time.time()
            data = wire.seal(self.key, MACHINE_RECORD.name, record().to_body(), now)
            self.view.apply(entry_from_envelope(wire.decode(data), now), now)
            self._signed = data
            await self.mesh.publish(TOPIC_EVENTS, data)
            with trio.move_on_after(max(0.0, self.cfg.record_refresh_s - (time.time() - now))):
                await self._announce_now.wait()

    async def withdraw(self) -> None:
        """Tell peers we are leaving so they drop us now rather than at TTL."""
        with trio.move_on_after(1.5):
            body = {"peer_id": self.machine}
            await self.mesh.publish(TOPIC_EVENTS, wire.seal(self.key, MACHINE_WITHDRAW.name,
                                                            body, time.time()))
            await trio.sleep(0.3)  # let the publish leave the socket

    # ---- learning ----------------------------------------------------------------------------

    def on_message(self, env: wire.Envelope, now: float) -> None:
        """A verified MachineRecord or MachineWithdraw from pub/sub (RecordError if absurd).

        Only a record the view accepts times the mesh (`lateness`): a replayed, stale or
        superseded one says nothing about how late this machine hears the others, and would
        let anyone who relays old records stop every heal and stretch every auction."""
        if env.kind == MACHINE_RECORD.name:
            if self.view.apply(entry_from_envelope(env, now), now):
                self.lateness.observe(env.sender.hex(), env.ts_ms / 1000, now)
                self._note_joined(now)
        elif env.kind == MACHINE_WITHDRAW.name:
            self.view.withdraw(env.body["peer_id"], env.ts_ms / 1000, now)

    async def maintain_loop(self) -> None:
        """Keep the routing table fed, learn records of new peers, dial machines we know of."""
        while True:
            now = time.time()
            known = self.view.entries(now)  # also drops expired records
            connected = set(self.mesh.connected())
            for pid in connected:
                await self.mesh.dht.add_peer(pid)
            connected_ids = {pid.to_base58() for pid in connected}
            todo = [e for e in known if e.peer_id != self.machine
                    and e.peer_id not in connected_ids]
            # At once, each within its budget: black-hole addresses cost one budget per pass.
            async with trio.open_nursery() as nursery:
                for peer in sorted(connected_ids):
                    if self.view.get(peer) is None:
                        nursery.start_soon(self._fetch_record, peer)
                for entry in todo[:max(0, MAX_DIALED_PEERS - len(connected))]:
                    nursery.start_soon(self.mesh.dial_any, list(entry.record.addrs),
                                       entry.peer_id, DIAL_TIMEOUT_S)
            self._save_members(now)
            self.metrics.set("pubsub_streams_broken", "", self.mesh.rpc_failures)
            with trio.move_on_after(1):
                await self._maintain_now.wait()
            self._maintain_now = trio.Event()

    def _note_joined(self, now: float) -> None:
        """The first time the view holds another machine's record: joined (timed at once,
        not at the next maintenance pass)."""
        if self.joined_after_s is None and len(self.view.entries(now)) > 1:
            self.joined_after_s = time.monotonic() - self.started
            log.info("joined the mesh after %.2f s", self.joined_after_s)

    def _save_members(self, now: float) -> None:
        """When a member joins or leaves, and every minute (expiry times move on)."""
        members = self.view.members()
        peers, saved_at = self._members_saved
        if frozenset(members) == peers and now - saved_at < MEMBERS_SAVE_EVERY_S:
            return
        members_file.save(self.files, self.cfg.state_dir, members)
        self._members_saved = (frozenset(members), now)

    async def _serve_record(self, stream: INetStream) -> None:
        if self._signed is not None:
            await send_request(stream, self._signed)
        await stream.close()

    async def _fetch_record(self, peer: str) -> None:
        """Ask a connected peer for its own record (it has none yet in our view)."""
        try:
            data = await self.mesh.ask(peer, RECORD_PROTOCOL, None, wire.MAX_ENVELOPE_BYTES,
                                       FETCH_TIMEOUT_S)
        except Exception as e:  # gone, refused, no record yet, too slow: the next pass asks
            log.debug("no record from %s yet: %s", peer, e)
            return
        self.metrics.inc("records_fetched")
        now = time.time()
        try:
            entry = entry_from_envelope(self.authenticate(data), now)
            if entry.peer_id != peer:
                raise wire.Rejected("untrusted", f"sent the record of {entry.peer_id}")
        except (wire.Rejected, RecordError) as e:
            self.on_drop("record", peer, getattr(e, "reason", "schema"), str(e))
            return
        if self.view.apply(entry, now):
            self._note_joined(now)
