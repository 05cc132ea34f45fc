"""A bounded, numbered log of what this agent saw and did, for `beemesh events [--watch]`."""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)  # 2,000 of them: no per-event dict
class Event:
    seq: int
    ts: float
    kind: str  # e.g. TaskSeen, Deployed, Failed, DuplicateDropped, Deleted, Note
    text: str
    task: str = ""
    workload: str = ""
    machine: str = ""
    signer: str = ""  # Audit events: the operator who signed the request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventLog:
    def __init__(self, capacity: int = 2000) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, now: float, kind: str, text: str, **ids: str) -> Event:
        self._seq += 1
        # the few machines' and operators' names, one copy each rather than one per event
        for repeated in ("machine", "signer"):
            if repeated in ids:
                ids[repeated] = sys.intern(ids[repeated])
        event = Event(self._seq, now, kind, text, **ids)
        self._events.append(event)
        return event

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int) -> list[Event]:
        return [e for e in self._events if e.seq > seq]
