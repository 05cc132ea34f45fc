"""Fencing: which StatefulSet replicas an outnumbered machine stops (sans-IO).

When the members out of this machine's sight are a strict majority, the majority may start
this machine's StatefulSet ordinals elsewhere; an ordinal must never run twice on purpose, so
this side stops its copies once it has been outnumbered for `grace_s` (a blip is not a
partition). See docs/architecture.md, "StatefulSet".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from beemesh.membership.quorum import QuorumSample

FENCE_GRACE_S = 1.0
FENCE_STOP_GRACE_S = 2.0  # how long a fenced replica gets to stop


@dataclass(frozen=True)
class Fence:
    pod: str
    reason: str


def fences(sample: QuorumSample, stateful_pods: Iterable[str],
           grace_s: float = FENCE_GRACE_S) -> list[Fence]:
    """The StatefulSet replicas here (not already being removed) to stop now."""
    if not sample.outnumbered or sample.outnumbered_for < grace_s:
        return []
    reason = (f"only {sample.visible} of {sample.known} machines in sight; stopping this "
              "StatefulSet replica so the majority can run it")
    return [Fence(pod, reason) for pod in stateful_pods]
