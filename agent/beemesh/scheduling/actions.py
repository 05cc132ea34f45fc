"""What the auction asks its shell to do (sans-IO): the actions `Auctioneer` returns.

The shell (`scheduling.driver`) carries each out: messages on pub/sub, lease hints in the
Machine DHT, deploys and removals through the node, notes in the event log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishBid:
    task_id: str
    round: int
    score: int


@dataclass(frozen=True)
class Deploy:
    """Reserve resources, deploy, then call `deploy_result`."""

    task_id: str
    score: int


@dataclass(frozen=True)
class WriteLease:
    task_id: str
    ttl_s: float


@dataclass(frozen=True)
class CheckLease:
    """Read `lease/<task_id>` from the DHT, then call `lease_result`."""

    task_id: str


@dataclass(frozen=True)
class PublishDeployed:
    task_id: str
    score: int


@dataclass(frozen=True)
class PublishFailed:
    task_id: str
    reason: str


@dataclass(frozen=True)
class DropDuplicate:
    """Remove our copy: a better-ranked machine runs this task too."""

    task_id: str
    winner: str


@dataclass(frozen=True)
class Forget:
    """The auction no longer follows this task (finished long ago, or its workload deleted):
    the caller can drop what it keeps about it."""

    task_id: str


@dataclass(frozen=True)
class Note:
    """Something worth showing in `beemesh events`."""

    task_id: str
    text: str


Action = (
    PublishBid | Deploy | WriteLease | CheckLease | PublishDeployed | PublishFailed
    | DropDuplicate | Forget | Note
)
