"""Joining the mesh and announcing this machine (trio shell around `MachineView` and
`Liveness`).

- **Join**: one task per `--bootstrap` address keeps it connected, retrying with exponential
  backoff while it is down; connected peers feed the DHT routing table, and machines learned
  from records are dialed too (the ones this machine probes first, up to `MAX_DIALED_PEERS`),
  so the mesh outlives its bootstrap peer. A new machine pulls the fleet's records from a peer
  (`catch_up`).
- **Announce**: when its record changed (`worth_announcing`, looked at every
  `record_refresh_s` and at once on `announce_soon`), when it is accused of being dead, and
  when a peer turns out not to hold its current record, this machine signs its
  `MachineRecord` and publishes it. Nothing is re-sent on a timer: an idle fleet is quiet.
- **Alive**: `membership.liveness` decides; `probing` carries its probes, accusations go out
  on pub/sub (`MachineAccuse`), a verdict drops the machine's record here.
- **Learn**: records arrive on pub/sub (`on_message`); a connected peer with no record yet is
  asked for its own over `RECORD_PROTOCOL` (admitted peers only), at once when it passes
  admission. The member list is saved for quorum after a restart.
- **Leave**: a signed `MachineWithdraw` on shutdown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import suppress

import psutil
import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from beemesh import wire
from beemesh.config import AgentConfig
from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.identity import KeyPair, peer_id
from beemesh.membership import members_file
from beemesh.membership.catch_up_service import CatchUpService
from beemesh.membership.lateness import Lateness
from beemesh.membership.liveness import (
    Accuse,
    Action,
    Dead,
    Liveness,
    Params,
    Refused,
    Refute,
)
from beemesh.membership.probing import Prober
from beemesh.membership.records import (
    MACHINE_ACCUSE,
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    MachineEntry,
    MachineRecord,
    RecordError,
    entry_from_envelope,
    worth_announcing,
)
from beemesh.membership.view import WITHDRAWAL_MEMORY_S, MachineView
from beemesh.mesh.framing import send_request
from beemesh.mesh.host import MeshHost
from beemesh.mesh.recent import Recent
from beemesh.metrics import Metrics
from beemesh.topics import TOPIC_EVENTS

log = logging.getLogger("beemesh.membership")

MAX_DIALED_PEERS = 16
DIAL_TIMEOUT_S = 5.0
RECORD_PROTOCOL = "/beemesh/machine-record/1.0.0"  # a peer's own signed record, on request
FETCH_TIMEOUT_S = 5.0
MEMBERS_SAVE_EVERY_S = 60.0
REDIAL_DEAD_S = 10.0
MAX_DEAD_REDIALED = 256


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
                 lateness: Lateness, events: EventLog) -> None:
        """`authenticate`: checks a record a peer sent (signature, signer, plane);
        `on_drop(topic, origin, reason, detail)`: counts and logs a refused one; `lateness`
        is timed by the records this view accepts from pub/sub; `events` hears of machines
        declared dead, back, or leaving (`beemesh events`)."""
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
        self.events = events
        self.liveness = Liveness(self.machine, Params.within(cfg.dead_after_s))
        self.prober = Prober(self.liveness, mesh, metrics, self._act, self._addrs_of)
        self.started = time.monotonic()
        self.joined_after_s: float | None = None
        self._announce_now = trio.Event()
        self._maintain_now = trio.Event()
        self._members_saved: tuple[frozenset[str], float] = (frozenset(), 0.0)
        self._signed: bytes | None = None  # this machine's latest signed record
        self._refute_above = -1  # an accusation's incarnation the next record must exceed
        self._outbox_in, self._outbox = trio.open_memory_channel[bytes](64)
        # machine -> its addresses, for machines declared dead: one is dialled every
        # REDIAL_DEAD_S, so that the two sides of a healed partition find each other even
        # when no bootstrap link crosses it (then catch-up makes both announce again)
        self._dead_addrs: Recent = Recent(MAX_DEAD_REDIALED)
        self._redialed_at = 0.0
        self.catch_up = CatchUpService(
            machine=self.machine, mesh=mesh, view=view, liveness=self.liveness, metrics=metrics,
            on_drop=on_drop, take=lambda origin, data: self._take(origin, data, None),
            announce_again=self._announce_again)
        metrics.describe("bootstrap_attempts", "dials to bootstrap peers", "result")
        metrics.describe("records_fetched", "machine records asked of connected peers")
        metrics.describe("records_announced", "this machine's record published, by why", "why")
        metrics.describe("machines_dead", "machines this agent's view declared dead")
        metrics.describe("pubsub_streams_broken",
                         "connections closed on a pub/sub RPC that could not be read")

    def peer_admitted(self, peer: str) -> None:
        """A new peer passed admission: run the maintenance pass now (ask for its record, add
        it to the routing table) and catch up with it (a joiner, or a healed partition)."""
        self._maintain_now.set()
        self.catch_up.admitted(peer)

    def announce_soon(self) -> None:
        """Something in this machine's record changed: announce it now, not at the refresh."""
        self._announce_now.set()

    async def run(self, record: Callable[[], MachineRecord]) -> None:
        """Announce, keep the mesh, probe, publish accusations, catch up."""
        self.mesh.handle(RECORD_PROTOCOL, self._serve_record)  # the latest, to who asks
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop, record)
            nursery.start_soon(self._maintain_loop)
            nursery.start_soon(self.prober.run)
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self.catch_up.run)

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

    async def _announce_loop(self, record: Callable[[], MachineRecord]) -> None:
        published: MachineRecord | None = None
        heard = False  # the last announcement had someone to go to
        while True:
            self._announce_now = trio.Event()
            current = record()
            why = ("first" if published is None else "again" if self._refute_above >= 0
                   else "changed" if worth_announcing(published, current)
                   else "unheard" if not heard and self.mesh.connected() else None)
            if why is not None:
                now = time.time()
                ts = max(now, (self._refute_above + 1) / 1000)
                data = wire.seal(self.key, MACHINE_RECORD.name, current.to_body(), ts)
                self._refute_above = -1
                self._learn(entry_from_envelope(wire.decode(data)), data, now)
                self._signed, published = data, current
                heard = bool(self.mesh.connected())
                self.metrics.inc("records_announced", why)
                await self.mesh.publish(TOPIC_EVENTS, data)
            with trio.move_on_after(self.cfg.record_refresh_s):
                await self._announce_now.wait()

    def _announce_again(self, above_ms: int) -> None:
        """A peer lacks this machine's current record, or holds it dead at `above_ms`."""
        self._refute_above = max(self._refute_above, above_ms)
        self.announce_soon()

    async def _publish_loop(self) -> None:
        async for data in self._outbox:
            await self.mesh.publish(TOPIC_EVENTS, data)

    async def withdraw(self) -> None:
        """Tell peers we are leaving so they drop us now rather than at a verdict."""
        with trio.move_on_after(1.5):
            body = {"peer_id": self.machine}
            await self.mesh.publish(TOPIC_EVENTS, wire.seal(self.key, MACHINE_WITHDRAW.name,
                                                            body, time.time()))
            await trio.sleep(0.3)  # let the publish leave the socket

    # ---- liveness ----------------------------------------------------------------------------

    def _act(self, actions: list[Action], now: float) -> None:
        for a in actions:
            if isinstance(a, Accuse):
                body = {"target": a.target, "incarnation": a.incarnation, "confirm": a.confirm}
                try:
                    self._outbox_in.send_nowait(wire.seal(self.key, MACHINE_ACCUSE.name, body,
                                                          now))
                except trio.WouldBlock:
                    log.warning("accusation of %s not sent: outbox full", a.target)
                log.info("%s %s: no answer to its probes", "confirmed" if a.confirm
                         else "accused", a.target)
            elif isinstance(a, Refute):
                log.warning("accused of being dead (record %d); announcing again", a.incarnation)
                self.events.add(now, "Accused", "a monitor had no answer from this machine; "
                                "announced a newer record", machine=self.machine)
                self._announce_again(a.incarnation)
            elif isinstance(a, Dead):
                entry = self.view.get(a.target)
                if entry is not None:
                    self._dead_addrs[a.target] = list(entry.record.addrs)
                if self.view.dead(a.target, a.incarnation / 1000, now):
                    self.metrics.inc("machines_dead")
                    log.warning("machine %s is dead: its monitors had no answer", a.target)
                    self.events.add(now, "MachineDead", "no answer to its monitors' probes; "
                                    "its replicas are healed elsewhere", machine=a.target)
                self.catch_up.records.pop(a.target, None)

    def _addrs_of(self, peer: str) -> list[str]:
        entry = self.view.get(peer)
        return list(entry.record.addrs) if entry is not None else []

    def refuse_accusation(self, env: wire.Envelope, now: float) -> None:
        """In the topic validator: an accusation that does not count is not relayed."""
        body = env.body
        try:
            self.liveness.check(peer_id(env.sender), body["target"], body["incarnation"], now)
        except Refused as e:
            raise wire.Rejected("accusation", f"{e.reason}: {e}") from None

    # ---- learning ----------------------------------------------------------------------------

    def on_message(self, env: wire.Envelope, data: bytes, now: float) -> None:
        """A verified MachineRecord, MachineWithdraw or MachineAccuse from pub/sub (RecordError
        if absurd).

        Only a record the view accepts times the mesh (`lateness`): a replayed, stale or
        superseded one says nothing about how late this machine hears the others, and would
        let anyone who relays old records stop every heal and stretch every auction."""
        if env.kind == MACHINE_RECORD.name:
            if self._learn(entry_from_envelope(env), data, now):
                self.lateness.observe(env.sender.hex(), env.ts_ms / 1000, now)
        elif env.kind == MACHINE_WITHDRAW.name:
            peer = env.body["peer_id"]
            if self.view.withdraw(peer, env.ts_ms / 1000, now):
                self.events.add(now, "MachineLeft", "withdrew (a clean shutdown)", machine=peer)
            self.liveness.left(peer, env.ts_ms, now)
            self.catch_up.records.pop(peer, None)
        elif env.kind == MACHINE_ACCUSE.name:
            body = env.body
            with suppress(Refused):  # counted by the topic validator, or judged anew since
                self._act(self.liveness.accused(peer_id(env.sender), body["target"],
                                                body["incarnation"], body["confirm"], now), now)
            self.prober.wake()

    def _learn(self, entry: MachineEntry, data: bytes, now: float) -> bool:
        """A checked record, from pub/sub, a peer or this machine: into the view and the
        liveness core when it is newer than what they hold."""
        shadowed = self.view.shadowed(entry.peer_id)
        absent = self.view.get(entry.peer_id) is None
        if not self.view.apply(entry, now):
            return False
        if shadowed is not None and absent and entry.peer_id != self.machine:
            log.info("machine %s is back (a record %.1f s newer than its verdict or "
                     "withdrawal)", entry.peer_id, entry.ts - shadowed)
            self.events.add(now, "MachineBack", "a record newer than its verdict or "
                            "withdrawal", machine=entry.peer_id)
        self.catch_up.records[entry.peer_id] = data
        self.liveness.alive(entry.peer_id, round(entry.ts * 1000), now)
        self.prober.wake()
        if self.joined_after_s is None and len(self.view.machine_ids()) > 1:
            self.joined_after_s = time.monotonic() - self.started
            log.info("joined the mesh after %.2f s", self.joined_after_s)
        return True

    async def _maintain_loop(self) -> None:
        """Keep the routing table fed, learn records of new peers, dial machines we know of
        (the ones this machine probes first)."""
        while True:
            now = time.time()
            self.view.forget(now)
            self.liveness.forget(now - WITHDRAWAL_MEMORY_S)
            connected = set(self.mesh.connected())
            for pid in connected:
                await self.mesh.dht.add_peer(pid)
            connected_ids = {pid.to_base58() for pid in connected}
            first = set(self.liveness.targets())
            todo = sorted((e for e in self.view.entries() if e.peer_id != self.machine
                           and e.peer_id not in connected_ids),
                          key=lambda e: (e.peer_id not in first, e.peer_id))
            # At once, each within its budget: black-hole addresses cost one budget per pass.
            async with trio.open_nursery() as nursery:
                for peer in sorted(connected_ids):
                    if self.view.get(peer) is None and self.view.shadowed(peer) is None:
                        nursery.start_soon(self._fetch_record, peer)
                for entry in todo[:max(0, MAX_DIALED_PEERS - len(connected))]:
                    nursery.start_soon(self.mesh.dial_any, list(entry.record.addrs),
                                       entry.peer_id, DIAL_TIMEOUT_S)
                for peer in [p for p in self._dead_addrs if self.view.get(p) is not None]:
                    del self._dead_addrs[peer]  # back
                if self._dead_addrs and now - self._redialed_at >= REDIAL_DEAD_S:
                    self._redialed_at = now
                    peer = random.choice(list(self._dead_addrs))
                    if peer in connected_ids:  # our ask tells it we hold it dead
                        self.catch_up.admitted(peer)
                    else:  # once connected, each side's catch-up tells the other
                        nursery.start_soon(self.mesh.dial_any, self._dead_addrs[peer], peer,
                                           DIAL_TIMEOUT_S)
            self._save_members(now)
            self.metrics.set("pubsub_streams_broken", "", self.mesh.rpc_failures)
            with trio.move_on_after(1):
                await self._maintain_now.wait()
            self._maintain_now = trio.Event()

    def _save_members(self, now: float) -> None:
        """When a member joins or leaves, and every minute (last-seen times move on)."""
        members = self.view.members(now)
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
        self._take(peer, data, peer)

    def _take(self, origin: str, data: bytes, owner: str | None) -> None:
        """A record a peer sent on request: checked like any (and, when `owner` is given,
        its own)."""
        try:
            env = self.authenticate(data)
            if env.kind != MACHINE_RECORD.name:
                raise wire.Rejected("schema", f"sent a {env.kind} for a machine record")
            entry = entry_from_envelope(env)
            if owner is not None and entry.peer_id != owner:
                raise wire.Rejected("untrusted", f"sent the record of {entry.peer_id}")
        except (wire.Rejected, RecordError) as e:
            self.on_drop("record", origin, getattr(e, "reason", "schema"), str(e))
            return
        self._learn(entry, data, time.time())
