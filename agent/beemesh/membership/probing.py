"""Probing the machines `membership.liveness` names, on libp2p streams (trio shell).

Each machine keeps one stream per target (`PROBE_PROTOCOL`) and writes an 8-byte probe number;
the target writes it back. A probe unanswered within the ack timeout is a miss the core counts
at its deadline; a stream that cannot be opened or breaks is a miss at once (`unreachable`: a
machine whose process died closes its connections). Every action other than a probe goes to
`act` (publish an accusation, refute, drop a dead machine's record).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from contextlib import suppress

import trio
from libp2p.abc import INetStream

from beemesh.membership.liveness import Action, Liveness, Probe
from beemesh.mesh.framing import read_exactly
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics

log = logging.getLogger("beemesh.probing")

PROBE_PROTOCOL = "/beemesh/probe/1.0.0"
SEQ = struct.Struct(">Q")
MAX_WAIT_S = 1.0  # the loop looks again at least this often
STALL_S = 0.5  # woken this much later than asked: the process was held up
STALL_LOG_EVERY_S = 60.0


class Prober:
    def __init__(self, liveness: Liveness, mesh: MeshHost, metrics: Metrics,
                 act: Callable[[list[Action], float], None],
                 addrs_of: Callable[[str], list[str]]) -> None:
        """`addrs_of(peer)`: where its record says it listens (dialed when not connected)."""
        self.liveness = liveness
        self.addrs_of = addrs_of
        self.mesh = mesh
        self.metrics = metrics
        self.act = act
        self._streams: dict[str, INetStream] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._wake = trio.Event()
        self._stall_logged = -STALL_LOG_EVERY_S
        metrics.describe("probes", "liveness probes sent, by result", "result")
        metrics.describe("stalls", "times this process was held up past STALL_S (the "
                         "suspicions it held waited that much longer)")

    def wake(self) -> None:
        """Look at the core again now (a fact came in that may start a probe or a verdict)."""
        self._wake.set()

    async def run(self) -> None:
        self.mesh.handle(PROBE_PROTOCOL, self._answer)
        async with trio.open_nursery() as nursery:
            while True:
                self._wake = trio.Event()
                now = time.time()
                actions = self.liveness.tick(now)
                for a in actions:
                    if isinstance(a, Probe):
                        nursery.start_soon(self._probe, a.target, a.seq)
                self.act([a for a in actions if not isinstance(a, Probe)], now)
                for peer in set(self._streams) - set(self.liveness.targets()):
                    nursery.start_soon(self._drop, peer)
                deadline = self.liveness.next_deadline()
                wait = MAX_WAIT_S if deadline is None else deadline - time.time()
                wait = min(MAX_WAIT_S, max(0.01, wait))
                planned = time.monotonic() + wait
                with trio.move_on_after(wait):
                    await self._wake.wait()
                self._check_stall(time.monotonic() - planned)

    def _check_stall(self, late: float) -> None:
        """Woken `late` seconds past the planned time (whatever woke it): this process did
        not run meanwhile, and must not hold what it could not hear against others."""
        if late <= STALL_S:
            return
        self.liveness.stalled(late)
        self.metrics.inc("stalls")
        now = time.monotonic()
        if now - self._stall_logged >= STALL_LOG_EVERY_S:
            self._stall_logged = now
            log.warning("this process was held up for %.1f s (overloaded host?); the "
                        "suspicions it holds wait that much longer", late)

    async def _answer(self, stream: INetStream) -> None:
        """Write every probe number back, for as long as the prober keeps the stream."""
        with suppress(Exception):  # the prober closed or reset it, or its connection went
            while True:
                await stream.write(await read_exactly(stream, SEQ.size))
        with suppress(Exception):
            await stream.close()

    async def _probe(self, target: str, seq: int) -> None:
        lock = self._locks.setdefault(target, trio.Lock())
        async with lock:
            try:
                with trio.fail_after(self.liveness.params.ack_timeout_s):
                    stream = self._streams.get(target)
                    if stream is None:
                        if target not in {p.to_base58() for p in self.mesh.connected()}:
                            await self.mesh.dial_any(self.addrs_of(target), target,
                                                     self.liveness.params.ack_timeout_s)
                        stream = await self.mesh.open_stream(target, PROBE_PROTOCOL)
                        self._streams[target] = stream
                    await stream.write(SEQ.pack(seq))
                    while SEQ.unpack(await read_exactly(stream, SEQ.size))[0] != seq:
                        pass  # the answer to an earlier probe that timed out
                self.liveness.acked(target, seq, time.time())
                self.metrics.inc("probes", "acked")
            except trio.TooSlowError:
                self.metrics.inc("probes", "late")  # the core counts the miss at its deadline
                await self._drop(target)
            except Exception as e:  # cannot dial, refused, reset: a miss now
                log.debug("probe of %s failed: %s", target, e)
                self.metrics.inc("probes", "unreachable")
                await self._drop(target)
                self.liveness.unreachable(target, time.time())
                self.wake()

    async def _drop(self, target: str) -> None:
        stream = self._streams.pop(target, None)
        if target not in self.liveness.targets():
            self._locks.pop(target, None)
        if stream is not None:
            with suppress(Exception), trio.move_on_after(1):
                await stream.reset()
