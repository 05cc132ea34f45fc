"""Two of py-libp2p's pub/sub caches Beemesh changes (installed by `mesh/host.py`).

- GossipSub notes the time of every message it publishes or forwards for its "adaptive gossip"
  health rating, the only place that trims the list: with adaptive gossip off (it slowed the
  heartbeat to a minute), the list only grew. `Unrecorded` keeps nothing.
- Pubsub caches each message id's validation result for 5 minutes (1,000 entries, kept in a
  list searched on every use) and answers a message it has a result for without running the
  topic validator. Its seen-message cache forgets an id 2 minutes after the last copy, so a
  message replayed 2 to 5 minutes later was delivered again on the strength of the first
  copy's verdict: Beemesh's validator, which checks signature age and refuses replays
  (`wire.Verifier`), never saw it. `RefusalCache` keeps refusals only: an accepted message is
  marked seen, so its copies never reach validation, and a replay past the seen cache is
  validated again; a refused one is not marked seen, and its copies from other peers are
  refused from the cache (judging them again would only find the nonce already used and
  report a benign duplicate as a replay).
"""

from __future__ import annotations

import time
from typing import Any

from beemesh.mesh.recent import Recent

REFUSALS_KEPT = 1024
REFUSALS_TTL_S = 120.0  # as long as the seen-message cache remembers an accepted one


class Unrecorded(list[float]):
    """A list that keeps nothing appended to it."""

    def append(self, item: float) -> None:
        pass


class RefusalCache:
    """Pubsub's `validation_cache`, keeping the refusals of the last `ttl_s` only."""

    def __init__(self, limit: int = REFUSALS_KEPT, ttl_s: float = REFUSALS_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._refused = Recent(limit)  # msg id -> ValidationResult

    def get(self, msg_id: bytes) -> Any:
        result = self._refused.get(msg_id)
        if result is None or time.time() - result.timestamp > self.ttl_s:
            return None
        return result

    def put(self, msg_id: bytes, result: Any) -> None:
        if not result.is_valid:
            self._refused[msg_id] = result

    def clear_expired(self) -> None:
        now = time.time()
        for msg_id in [m for m, r in self._refused.items() if now - r.timestamp > self.ttl_s]:
            del self._refused[msg_id]
