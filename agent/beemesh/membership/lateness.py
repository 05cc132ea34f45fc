"""How late this agent hears the mesh (sans-IO).

A machine whose records stop arriving looks dead. That is true when it is dead or cut off, and
false when this agent (or the whole mesh) is so busy that messages queue for longer than a
record's TTL: then every replica looks lost at once and healing them would only add load and
duplicates. Late delivery tells the two apart: a dead machine sends nothing, a backlog delivers
everything late.

Per sender, lateness is the delay of its message above the smallest delay seen from it in the
last `baseline_s`: the baseline absorbs the sender's clock offset, so machines whose clocks
disagree by seconds do not look late, while a backlog (delay growing within minutes) does.

How late this agent hears the mesh is the lower median, over the senders heard in the last
`window_s`, of each one's worst lateness there: a backlog here delays every sender, whereas one
sender late alone (its own queue, or an admitted rogue signing its records ever further behind)
must not pause every heal in the fleet. Machines in sight that sent nothing in the window
count as on time (`others`): records go out only when they change, so a quiet fleet may send
nothing for minutes, and then one rogue's messages would be all there is to judge by.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

BUCKET_S = 60.0
MAX_SENDERS = 4096  # senders remembered; the one heard from least recently goes first


@dataclass
class Lateness:
    baseline_s: float = 600.0
    window_s: float = 15.0
    others: Callable[[], int] = lambda: 0  # machines in sight besides this one
    # sender -> (bucket start, smallest delay in that bucket), oldest first
    _minima: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    # (time, sender, lateness) of the messages heard in the last window_s
    _recent: deque[tuple[float, str, float]] = field(default_factory=deque)

    def observe(self, sender: str, sent: float, now: float) -> float:
        """Record one message sent at `sent` (its signed timestamp); returns its lateness."""
        delay = now - sent
        if sender not in self._minima and len(self._minima) >= MAX_SENDERS:
            stalest = min(self._minima, key=lambda s: self._minima[s][-1][0]
                          if self._minima[s] else float("-inf"))
            del self._minima[stalest]
        buckets = self._minima.setdefault(sender, deque())
        start = now - now % BUCKET_S
        if buckets and buckets[-1][0] == start:
            buckets[-1] = (start, min(buckets[-1][1], delay))
        else:
            buckets.append((start, delay))
        while buckets and buckets[0][0] < now - self.baseline_s:
            buckets.popleft()
        late = delay - min(d for _, d in buckets)
        self._recent.append((now, sender, late))
        self._prune(now)
        return late

    def current(self, now: float) -> float:
        """How late the mesh is heard now: the lower median over the senders heard in the last
        `window_s` of each one's worst lateness; 0 when messages arrive as fast as ever."""
        self._prune(now)
        worst: dict[str, float] = {}
        for _, sender, late in self._recent:
            worst[sender] = max(late, worst.get(sender, late))
        ranked = [0.0] * max(0, self.others() - len(worst)) + sorted(worst.values())
        return ranked[(len(ranked) - 1) // 2] if ranked else 0.0

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()
