"""OrderedReady ordinals and claim storage in eligibility and score (scheduling.scoring)."""

from __future__ import annotations

import dataclasses

from auction_sim import GIB, machine, request

from beemesh.scheduling.scoring import ORDERED_READY, ineligible_reason, score

WID = "statefulset/default/db"


def test_an_ordered_ordinal_waits_for_every_lower_one_to_be_ready() -> None:
    req = dataclasses.replace(request(), workload_id=WID, ordinal=2, stateful=True,
                              ordered=True)
    m = machine()
    assert ineligible_reason(req, m) == f"ordinal 0 is not ready yet ({ORDERED_READY})"
    m = dataclasses.replace(m, ready_replicas=frozenset({(WID, 0)}))
    assert ineligible_reason(req, m) == f"ordinal 1 is not ready yet ({ORDERED_READY})"
    m = dataclasses.replace(m, ready_replicas=frozenset({(WID, 0), (WID, 1)}))
    assert ineligible_reason(req, m) is None
    parallel = dataclasses.replace(req, ordered=False)
    assert ineligible_reason(parallel, machine()) is None


def test_claim_storage_counts_against_free_disk_unless_its_volume_is_here() -> None:
    req = dataclasses.replace(request(), workload_id=WID, ordinal=0, stateful=True,
                              claims=True, storage_bytes=10 * GIB)
    small = dataclasses.replace(machine(), disk_free_bytes=5 * GIB, disk_total_bytes=20 * GIB)
    assert ineligible_reason(req, small) == (
        f"its claim volumes request {10 * GIB} B of disk, {5 * GIB} B free here")
    holder = dataclasses.replace(small, volumes_here=frozenset({(WID, 0)}))
    assert ineligible_reason(req, holder) is None  # its data is here already
    assert ineligible_reason(req, dataclasses.replace(small, disk_free_bytes=None)) is None
    roomy = dataclasses.replace(small, disk_free_bytes=19 * GIB)
    tight = dataclasses.replace(small, disk_free_bytes=11 * GIB)
    assert score(req, roomy) > score(req, tight)  # more disk left after it: a better fit
