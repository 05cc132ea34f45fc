"""Which machine may vouch for which replica, and records waiting for their machine (sans-IO).

A WorkloadCert is a machine's word that a workload key belongs to a pod it runs. A machine
that signs certificates for pods it does not hold (a rogue, but admitted, machine) could
otherwise take over any replica's endpoints. So a certificate counts only while the machine
that signed it holds that replica: the pod summaries of its accepted machine record (the agent
hands them to its work plane at every sync, `workplane.sync.Machine.pods`) list a pod with that
name, workload, ordinal and task. Anything else is refused as `not_held`, including records
vouched for by a machine this work plane has no record of.

Start-up ordering: a replica's first ServiceRecord is often published before the other work
planes have synced the machine record that lists its pod (machine records travel on the
machine plane; each work plane syncs every second). Such a record waits (`Waiting`) and is
tried again at every sync for `HOLD_GRACE_S`; only then is it counted as refused. Records are
refreshed every 5 s, so a replica is never missed for long either way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from beemesh import wire
from beemesh.workplane.sync import Machine

HOLD_GRACE_S = 10.0  # > two machine-record refreshes (3 s) plus a sync (1 s) and some lateness
MAX_WAITING = 1024

Held = tuple[str, str, int, str]  # (pod, workload id, ordinal, task)


class Holdings:
    """The pods each machine's accepted record lists, as the agent last reported them."""

    def __init__(self) -> None:
        self._held: dict[str, frozenset[Held]] = {}

    def learn(self, machines: Iterable[Machine]) -> None:
        self._held = {m.peer_id: frozenset((p.pod, p.workload_id, p.ordinal, p.task)
                                           for p in m.pods) for m in machines}

    def check(self, machine: str, pod: str, workload_id: str, ordinal: int, task: str) -> None:
        """Rejected (`not_held`) unless `machine`'s record lists that pod for that task."""
        held = self._held.get(machine)
        if held is None:
            raise wire.Rejected("not_held", f"certified by machine {machine[-8:]}, which has "
                                "no accepted record")
        if (pod, workload_id, ordinal, task) not in held:
            raise wire.Rejected("not_held", f"machine {machine[-8:]} does not hold pod {pod} "
                                f"({workload_id} replica {ordinal}, task {task[:12]})")


T = TypeVar("T")


class Waiting(Generic[T]):
    """Items refused only as `not_held`, tried again until `grace_s` after the first one of
    their key arrived; the newest item per key, at most `max_items` keys."""

    def __init__(self, grace_s: float = HOLD_GRACE_S, max_items: int = MAX_WAITING) -> None:
        self.grace_s = grace_s
        self.max_items = max_items
        self._items: dict[Hashable, tuple[float, T]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: Hashable, item: T, now: float) -> bool:
        """Keep `item` to try again; False when full (the caller refuses it now)."""
        first = self._items.get(key)
        if first is None and len(self._items) >= self.max_items:
            return False
        self._items[key] = (now if first is None else first[0], item)
        return True

    def retry(self, now: float,
              attempt: Callable[[T], None]) -> list[tuple[T, wire.Rejected]]:
        """Call `attempt` on each item (it raises `Rejected` to refuse). Items it takes, or
        refuses for another reason, or that still are `not_held` after the grace, leave;
        returned are those refused, with why."""
        refused: list[tuple[T, wire.Rejected]] = []
        for key, (since, item) in list(self._items.items()):
            try:
                attempt(item)
            except wire.Rejected as e:
                if e.reason == "not_held" and now - since < self.grace_s:
                    continue
                refused.append((item, e))
            del self._items[key]
        return refused
