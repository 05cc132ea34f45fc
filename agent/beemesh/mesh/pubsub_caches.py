"""Two of py-libp2p's pub/sub caches Beemesh empties (installed by `mesh/host.py`).

- GossipSub notes the time of every message it publishes or forwards for its "adaptive gossip"
  health rating, the only place that trims the list: with adaptive gossip off (it slowed the
  heartbeat to a minute), the list only grew. `Unrecorded` keeps nothing.
- Pubsub caches each message id's validation result for 5 minutes (1,000 entries, kept in a
  list searched on every use) and answers a message it has a result for without running the
  topic validator. Its seen-message cache forgets an id 2 minutes after the last copy, so a
  message replayed 2 to 5 minutes later was delivered again on the strength of the first
  copy's verdict: Beemesh's validator, which checks signature age and refuses replays
  (`wire.Verifier`), never saw it. Duplicates within the 2 minutes never reach validation, so
  `NoValidationCache` caches nothing and every message that is not a known duplicate is
  validated.
"""

from __future__ import annotations

from typing import Any


class Unrecorded(list[float]):
    """A list that keeps nothing appended to it."""

    def append(self, item: float) -> None:
        pass


class NoValidationCache:
    """Pubsub's `validation_cache`, keeping nothing."""

    def get(self, msg_id: bytes) -> None:
        return None

    def put(self, msg_id: bytes, result: Any) -> None:
        pass

    def clear_expired(self) -> None:
        pass
