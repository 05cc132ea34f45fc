"""The simulator's clock, event queue and network model (no Beemesh logic here).

- `Queue`: a min-heap of (time, sequence, event). The sequence number makes the order total and
  stable: events due at the same instant run in the order they were scheduled, so a run with
  one seed always replays identically.
- `Net`: per-link latency and loss, and the partition model. A link's base latency is drawn
  once (lognormal around `latency_ms`, so a few links are several times slower than the
  median) from a hash of the pair and the seed; every message adds a small exponential jitter.
  A direct message (probe, ack) is lost with probability `loss`. A partition assigns every
  machine a side; a message between two sides is dropped silently (packets vanish: no RST,
  no `unreachable`), in both directions, until `heal`.
- Gossip (pub/sub) is modelled as a reliable broadcast over a D-regular mesh: a receiver hears
  a message after its depth in the mesh (at most about ceil(log_D n) hops; most receivers sit
  in the last two layers), each hop a fresh link-latency draw, and
  every machine receives about D copies of it (the first plus duplicates from its other mesh
  peers) and sends about D. Loss is not applied to gossip: gossipsub runs over TCP streams
  with D-fold redundancy, so a lost packet shows up as delay, which this model leaves out.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

_STD = NormalDist()
GOSSIP_TABLE = 2**16


class _Fan:
    """Many events pushed at once (one broadcast's deliveries), sorted by time: the heap holds
    only the next of them, so it stays as small as the number of broadcasts in flight."""

    __slots__ = ("i", "items")

    def __init__(self, items: list[tuple[float, Any]]) -> None:
        self.items = items
        self.i = 0


class Queue:
    """Events in time order; ties run in the order they were pushed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self.now = 0.0
        self.popped = 0

    def push(self, at: float, event: Any) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), event))

    def push_many(self, items: list[tuple[float, Any]]) -> None:
        """Several (time, event): each runs at its time, in time order (stable for ties)."""
        if items:
            items.sort(key=lambda item: item[0])
            heapq.heappush(self._heap, (items[0][0], next(self._seq), _Fan(items)))

    def pop_until(self, until: float) -> Iterable[tuple[float, Any]]:
        """Yield (time, event) due up to `until` in order, advancing `now` to each."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            at, _, event = heapq.heappop(heap)
            if type(event) is _Fan:
                fan = event
                event = fan.items[fan.i][1]
                fan.i += 1
                if fan.i < len(fan.items):
                    heapq.heappush(heap, (fan.items[fan.i][0], next(self._seq), fan))
            self.now = max(self.now, at)
            self.popped += 1
            yield at, event
        self.now = max(self.now, until)

    def peek(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


def hops(n: int, degree: int) -> int:
    """Most mesh hops a broadcast takes to reach all of `n` machines (about ceil(log_D n))."""
    return len(_layers(n, degree))


@dataclass
class Net:
    """Latency, loss and partitions between machines identified by strings."""

    seed: int
    latency_ms: float = 20.0  # median one-way link latency
    sigma: float = 0.5  # lognormal shape of the per-link latency
    jitter_ms: float = 2.0  # mean of the exponential per-message jitter
    loss: float = 0.0  # probability that one direct message is lost
    degree: int = 6  # gossipsub mesh degree D
    rng: random.Random = field(init=False)
    side: dict[str, int] = field(default_factory=dict)  # partition side; absent: side 0
    # single broken links (direct messages only: gossip goes round them through the mesh)
    broken: set[frozenset[str]] = field(default_factory=set)
    _links: dict[tuple[str, str], float] = field(default_factory=dict)
    _gossip: dict[int, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def link_s(self, a: str, b: str) -> float:
        """Base one-way latency of the link a-b (the same both ways, drawn once)."""
        key = (a, b) if a < b else (b, a)
        base = self._links.get(key)
        if base is None:
            h = hashlib.blake2b(f"{self.seed}/{key[0]}/{key[1]}".encode(), digest_size=8)
            u = (int.from_bytes(h.digest(), "big") + 0.5) / 2**64
            base = self.latency_ms / 1000 * math.exp(self.sigma * _STD.inv_cdf(u))
            self._links[key] = base
        return base

    def delay_s(self, a: str, b: str) -> float:
        """One message's delay from a to b."""
        return self.link_s(a, b) + self.rng.expovariate(1000 / self.jitter_ms)

    def lost(self) -> bool:
        return self.loss > 0 and self.rng.random() < self.loss

    def cut(self, a: str, b: str) -> bool:
        """True when a partition separates a and b."""
        side = self.side
        return bool(side) and side.get(a, 0) != side.get(b, 0)

    def link_broken(self, a: str, b: str) -> bool:
        """True when direct messages between a and b cannot pass (a partition or a broken link)."""
        return self.cut(a, b) or (bool(self.broken) and frozenset((a, b)) in self.broken)

    def partition(self, sides: dict[str, int]) -> None:
        self.side = dict(sides)

    def heal(self) -> None:
        self.side = {}

    def hop_s(self) -> float:
        """One gossip hop between two machines of the mesh (a fresh link draw)."""
        z = self.rng.gauss(0.0, 1.0)
        return (self.latency_ms / 1000 * math.exp(self.sigma * z)
                + self.rng.expovariate(1000 / self.jitter_ms))

    def gossip_s(self, n: int) -> float:
        """When a broadcast reaches one receiver in a fleet of `n`: the receiver's depth in the
        mesh (drawn from the layer sizes of a D-regular tree: D, D(D-1), ... up to n) times a
        fresh link draw per hop. One path per receiver: the first of its D copies is taken to
        come along the shortest path, whose hops are independent draws. Drawn from a table of
        2**16 such delays made once per fleet size (a delivery is the simulator's hot path)."""
        table = self._gossip.get(n)
        if table is None:
            layers = _layers(n, self.degree)
            table = self._gossip[n] = [
                sum(self.hop_s() for _ in range(bisect.bisect_left(layers, self.rng.random()) + 1))
                for _ in range(GOSSIP_TABLE)]
        return table[self.rng.getrandbits(16)]


@functools.cache
def _layers(n: int, degree: int) -> tuple[float, ...]:
    """Cumulative share of the n-1 receivers at depth 1, 2, ... of a degree-`degree` tree."""
    sizes, left, width = [], n - 1, degree
    while left > 0:
        sizes.append(min(width, left))
        left -= sizes[-1]
        width *= degree - 1
    total = float(n - 1) if n > 1 else 1.0
    out, acc = [], 0.0
    for s in sizes:
        acc += s
        out.append(acc / total)
    out[-1] = 1.0
    return tuple(out)


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]
