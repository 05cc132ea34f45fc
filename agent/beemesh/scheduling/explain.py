"""Why a task finds no machine: the fleet's machines counted by the constraint that rules
each out, as far as their records tell (what `apply --wait` and `describe` say while a
replica waits).

A record tells arch, labels, capacity, the hostPath roots a machine allows and whether it is
cordoned or draining; it does not tell which images a machine stores, so a machine the record
lets through may still refuse for its image. This machine's own
refusal (`TaskStatus.ineligible_here`) is exact and is reported next to the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from beemesh.membership.records import MachineRecord
from beemesh.scheduling.bounds import advertised
from beemesh.scheduling.scoring import LocalState, TaskRequest, ineligible_reason

MAX_REASONS = 4  # the most frequent reasons named; the rest are counted as "other"


@dataclass(frozen=True)
class FleetFit:
    """Of `machines` other machines in view, `fit` pass every constraint their records show;
    `refusals` counts the others by reason (most frequent first)."""

    machines: int
    fit: int
    refusals: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, object]:
        return {"machines": self.machines, "fit": self.fit,
                "refusals": [[reason, n] for reason, n in self.refusals]}


def as_recorded(record: MachineRecord) -> LocalState:
    """A machine as its record shows it: cordoned or draining as it says, memory as free as
    the kernel said, CPU as its whole capacity (records do not carry reservations)."""
    return replace(advertised(record), cordoned=record.cordoned or record.draining,
                   memory_bytes_free=record.capacity.memory_available_bytes)


def fleet_fit(req: TaskRequest, records: list[MachineRecord],
              holders: Mapping[tuple[str, int], str] | None = None,
              ready: frozenset[tuple[str, int]] = frozenset()) -> FleetFit:
    """Count `records` by whether they could run `req` and, if not, why. `holders`: which
    machine holds each replica's claim volumes (data gravity); `ready`: the ready replicas
    (an OrderedReady ordinal waits for the lower ones)."""
    counts: Counter[str] = Counter()
    fit = 0
    for record in records:
        state = replace(as_recorded(record), ready_replicas=ready, volumes_elsewhere={
            k: v for k, v in (holders or {}).items() if v != record.peer_id})
        reason = ineligible_reason(req, state)
        if reason is None:
            fit += 1
        else:
            counts[coarse(reason)] += 1
    top = counts.most_common(MAX_REASONS)
    rest = sum(counts.values()) - sum(n for _, n in top)
    return FleetFit(len(records), fit, tuple(top) + ((("other reasons", rest),) if rest else ()))


def coarse(reason: str) -> str:
    """A reason without the machine's own figures, so equal constraints count together
    (`needs 500m cpu, 300m free` -> `needs 500m cpu`)."""
    return reason.split(", ", 1)[0]
