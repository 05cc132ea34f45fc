"""The fleet as this agent sees it: newest record per machine, and who counts as a member
(sans-IO: callers pass `now`).

A record holds until a newer one arrives, its machine withdraws on a clean shutdown, or
`membership.liveness` reaches a verdict that it is dead (`dead`). Both are remembered so that
older records (in flight, or relayed by a peer that missed the news) cannot bring the machine
back. Members are machines in sight or seen within a memory window that did not withdraw:
quorum (StatefulSet healing and fencing) compares them with the machines in sight.
"""

from __future__ import annotations

from collections.abc import Iterator

from beemesh import wire
from beemesh.membership.records import MachineEntry, PodSummary

# How long a withdrawal or a verdict shadows older records: long enough for every copy of them
# in flight or in peers' views to be superseded, plus the clock skew by which a timestamp may
# lie in the future.
WITHDRAWAL_MEMORY_S = 300 + wire.MAX_CLOCK_SKEW_S


class MachineView:
    """Newest unexpired record per machine, and who was a member recently (for quorum)."""

    def __init__(self) -> None:
        self._entries: dict[str, MachineEntry] = {}
        # peer -> when it was last in sight (a verdict's time for a dead one): machines that
        # vanished without withdrawing stay members for quorum_memory_s, so a partition cannot
        # be mistaken for a smaller fleet.
        self._last_seen: dict[str, float] = {}
        # peer -> (withdrawal or verdict ts, forget-after): records made before it (in flight,
        # or relayed) must not bring a departed machine back.
        self._withdrawn: dict[str, tuple[float, float]] = {}
        # peer -> when its current unbroken run of records began; peer -> task -> when its
        # records first listed a pod of that task in this run (`listed_on_arrival`).
        self._since: dict[str, float] = {}
        self._listed: dict[str, dict[str, float]] = {}

    def apply(self, entry: MachineEntry, now: float) -> bool:
        """Store `entry` if it is newer than what we have; True if stored."""
        withdrawal = self._withdrawn.get(entry.peer_id)
        if withdrawal is not None and entry.ts <= withdrawal[0]:
            return False
        current = self._entries.get(entry.peer_id)
        if current is not None and current.ts >= entry.ts:
            return False
        if current is None:
            self._since[entry.peer_id] = now
        listed = self._listed.get(entry.peer_id, {}) if current is not None else {}
        self._listed[entry.peer_id] = {p.task: listed.get(p.task, now) for p in entry.record.pods}
        self._entries[entry.peer_id] = entry
        self._last_seen[entry.peer_id] = now
        return True

    def withdraw(self, peer: str, ts: float, now: float) -> bool:
        """Drop `peer` and ignore its records made up to `ts`."""
        self._withdrawn[peer] = (ts, max(now, ts) + WITHDRAWAL_MEMORY_S)
        self._last_seen.pop(peer, None)  # it left on purpose: no longer counts for quorum
        self._forget_run(peer)
        return self._entries.pop(peer, None) is not None

    def dead(self, peer: str, ts: float, now: float) -> bool:
        """`membership.liveness`'s verdict: drop `peer`, ignore its records made up to `ts`; it
        stays a member for quorum's memory (it did not leave on purpose)."""
        self._withdrawn[peer] = (ts, max(now, ts) + WITHDRAWAL_MEMORY_S)
        if peer in self._entries:
            self._last_seen[peer] = now
        self._forget_run(peer)
        return self._entries.pop(peer, None) is not None

    def shadowed(self, peer: str) -> float | None:
        """The time up to which `peer`'s records are shadowed by a withdrawal or a verdict."""
        withdrawal = self._withdrawn.get(peer)
        return withdrawal[0] if withdrawal is not None else None

    def forget(self, now: float) -> None:
        """Withdrawals and verdicts older than their memory."""
        for p in [p for p, (_, until) in self._withdrawn.items() if until <= now]:
            del self._withdrawn[p]

    def _forget_run(self, peer: str) -> None:
        self._since.pop(peer, None)
        self._listed.pop(peer, None)

    def listed_on_arrival(self, peer: str, task: str, grace_s: float) -> bool:
        """Whether `peer`'s records listed a pod of `task` within `grace_s` of it coming into
        view: what it brought along from a partition or a restart, which no round here can
        have placed. A pod it starts listing later, while in view all along, was placed by a
        round this agent should have followed."""
        since, listed = self._since.get(peer), self._listed.get(peer, {}).get(task)
        return since is not None and listed is not None and listed - since <= grace_s

    def lists(self, peer: str, task: str) -> bool:
        """Whether `peer`'s live record lists a pod of `task`."""
        return task in self._listed.get(peer, {})

    def get(self, peer: str) -> MachineEntry | None:
        return self._entries.get(peer)

    def entries(self) -> list[MachineEntry]:
        return sorted(self._entries.values(), key=lambda e: e.peer_id)

    def machine_ids(self) -> set[str]:
        return set(self._entries)

    def pods_elsewhere(self, self_id: str) -> Iterator[tuple[MachineEntry, PodSummary]]:
        """Every pod another machine's live record lists, with that machine's entry."""
        for entry in self.entries():
            if entry.peer_id != self_id:
                for pod in entry.record.pods:
                    yield entry, pod

    # ---- membership (quorum) ------------------------------------------------------------

    def membership(self, now: float, memory_s: float) -> tuple[int, int]:
        """(machines visible now, machines that count as members): a member is visible, or
        was seen within `memory_s` and did not withdraw."""
        visible = len(self._entries)
        for peer in [p for p, t in self._last_seen.items()
                     if t + memory_s <= now and p not in self._entries]:
            del self._last_seen[peer]
        known = len(set(self._last_seen) | set(self._entries))
        return visible, known

    def members(self, now: float) -> dict[str, float]:
        """Peer -> when it was last in sight, for every member remembered (to persist)."""
        return {**self._last_seen, **dict.fromkeys(self._entries, now)}

    def remember(self, members: dict[str, float]) -> None:
        """Members a previous run of this agent knew: a restart must not shrink the fleet to
        the machines in sight, or a cut-off machine would count itself a majority of one."""
        for peer, expiry in members.items():
            self._last_seen[peer] = max(expiry, self._last_seen.get(peer, expiry))
