"""Saying a thing once: a problem retried every few seconds, or sent by a peer again and
again, is logged the first time only (counting it is the metrics' job)."""

from __future__ import annotations

MAX_KEYS = 10_000


class Once:
    """`first(key)` is True the first time `key` comes, False after; past `cap` keys it is
    always False (a flood of new keys must not flood the log, nor memory)."""

    def __init__(self, cap: int = MAX_KEYS) -> None:
        self.cap = cap
        self._seen: set[tuple[str, ...]] = set()

    def first(self, *key: str) -> bool:
        if key in self._seen or len(self._seen) >= self.cap:
            return False
        self._seen.add(key)
        return True
