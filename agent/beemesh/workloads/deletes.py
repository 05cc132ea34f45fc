"""Carrying out an operator's Delete, and passing it on to machines that missed it (sans-IO).

Every machine keeps the operator's signed Delete for a week (`store.DELETE_TTL_S`) and removes
every pod of that workload, whenever one turns up (a deploy that was in flight when the Delete
arrived finishes after it). A machine that was away missed the Delete; its live record still
lists a pod of the deleted workload, or it asks for a task of one. Such machines get the
Delete again inside a machine-signed `RelayedDelete` (the Delete itself is too old to travel
alone), at most every `RELAY_EVERY_S` per (workload, machine), and at once when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from beemesh.runtime import PodInfo

RELAY_EVERY_S = 10.0
FORGET_AFTER_S = 6 * RELAY_EVERY_S


def doomed(pods: Iterable[PodInfo], deleted: Callable[[str], bool],
           removing: set[str]) -> list[str]:
    """Pods here of deleted workloads that are not being removed yet."""
    return [p.name for p in pods if deleted(p.workload_id) and p.name not in removing]


@dataclass
class RelayPolicy:
    """Which Deletes to relay now."""

    _sent: dict[tuple[str, str], float] = field(default_factory=dict)  # (workload, machine)
    _asked: set[str] = field(default_factory=set)  # workloads whose Delete to relay at once

    def asked(self, workload_id: str) -> None:
        """Some machine asked for a task of a deleted workload: it missed the Delete."""
        self._asked.add(workload_id)

    def due(self, listed: Iterable[tuple[str, str]], deleted: Callable[[str], bool],
            now: float) -> list[str]:
        """Workload ids whose Delete to relay now. `listed`: (machine, workload) of every pod
        other machines' live records list."""
        wanted = set(self._asked)
        self._asked.clear()
        for machine, workload_id in listed:
            key = (workload_id, machine)
            if deleted(workload_id) and now - self._sent.get(key, 0.0) >= RELAY_EVERY_S:
                self._sent[key] = now
                wanted.add(workload_id)
        for key in [k for k, t in self._sent.items() if now - t > FORGET_AFTER_S]:
            del self._sent[key]
        return sorted(wanted)
