"""Membership at scale: the real `Liveness` core on every simulated machine, a network model
between them (engine.Net), and the scenarios `make sim` reports.

Design:
- Every simulated machine has its own unchanged `Liveness` whose member list is every
  simulated machine. A fleet larger than `window` is modelled by a closed ring of `window`
  machines (a sample of the fleet's ring: the probing pattern is local, 3 successors each,
  so a sub-ring behaves like an arc of the big ring) whose gossip takes the big fleet's
  ceil(log_D N) hops, and whose pub/sub traffic is scaled to N: every machine of the big
  fleet receives ~D copies of every broadcast of all N machines, i.e. D * N/window times the
  broadcasts the window makes. What a member list of N costs a machine (memory, CPU per
  record) is measured apart, on one real `Liveness` holding N members (`member_cost`).
- Probes and acks are direct messages (lost with `Net.loss`, cut by a partition); Accuse
  and Refute go fleet-wide on gossip (engine's reliable broadcast). A Refute publishes a fresh
  record (ts > the accused incarnation) that every receiver feeds to `alive`.
- A killed machine goes silent (power loss: no connection reset, so no `unreachable`).
- Heal after a partition: the core itself never tells a machine that the other side declared
  it dead (the confirming accusations were published while the sides were cut, and the two
  rings no longer share a probe link; the agent's catch-up asks carry it: `catch_up`).
  Modelled as the brief asks: at the heal every
  confirming accusation made during the partition is published once more; the machine it
  names hears it, refutes through the core (`accused` -> `Refute`), and its fresh record
  brings it back everywhere. Both kinds of broadcast are counted.
- Machine start times are spread over one probe period so probes are not in lock-step.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from beemesh.membership.liveness import (
    Accuse,
    Action,
    Dead,
    Liveness,
    Params,
    Probe,
    Refused,
    Refute,
)
from sim.engine import Net, Queue
from sim.wiresize import sizes

T0 = 1_000_000.0  # the simulated clock starts here (incarnations are ms of this clock)
INF = float("inf")


@dataclass
class Counts:
    probes: int = 0
    acks: int = 0
    lost: int = 0
    accusations: int = 0  # broadcasts (first accusations)
    confirms: int = 0  # broadcasts (confirming accusations)
    refutes: int = 0  # broadcasts (fresh records)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def broadcasts(self) -> int:
        return self.accusations + self.confirms + self.refutes


class Fleet:
    """`size` simulated machines standing for a fleet of `fleet` machines."""

    def __init__(self, size: int, fleet: int, net: Net, params: Params, seed: int) -> None:
        self.fleet = fleet
        self.net = net
        self.suspicion_s = params.suspicion_s
        self.q = Queue()
        self.q.now = T0
        self.rng = random.Random(seed)
        self.ids = [f"m{seed % 1000:03d}-{i:06d}" for i in range(size)]
        self.up = dict.fromkeys(self.ids, True)
        self.inc = dict.fromkeys(self.ids, int(T0 * 1000))  # each machine's newest record
        self.counts = Counts()
        self.dead: dict[str, dict[str, float]] = {m: {} for m in self.ids}  # target->obs->t
        self.false_dead: list[tuple[float, str, str]] = []  # (t, observer, target)
        self.confirms_log: list[tuple[str, str, int]] = []  # (accuser, target, inc)
        self.on_dead: Callable[[str, str, float], None] | None = None
        self._sched = dict.fromkeys(self.ids, INF)
        self.live: dict[str, Liveness] = {}
        for m in self.ids:
            lv = Liveness(m, params)
            start = T0 - self.rng.uniform(0, params.probe_every_s)
            lv.alive(m, self.inc[m], start)
            for p in self.ids:
                lv.alive(p, self.inc[p], start)
            self.live[m] = lv
            self._wake(m)

    # ---- driving ----------------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Every event due up to T0 + `until` seconds."""
        for at, ev in self.q.pop_until(T0 + until):
            kind = ev[0]
            if kind == "tick":
                m = ev[1]
                if self._sched[m] != at or not self.up[m]:
                    continue
                self._sched[m] = INF
                self._act(m, self.live[m].tick(at))
                self._wake(m)
            elif kind == "probe":
                _, src, dst, seq = ev
                if self.up[dst] and not self._drop(dst, src):
                    self.counts.acks += 1
                    self.q.push(at + self.net.delay_s(dst, src), ("ack", src, dst, seq))
            elif kind == "ack":
                _, src, dst, seq = ev
                if self.up[src]:
                    self.live[src].acked(dst, seq, at)  # deadlines only move later: no wake
            elif kind == "accuse":
                _, accuser, target, inc, confirm, r = ev
                if self.up[r]:
                    try:
                        self._act(r, self.live[r].accused(accuser, target, inc, confirm, at))
                    except Refused as e:
                        self.counts.refused[e.reason] += 1
                    # An accusation only starts a suspicion (due `suspicion_s` from now): when a
                    # tick is due before that, it recomputes the deadline anyway. This spares
                    # next_deadline (O(suspects)) on every delivery of a partition's verdicts.
                    if self._sched[r] > at + self.suspicion_s:
                        self._wake(r)
            elif kind == "alive":
                _, peer, inc, r = ev
                if self.up[r]:
                    self.live[r].alive(peer, inc, at)
                    self._wake(r)

    def kill(self, m: str) -> None:
        self.up[m] = False

    def now(self) -> float:
        return self.q.now - T0

    def broadcast(self, src: str, ev: tuple[Any, ...]) -> None:
        """`ev` + (receiver,) to every other live machine on src's side, after gossip hops."""
        at, net, up, n = self.q.now, self.net, self.up, self.fleet
        self.q.push_many([(at + net.gossip_s(n), (*ev, r)) for r in self.ids
                          if r != src and up[r] and not net.cut(src, r)])

    def announce(self, m: str, newer_than: int = 0) -> None:
        """m publishes a fresh signed record (a refutation, or its record changed)."""
        inc = max(int(self.q.now * 1000), newer_than + 1, self.inc[m] + 1)
        self.inc[m] = inc
        self.live[m].alive(m, inc, self.q.now)
        self.broadcast(m, ("alive", m, inc))

    # ---- plumbing ---------------------------------------------------------------------------

    def _drop(self, a: str, b: str) -> bool:
        if self.net.link_broken(a, b):
            return True
        if self.net.lost():
            self.counts.lost += 1
            return True
        return False

    def _wake(self, m: str) -> None:
        nd = self.live[m].next_deadline()
        if nd is not None and nd < self._sched[m]:
            nd = max(nd, self.q.now)
            self._sched[m] = nd
            self.q.push(nd, ("tick", m))

    def _act(self, m: str, actions: list[Action]) -> None:
        now = self.q.now
        for a in actions:
            if isinstance(a, Probe):
                self.counts.probes += 1
                if not self._drop(m, a.target):
                    self.q.push(now + self.net.delay_s(m, a.target), ("probe", m, a.target, a.seq))
            elif isinstance(a, Accuse):
                if a.confirm:
                    self.counts.confirms += 1
                    self.confirms_log.append((m, a.target, a.incarnation))
                else:
                    self.counts.accusations += 1
                self.broadcast(m, ("accuse", m, a.target, a.incarnation, a.confirm))
            elif isinstance(a, Refute):
                self.counts.refutes += 1
                self.announce(m, a.incarnation)
            elif isinstance(a, Dead):
                self.dead[a.target][m] = now
                if self.on_dead is not None:
                    self.on_dead(m, a.target, now)
                elif self.up[a.target]:
                    self.false_dead.append((now - T0, m, a.target))

    # ---- figures ----------------------------------------------------------------------------

    def per_machine_s(self, counts: Counts, seconds: float) -> dict[str, float]:
        """Traffic per machine per second, direct and gossip (scaled to the fleet)."""
        size = sizes()
        n = len(self.ids)
        direct_msgs = 2 * (counts.probes + counts.acks) / n / seconds  # each sent and received
        direct_bytes = 2 * (counts.probes * size["probe"] + counts.acks * size["ack"]) / n / seconds
        scale = self.fleet / n * self.net.degree  # receptions per machine per window broadcast
        gossip = counts.broadcasts * scale / seconds
        gossip_bytes = ((counts.accusations + counts.confirms) * size["accuse"]
                        + counts.refutes * size["record"]) * scale / seconds
        return {"direct_msgs": direct_msgs, "direct_bytes": direct_bytes,
                "gossip_msgs": 2 * gossip, "gossip_bytes": 2 * gossip_bytes,  # in + out
                "msgs": direct_msgs + 2 * gossip,
                "bytes": direct_bytes + 2 * gossip_bytes,
                "broadcasts_fleet_per_s": counts.broadcasts * self.fleet / n / seconds}


def snapshot(c: Counts) -> Counts:
    return Counts(c.probes, c.acks, c.lost, c.accusations, c.confirms, c.refutes,
                  Counter(c.refused))


def diff(a: Counts, b: Counts) -> Counts:
    return Counts(a.probes - b.probes, a.acks - b.acks, a.lost - b.lost,
                  a.accusations - b.accusations, a.confirms - b.confirms,
                  a.refutes - b.refutes, a.refused - b.refused)


def member_cost(n: int, params: Params) -> dict[str, float]:
    """One real `Liveness` holding `n` members: memory, and CPU per record it is fed."""
    ids = [f"x{i:06d}" for i in range(n)]
    inc = int(T0 * 1000)
    tracemalloc.start()
    t = time.perf_counter()
    lv = Liveness(ids[0], params)
    for p in ids:
        lv.alive(p, inc, T0)
    build = time.perf_counter() - t
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    half = ids[1::2]
    t = time.perf_counter()
    for p in half:  # half the fleet leaves the ring (a partition's verdicts) ...
        lv.left(p, inc, T0 + 1)
    for p in half:  # ... and comes back with fresh records (the heal)
        lv.alive(p, inc + 1, T0 + 2)
    rejoin = time.perf_counter() - t
    return {"members": n, "mb_per_machine": mem / 2**20,
            "us_per_record_build": build / n * 1e6,
            "cpu_s_heal_burst": rejoin, "us_per_record_heal": rejoin / (2 * len(half)) * 1e6}
