"""`CatchUpService`: carries out `membership.catch_up` on the mesh (trio shell).

It serves `RECORDS_PROTOCOL` (this agent's digest, and the signed records it holds), and asks
one peer at a time: each newly admitted peer (a joiner, a healed partition) at most every
`MIN_GAP_S`, and one random connected peer every `EVERY_S`.
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
from beemesh.membership.liveness import Liveness
from beemesh.membership.view import MachineView
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics

log = logging.getLogger("beemesh.catch_up")

ASK_TIMEOUT_S = 5.0


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
        metrics.describe("catch_ups", "digests asked of peers, by result", "result")

    def admitted(self, peer: str) -> None:
        """A new peer passed admission: catch up with it."""
        self._with = peer
        self._now.set()

    def digest(self) -> catch_up.Digest:
        held = {e.peer_id: round(e.ts * 1000) for e in self.view.entries()}
        gone = {}
        for peer in self.liveness.gone():
            ts = self.view.shadowed(peer)
            if ts is not None:
                gone[peer] = round(ts * 1000)
        return catch_up.Digest(held, gone)

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
        if wanted is None:
            await send_request(stream, catch_up.encode_digest(self.digest()))
        else:
            await send_request(stream, catch_up.encode_records(
                [self.records[p] for p in wanted if p in self.records]))
        await stream.close()

    async def _catch_up(self, peer: str) -> None:
        """Ask `peer` for its digest, then for the records newer than ours."""
        try:
            theirs = catch_up.decode_digest(await self.mesh.ask(
                peer, catch_up.RECORDS_PROTOCOL, catch_up.encode_request(None),
                catch_up.MAX_DIGEST_BYTES, ASK_TIMEOUT_S))
            own = self.view.get(self.machine)
            if own is None:
                return
            todo = catch_up.plan(self.digest(), theirs, self.machine, round(own.ts * 1000))
            if todo.announce:  # a claim of our death from the future is no reason to date one
                self.announce_again(min(theirs.gone.get(self.machine, 0),
                                        round((time.time() + wire.MAX_CLOCK_SKEW_S) * 1000)))
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
