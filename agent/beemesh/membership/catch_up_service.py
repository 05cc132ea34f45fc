"""`CatchUpService`: carries out `membership.catch_up` on the mesh (trio shell).

It serves `RECORDS_PROTOCOL` (this agent's digest, and the signed records it holds), and asks
one peer at a time: each newly admitted peer (a joiner, a healed partition) or one this machine
holds dead and finds connected, at most every `MIN_GAP_S`, and one random connected peer every
`EVERY_S`. An ask that shows the asker lacks this machine's record, or holds it dead, makes this
machine announce again, at most every `ANSWER_GAP_S` (any admitted peer can ask).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import trio
from libp2p.abc import INetStream

from beemesh import wire
from beemesh.errors import UserError
from beemesh.membership import catch_up
from beemesh.membership.liveness import Liveness, Status
from beemesh.membership.view import MachineView
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics

log = logging.getLogger("beemesh.catch_up")

ASK_TIMEOUT_S = 5.0
ANSWER_GAP_S = 5.0
GONE = (Status.DEAD, Status.LEFT)


class CatchUpService:
    def __init__(self, *, machine: str, mesh: MeshHost, view: MachineView, liveness: Liveness,
                 metrics: Metrics, on_drop: Callable[[str, str, str, str], None],
                 take: Callable[[str, bytes], None],
                 announce_again: Callable[[int], None]) -> None:
        """`take(origin, data)`: a signed record a peer sent (checked there);
        `announce_again(above_ms)`: the peer lacks this machine's record, or holds it dead
        at `above_ms`."""
        self.machine = machine
        self.mesh = mesh
        self.view = view
        self.liveness = liveness
        self.metrics = metrics
        self.on_drop = on_drop
        self.take = take
        self.announce_again = announce_again
        self.records: dict[str, bytes] = {}  # machine -> its record in view, as signed
        self._now = trio.Event()
        self._with: str | None = None
        self._last = -catch_up.MIN_GAP_S
        self._answered = -ANSWER_GAP_S
        metrics.describe("catch_ups", "digests asked of peers, by result", "result")

    def admitted(self, peer: str) -> None:
        """A new peer passed admission, or a machine held dead is connected: catch up with
        it (the ask tells it what this machine holds of it)."""
        self._with = peer
        self._now.set()

    def digest(self) -> catch_up.Digest:
        held = {e.peer_id: round(e.ts * 1000) for e in self.view.entries()}
        gone = {peer: ts for peer in self.liveness.gone()
                if (ts := self._gone_ts(peer)) is not None}
        return catch_up.Digest(held, gone)

    def _gone_ts(self, peer: str) -> int | None:
        ts = self.view.shadowed(peer)
        return round(ts * 1000) if ts is not None else None

    def _ask(self, peer: str) -> catch_up.DigestAsk:
        entry = self.view.get(peer)
        gone = self._gone_ts(peer) if self.liveness.status(peer) in GONE else None
        return catch_up.DigestAsk(round(entry.ts * 1000) if entry is not None else -1,
                                  -1 if gone is None else gone)

    def _announce_above(self, above_ms: int) -> None:
        """A claim of our death from the future is no reason to date a record after it."""
        self.announce_again(min(above_ms, round((time.time() + wire.MAX_CLOCK_SKEW_S) * 1000)))

    async def run(self) -> None:
        self.mesh.handle(catch_up.RECORDS_PROTOCOL, self._serve)
        while True:
            with trio.move_on_after(catch_up.EVERY_S):
                await self._now.wait()
            self._now = trio.Event()
            await trio.sleep(max(0.0, self._last + catch_up.MIN_GAP_S - time.monotonic()))
            peers = [p.to_base58() for p in self.mesh.connected()]
            peer, self._with = self._with, None
            if peer not in peers and peers:
                peer = random.choice(peers)
            if peer is not None:
                self._last = time.monotonic()
                await self._catch_up(peer)

    async def _serve(self, stream: INetStream) -> None:
        try:
            wanted = catch_up.decode_request(await read_request(stream))
        except (catch_up.DigestError, UserError) as e:
            self.on_drop("records", stream.muxed_conn.peer_id.to_base58(), "schema", str(e))
            await stream.reset()
            return
        if isinstance(wanted, catch_up.DigestAsk):
            own = self.view.get(self.machine)
            above = None if own is None else wanted.announce_above(round(own.ts * 1000))
            if above is not None and time.monotonic() - self._answered >= ANSWER_GAP_S:
                self._answered = time.monotonic()
                self._announce_above(above)
            await send_request(stream, catch_up.encode_digest(self.digest()))
        else:
            await send_request(stream, catch_up.encode_records(
                [self.records[p] for p in wanted if p in self.records]))
        await stream.close()

    async def _catch_up(self, peer: str) -> None:
        """Ask `peer` for its digest, then for the records newer than ours."""
        try:
            theirs = catch_up.decode_digest(await self.mesh.ask(
                peer, catch_up.RECORDS_PROTOCOL, catch_up.encode_request(self._ask(peer)),
                catch_up.MAX_DIGEST_BYTES, ASK_TIMEOUT_S))
            own = self.view.get(self.machine)
            if own is None:
                return
            todo = catch_up.plan(self.digest(), theirs, self.machine, round(own.ts * 1000))
            if todo.announce:
                self._announce_above(theirs.gone.get(self.machine, 0))
            records = []
            if todo.wanted:
                records = catch_up.decode_records(await self.mesh.ask(
                    peer, catch_up.RECORDS_PROTOCOL, catch_up.encode_request(todo.wanted),
                    catch_up.MAX_ANSWER_BYTES, ASK_TIMEOUT_S))
        except catch_up.DigestError as e:
            self.metrics.inc("catch_ups", "refused")
            self.on_drop("records", peer, "schema", str(e))
            return
        except Exception as e:  # gone, refused, too slow: the next round asks someone
            self.metrics.inc("catch_ups", "failed")
            log.debug("catching up with %s failed: %s", peer, e)
            return
        self.metrics.inc("catch_ups", "ok")
        for data in records:
            self.take(peer, data)
