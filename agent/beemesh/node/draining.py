"""Drain: which replicas a draining machine retires next, and in what order (sans-IO).

While this machine drains, every replica here is marked retiring (its records say so, so the
surplus rule prefers any other copy) and a replacement task is published for it; the machine
is cordoned, so the replacement lands elsewhere. A Deployment replica keeps running until its
work plane sees the replacement ready (then it is surplus and goes), so a Deployment never
drops to zero ready replicas; a StatefulSet replica stops first and is replaced after, so its
ordinal never runs twice. A replica whose manifest this machine does not have cannot be
replaced by it and is left alone. With `drain --keep-data` a StatefulSet ordinal whose claim
volumes are here is stopped and not replaced: it starts again here, beside its data, once the
machine is uncordoned (data gravity keeps it from starting elsewhere meanwhile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A replica here, as drain sees it."""

    pod: str
    replaceable: bool  # this machine holds its workload's signed manifest
    stateful: bool
    claims: bool = False  # a StatefulSet ordinal with claim volumes (here)


@dataclass(frozen=True)
class Retire:
    """Mark `pod` retiring and publish its replacement (after stopping it, if stateful)."""

    pod: str
    stop_first: bool
    replace: bool = True  # False: stopped only (`drain --keep-data`)


def retirements(candidates: Iterable[Candidate], retiring: set[str], removing: set[str],
                keep_data: bool = False) -> list[Retire]:
    """The replicas to retire now: not retired yet, not being removed, replaceable."""
    return [Retire(c.pod, c.stateful, not (keep_data and c.claims)) for c in candidates
            if c.pod not in retiring and c.pod not in removing and c.replaceable]
