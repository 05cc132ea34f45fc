"""A dict that keeps only its newest entries: for state that has no tighter bound.

Every map keyed by what peers send (peers, certificates, messages) needs a bound; this is the
one kind used for all of them (admission's certificates and pending connections, the sender
records checked once, GossipSub's equivocation window).

GossipSub keeps the first copy of every message it receives in `equivocation_detection`
(message id -> the whole protobuf message) to spot a sender that signs two contents under
one sequence number, and trims it only on its security sweep, from over 1,000 back to 500
messages. Each message holds its payload (a signed machine record is ~1 KB) in protobuf's C
arena, out of sight of Python's tracers: it fills at the mesh's message rate and drops by
half at the sweep, which matches the ~1 MB RSS sawtooth with a ~9-minute period measured on
an idle 3-machine mesh (issue 20), and under load it fills within minutes. `MeshHost` hands
GossipSub a `Recent(EQUIVOCATION_WINDOW)` instead: the check sees the last 256 messages
(several seconds of traffic at the busiest), which covers the copies gossip delivers within
a few heartbeats; whatever passes it is still checked as a signed envelope (signature,
timestamp, nonce: `wire`) before anything acts on it.
"""

from __future__ import annotations

from typing import Any

EQUIVOCATION_WINDOW = 256


class Recent(dict[Any, Any]):
    """Insertion-ordered dict of at most `limit` entries; adding one past it drops the oldest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)

    def renew(self, key: Any, value: Any) -> None:
        """Set `key` and make it the newest (least recently used goes first)."""
        self.pop(key, None)
        self[key] = value
