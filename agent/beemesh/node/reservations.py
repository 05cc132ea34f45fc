"""What this machine has promised to tasks (sans-IO): reservations against its capacity."""

from __future__ import annotations

from beemesh.node.capacity import Capacity

__all__ = ["Reservations"]


class Reservations:
    """Book-keeping of what the scheduler has promised to tasks; pure, no IO.

    Fit is judged against ``Capacity.memory_bytes`` (the limit), not the available figure:
    running tasks already show up in "available", so using it would count them twice.
    """

    def __init__(self, capacity: Capacity | None = None) -> None:
        self.capacity = capacity
        self._held: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._held

    def reserved(self) -> tuple[int, int]:
        """Total (cpu_milli, memory_bytes) currently held."""
        return (
            sum(c for c, _ in self._held.values()),
            sum(m for _, m in self._held.values()),
        )

    def free(self, capacity: Capacity | None = None) -> tuple[int, int]:
        """(cpu_milli_free, memory_free) against ``capacity`` (default: the stored one)."""
        cap = capacity if capacity is not None else self.capacity
        if cap is None:
            raise ValueError("no capacity given")
        cpu, mem = self.reserved()
        return max(0, cap.cpu_milli - cpu), max(0, cap.memory_bytes - mem)

    def reserve(
        self,
        task_id: str,
        cpu_milli: int,
        memory_bytes: int,
        capacity: Capacity | None = None,
    ) -> bool:
        """Hold resources for a task; False (nothing changed) if it does not fit.

        Reserving an already-held task id replaces its reservation, judged net of the old one.
        """
        if cpu_milli < 0 or memory_bytes < 0:
            raise ValueError("reservations must be non-negative")
        cap = capacity if capacity is not None else self.capacity
        if cap is None:
            raise ValueError("no capacity given")
        old = self._held.pop(task_id, None)
        cpu_free, mem_free = self.free(cap)
        if cpu_milli <= cpu_free and memory_bytes <= mem_free:
            self._held[task_id] = (cpu_milli, memory_bytes)
            return True
        if old is not None:
            self._held[task_id] = old
        return False

    def release(self, task_id: str) -> bool:
        """Drop a task's reservation; False if it held none (release is idempotent)."""
        return self._held.pop(task_id, None) is not None
