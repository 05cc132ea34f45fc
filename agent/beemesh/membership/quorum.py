"""Quorum: does this side of a partition see a majority, and for how long (sans-IO).

Members are the machines seen within `quorum_memory_s` that did not withdraw (`MachineView`);
a restarted agent remembers them (`members_file`). Two questions decide StatefulSets:
- **majority**: the machines in sight are a strict majority of the members. A StatefulSet
  replica is healed or deployed only where a majority has been in sight for a record TTL
  (time for their records, which list their pods, to arrive);
- **outnumbered**: the members out of sight are a strict majority. An outnumbered machine
  stops (fences) its own StatefulSet replicas, because the majority may start them elsewhere.
Neither holds on an even split. Each clock measures how long its condition has held without a
break, from the samples the caller takes (the kubelet samples twice a second).
"""

from __future__ import annotations

from dataclasses import dataclass

from beemesh.membership.view import MachineView


def has_majority(visible: int, known: int) -> bool:
    return visible * 2 > known


def is_outnumbered(visible: int, known: int) -> bool:
    return (known - visible) * 2 > known


@dataclass
class Streak:
    """How long a condition has held without a break, as seen by the samples taken."""

    since: float | None = None

    def update(self, holds: bool, now: float) -> float:
        if not holds:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = now
        return now - self.since


@dataclass(frozen=True)
class QuorumSample:
    visible: int  # machines in sight now
    known: int  # members
    majority: bool  # a strict majority of the members is in sight (and the list is trusted)
    outnumbered: bool  # the members out of sight are a strict majority
    majority_for: float  # seconds a majority has been in sight without a break
    outnumbered_for: float  # seconds this side has been outnumbered without a break


class Quorum:
    def __init__(self, view: MachineView, memory_s: float, unsure_until: float = 0.0) -> None:
        """`unsure_until`: the member list this run started from could not be trusted (a
        damaged file); until then no majority is claimed, whatever is in sight."""
        self.view = view
        self.memory_s = memory_s
        self.unsure_until = unsure_until
        self._majority = Streak()
        self._outnumbered = Streak()

    def sample(self, now: float) -> QuorumSample:
        visible, known = self.view.membership(now, self.memory_s)
        majority = has_majority(visible, known) and now >= self.unsure_until
        outnumbered = is_outnumbered(visible, known)
        return QuorumSample(visible, known, majority, outnumbered,
                            self._majority.update(majority, now),
                            self._outnumbered.update(outnumbered, now))
