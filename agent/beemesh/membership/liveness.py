"""Who is alive, found by a few neighbours each, not by everyone hearing everyone (sans-IO).

SWIM's idea (memberlist and Serf run it) on a ring instead of random probes, so that every
accusation has an authority to check:

- **Ring.** Live machines (alive or suspect) sorted by a hash of their id. A machine probes its
  `monitors` successors on the ring (its *targets*) every `probe_every_s`; its predecessors
  probe it. Each machine's idle cost is `monitors` probes and acks a second whatever the size
  of the fleet.
- **Accuse.** `misses_to_accuse` probes in a row without an ack (or a connection that broke
  and cannot be made again, `unreachable`) and a monitor accuses its target: it publishes
  `Accuse(target, incarnation)` and starts the suspicion timer like everyone who hears it.
- **Authority.** An accusation counts only from one of the target's `monitors + SLACK`
  predecessors on the receiver's ring (rings differ a little while machines join), and only
  for an incarnation it knows of, not from the future: one rogue machine can accuse its few
  neighbours, never the fleet, and each of them answers at once.
- **Refute.** An accused machine that hears of it answers with a fresh incarnation (its next
  signed record, `Refute`); a newer incarnation clears a suspicion everywhere. A monitor
  whose accusation was answered while its own probes still fail (the link between the two
  alone is broken) accuses again only after `backoff_s`, doubling: without that, one broken
  link cost two broadcasts every few seconds for ever (found by `make sim`).
- **Dead.** A suspicion `suspicion_s` old without a refutation is a verdict (`Dead`): the
  machine leaves the ring and its records older than the verdict count no more. The monitor
  that reached it publishes the accusation once more (`confirm`), so a machine that missed the
  first hears it; such a machine starts its own full suspicion, keeping the target's chance to
  refute.

An incarnation is the timestamp (ms) of the machine's newest signed record: a record is its
alive message, and a machine that comes back (restart, healed partition) with a newer record
is alive again. Callers pass `now` (seconds) and act on the returned actions.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from enum import Enum

MONITORS = 3
# From a machine's last answer to its accusation reaching the fleet, at the defaults: up to a
# probe interval, two unanswered probes (1 s each, 0.25 s apart), and the accusation's way.
DETECTION_S = 7.0
SLACK = 2  # extra predecessors whose accusations count (rings differ while machines join)
MAX_MEMBERS = 1_000_000


class Refused(ValueError):
    """An accusation that does not count: `reason` is one word for the drop counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Status(Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Params:
    monitors: int = MONITORS
    probe_every_s: float = 1.0
    ack_timeout_s: float = 1.0
    misses_to_accuse: int = 2
    retry_s: float = 0.25  # after a miss, the next probe
    # After a target answered our accusation while our probes still fail (a link broken
    # between us alone), accuse it again only after this, doubling up to `max_backoff_s`.
    backoff_s: float = 4.0
    max_backoff_s: float = 300.0
    suspicion_s: float = 3.0
    max_skew_s: float = 30.0  # how far in the future an accused incarnation may lie

    @classmethod
    def within(cls, dead_after_s: float) -> Params:
        """Defaults with the suspicion sized so that a verdict is in everywhere within
        `dead_after_s` (`AgentConfig.dead_after_s`)."""
        return cls(suspicion_s=max(1.0, dead_after_s - DETECTION_S))


@dataclass(frozen=True, slots=True)
class Probe:
    """Send a probe `seq` to `target`; report its ack with `acked`."""
    target: str
    seq: int


@dataclass(frozen=True, slots=True)
class Accuse:
    """Publish: `target` at `incarnation` does not answer its monitors (`confirm`: verdict)."""
    target: str
    incarnation: int
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class Refute:
    """This machine was accused at `incarnation`: publish a record newer than it."""
    incarnation: int


@dataclass(frozen=True, slots=True)
class Dead:
    """The verdict: `target` is gone; its records up to `incarnation` count no more."""
    target: str
    incarnation: int


Action = Probe | Accuse | Refute | Dead


@dataclass(slots=True)
class Member:
    incarnation: int
    status: Status
    since: float  # when the status began
    accused_at: float | None = None  # suspicion start (SUSPECT)


@dataclass(slots=True)
class _Watch:
    """This machine's probing of one target."""
    next_probe: float
    seq: int = 0
    outstanding: float | None = None  # deadline of the probe in flight
    misses: int = 0
    accused: int | None = None  # incarnation this machine accused (once each)
    refuted: int = 0  # accusations of it answered in a row, no ack of ours in between
    quiet_until: float = 0.0  # no accusation before (`Params.backoff_s`)


def ring_key(peer: str) -> int:
    return int.from_bytes(hashlib.blake2b(peer.encode(), digest_size=8).digest(), "big")


class Liveness:
    def __init__(self, me: str, params: Params = Params()) -> None:
        self.me = me
        self.params = params
        self.incarnation = 0  # this machine's own, as its records carry it
        self._members: dict[str, Member] = {}
        self._ring: list[tuple[int, str]] = [(ring_key(me), me)]
        self._watches: dict[str, _Watch] = {}
        self._suspects: set[str] = set()
        self._refuted = -1

    # ---- facts in --------------------------------------------------------------------------

    def alive(self, peer: str, incarnation: int, now: float) -> bool:
        """A signed record of `peer` made at `incarnation` (ms). True when it is newer than
        what is known (a new member, a change, a refutation, a machine back from a verdict)."""
        if peer == self.me:
            self.incarnation = max(self.incarnation, incarnation)
            return False
        m = self._members.get(peer)
        if m is not None and incarnation <= m.incarnation:
            return False
        if m is None and len(self._members) >= MAX_MEMBERS:
            return False
        was_live = m is not None and m.status in (Status.ALIVE, Status.SUSPECT)
        self._members[peer] = Member(incarnation, Status.ALIVE, now)
        self._suspects.discard(peer)
        watch = self._watches.get(peer)
        if watch is not None:  # a new incarnation starts with a clean slate
            if watch.accused is not None:  # it answered our accusation: others reach it
                watch.refuted += 1
                watch.quiet_until = now + min(
                    self.params.max_backoff_s,
                    self.params.backoff_s * 2 ** (watch.refuted - 1))
            watch.misses, watch.accused = 0, None
        if not was_live:
            bisect.insort(self._ring, (ring_key(peer), peer))
        self._update_watches(now)
        return True

    def left(self, peer: str, incarnation: int, now: float) -> None:
        """`peer` withdrew (a clean shutdown) at `incarnation`."""
        self._end(peer, incarnation, Status.LEFT, now)

    def acked(self, target: str, seq: int, now: float) -> None:
        w = self._watches.get(target)
        if w is not None and seq == w.seq and w.outstanding is not None:
            w.outstanding = None
            w.misses = w.refuted = 0
            w.quiet_until = 0.0

    def unreachable(self, target: str, now: float) -> None:
        """The connection to `target` broke or could not be made: a miss now, and the next
        probe after `retry_s` (a process that died closes its connections: no need to wait
        for the ack timeout)."""
        w = self._watches.get(target)
        if w is not None and w.outstanding is not None:
            w.outstanding = now

    def check(self, accuser: str, target: str, incarnation: int, now: float) -> None:
        """Raise Refused when an accusation does not count here (an accusation of this
        machine always counts: it answers it)."""
        if incarnation > now * 1000 + self.params.max_skew_s * 1000:
            raise Refused("future", f"accuses {target} at an incarnation in the future")
        if target == self.me:
            return
        m = self._members.get(target)
        if m is not None and m.status is Status.DEAD and incarnation <= m.incarnation:
            return  # the verdict is in here too (a confirmation racing ours): nothing to do
        if m is None or m.status not in (Status.ALIVE, Status.SUSPECT):
            raise Refused("unknown", f"accuses {target}, which is not a live member here")
        if incarnation < m.incarnation:
            raise Refused("stale", f"accuses {target} at an incarnation it has since renewed")
        if accuser not in self.predecessors(target, self.params.monitors + SLACK):
            raise Refused("authority", f"accuses {target}, which it does not monitor")

    def accused(self, accuser: str, target: str, incarnation: int, confirm: bool,
                now: float) -> list[Action]:
        """An accusation heard on pub/sub (raises Refused when it does not count). A
        confirmation heard without the accusation starts a full suspicion here too."""
        self.check(accuser, target, incarnation, now)
        if target == self.me:
            if incarnation < self.incarnation or incarnation <= self._refuted:
                return []
            self._refuted = incarnation
            return [Refute(incarnation)]
        m = self._members[target]
        if m.status is not Status.ALIVE:
            return []
        m.incarnation = incarnation
        self._suspect(target, m, now)
        return []

    def stalled(self, seconds: float) -> None:
        """This machine did not run for `seconds` (its process was held up): suspicions wait
        that much longer, for a refutation may be waiting to be read. (A probe in flight
        then counts one miss at most, and one miss accuses no one.)"""
        for peer in self._suspects:
            m = self._members[peer]
            if m.accused_at is not None:
                m.accused_at += seconds

    def tick(self, now: float) -> list[Action]:
        """Probes due, probes unanswered, suspicions run out."""
        p = self.params
        out: list[Action] = []
        for target, w in self._watches.items():
            if w.outstanding is not None and w.outstanding <= now:
                w.outstanding = None
                w.misses += 1
                w.next_probe = min(w.next_probe, now + p.retry_s)  # ask again soon
            m = self._members[target]
            if (w.misses >= p.misses_to_accuse and w.accused != m.incarnation
                    and m.status is Status.ALIVE and now >= w.quiet_until):
                w.accused = m.incarnation
                self._suspect(target, m, now)
                out.append(Accuse(target, m.incarnation))
            if w.outstanding is None and w.next_probe <= now:
                w.seq += 1
                w.outstanding = now + p.ack_timeout_s
                w.next_probe = now + p.probe_every_s
                out.append(Probe(target, w.seq))
        for peer in sorted(self._suspects):
            m = self._members[peer]
            if m.accused_at is not None and now - m.accused_at >= p.suspicion_s:
                if peer in self._watches:
                    out.append(Accuse(peer, m.incarnation, confirm=True))
                self._end(peer, m.incarnation, Status.DEAD, now)
                out.append(Dead(peer, m.incarnation))
        return out

    def next_deadline(self) -> float | None:
        times = [t for w in self._watches.values() for t in (w.next_probe, w.outstanding)
                 if t is not None]
        times += [m.accused_at + self.params.suspicion_s
                  for m in map(self._members.__getitem__, self._suspects)
                  if m.accused_at is not None]
        return min(times, default=None)

    def forget(self, before: float) -> None:
        """Drop dead and departed members whose verdict is older than `before`."""
        for peer in [p for p, m in self._members.items()
                     if m.status in (Status.DEAD, Status.LEFT) and m.since < before]:
            del self._members[peer]

    # ---- reads -----------------------------------------------------------------------------

    def status(self, peer: str) -> Status | None:
        m = self._members.get(peer)
        return m.status if m is not None else None

    def suspects(self) -> frozenset[str]:
        """Machines accused and not yet cleared or declared dead."""
        return frozenset(self._suspects)

    def gone(self) -> list[str]:
        """Machines dead or departed, not yet forgotten."""
        return [p for p, m in self._members.items() if m.status in (Status.DEAD, Status.LEFT)]

    def live(self) -> list[str]:
        return [peer for _, peer in self._ring if peer != self.me]

    def targets(self) -> list[str]:
        """The machines this one probes (and keeps connections to), in ring order."""
        return self.successors(self.me, self.params.monitors)

    def successors(self, peer: str, count: int) -> list[str]:
        return self._walk(peer, count, 1)

    def predecessors(self, peer: str, count: int) -> list[str]:
        return self._walk(peer, count, -1)

    # ---- the ring --------------------------------------------------------------------------

    def _walk(self, peer: str, count: int, step: int) -> list[str]:
        ring = self._ring
        i = bisect.bisect_left(ring, (ring_key(peer), peer))
        out: list[str] = []
        for k in range(1, len(ring) + 1):
            if len(out) >= count:
                break
            other = ring[(i + step * k) % len(ring)][1]
            if other != peer:
                out.append(other)
        return out

    def _end(self, peer: str, incarnation: int, status: Status, now: float) -> None:
        m = self._members.get(peer)
        if m is not None and incarnation < m.incarnation:
            return
        if m is not None and m.status in (Status.ALIVE, Status.SUSPECT):
            i = bisect.bisect_left(self._ring, (ring_key(peer), peer))
            if i < len(self._ring) and self._ring[i][1] == peer:
                del self._ring[i]
        self._suspects.discard(peer)
        self._members[peer] = Member(incarnation, status, now)
        self._update_watches(now)

    def _suspect(self, peer: str, m: Member, now: float) -> None:
        m.status, m.since, m.accused_at = Status.SUSPECT, now, now
        self._suspects.add(peer)

    def _update_watches(self, now: float) -> None:
        targets = self.successors(self.me, self.params.monitors)
        for gone in set(self._watches) - set(targets):
            del self._watches[gone]
        for new in targets:
            if new not in self._watches:
                self._watches[new] = _Watch(next_probe=now)
