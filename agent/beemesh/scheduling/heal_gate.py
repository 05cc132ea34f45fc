"""The machine plane's checks on a heal its work plane asks for (sans-IO).

The work plane asks for a lost replica from what its service records show; the machine plane
may know better: a Delete, a replica whose work plane is down but whose pod runs, a task for
it being placed or just deployed, a backlog that makes live machines look dead. `refusal`
says why a heal must not be published now, or None when it may; asking again later is always
safe, because every machine that saw the same replica vanish asks for the same task id.
"""

from __future__ import annotations

from dataclasses import dataclass

from beemesh.workloads.store import StoredWorkload
from beemesh.workplane.records import RECORD_TTL_S


@dataclass(frozen=True)
class HealFacts:
    """What this machine knows about one replica when its work plane asks to heal it."""

    uptime_s: float  # since this agent started
    settle_s: float  # heals wait this long after a start (peers pass on Deletes and records)
    lateness_s: float  # how late machine records arrive (membership.lateness)
    lateness_limit_s: float  # heals pause while records arrive later than this
    stored: StoredWorkload | None  # the operator's signed manifest, if this machine has it
    deleted: bool
    ordinal: int
    running_on: tuple[str, ...]  # machines whose live record lists this replica
    placing: str | None  # a task for this replica being placed, if any
    deployed_ago: tuple[str, float] | None  # (task, seconds) of its newest deployment
    majority_for: float  # seconds a majority of the members has been in sight
    majority_needed_s: float  # how long that must be for a StatefulSet heal (a record TTL)
    template: str = ""  # an update (`workplane.rollout`): the pod template it wants


def refusal(f: HealFacts) -> str | None:
    """Why a heal of replica `f.ordinal` must not be published now, or None when it may.

    `deployed_ago`: a deployment's service record takes a sync, a certificate and a gossip
    round to arrive, seconds in a busy mesh. `majority_for`: a StatefulSet replica heals only
    where a strict majority of the members has been in sight long enough for their records
    (which list their pods) to have arrived.
    """
    if f.uptime_s < f.settle_s:
        return (f"agent started {f.uptime_s:.0f} s ago; heals wait {f.settle_s:.0f} s for "
                "peers to pass on deletes and records")
    if f.lateness_s > f.lateness_limit_s:
        return (f"machine records arrive {f.lateness_s:.0f} s late (a backlog, not dead "
                f"machines); heals wait until they are under {f.lateness_limit_s:g} s late "
                "again")
    if f.stored is None:
        return "no signed manifest of this workload here"
    if f.deleted:
        return "the workload was deleted"
    if f.template and f.template != f.stored.spec.template_hash:
        return (f"the newest pod template here is {f.stored.spec.template_hash}, not "
                f"{f.template}; this machine has not seen that apply")
    if not 0 <= f.ordinal < f.stored.spec.replicas:
        return f"replica {f.ordinal} is beyond replicas={f.stored.spec.replicas}"
    if f.running_on:
        return f"replica {f.ordinal} still runs on {', '.join(sorted(f.running_on))}"
    if f.placing is not None:
        return f"task {f.placing} for replica {f.ordinal} is being placed"
    if f.deployed_ago is not None and f.deployed_ago[1] < RECORD_TTL_S:
        return (f"task {f.deployed_ago[0]} for replica {f.ordinal} was deployed "
                f"{f.deployed_ago[1]:.0f} s ago; its service record may not be out yet")
    if f.stored.spec.kind == "StatefulSet" and f.majority_for < f.majority_needed_s:
        return "a StatefulSet replica heals only where a majority of machines is in sight"
    return None

