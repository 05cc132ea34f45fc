"""MachineView: newest record per machine, withdrawals and verdicts."""

from __future__ import annotations

import dataclasses

from machine_records_testlib import KEY_A, KEY_B, T0, entry, envelope, record_body

from beemesh.identity import KeyPair
from beemesh.membership.records import (
    MachineEntry,
    MachineRecord,
    PodSummary,
    entry_from_envelope,
)
from beemesh.membership.view import WITHDRAWAL_MEMORY_S, MachineView

# --- MachineView --------------------------------------------------------------------------


def test_apply_and_get() -> None:
    view = MachineView()
    e = entry(KEY_A, T0)
    assert view.apply(e, T0) is True
    assert view.get(KEY_A.peer_id) == e
    assert view.get(KEY_B.peer_id) is None
    assert view.entries() == [e]


def test_newest_wins() -> None:
    view = MachineView()
    old, new = entry(KEY_A, T0), entry(KEY_A, T0 + 1)
    assert view.apply(old, T0 + 1)
    assert view.apply(new, T0 + 1)
    assert view.get(KEY_A.peer_id) == new


def test_older_or_equal_ts_ignored() -> None:
    view = MachineView()
    new = entry(KEY_A, T0 + 2)
    assert view.apply(new, T0 + 2)
    assert view.apply(entry(KEY_A, T0 + 1), T0 + 2) is False
    same_ts = entry_from_envelope(envelope(KEY_A, T0 + 2, record_body(KEY_A, arch="x86_64")))
    assert view.apply(same_ts, T0 + 2) is False
    assert view.get(KEY_A.peer_id) == new


def test_a_record_holds_until_a_newer_one_a_withdrawal_or_a_verdict() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)
    view.apply(entry(KEY_B, T0), T0)
    assert [e.peer_id for e in view.entries()] == sorted([KEY_A.peer_id, KEY_B.peer_id])
    assert view.dead(KEY_A.peer_id, T0, T0 + 3600) is True  # no news for an hour: still here
    assert [e.peer_id for e in view.entries()] == [KEY_B.peer_id]
    assert view.dead(KEY_A.peer_id, T0, T0 + 3601) is False


def test_a_verdict_shadows_older_records_and_keeps_the_machine_a_member() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)
    view.dead(KEY_A.peer_id, T0, T0 + 10)
    assert view.shadowed(KEY_A.peer_id) == T0
    assert view.apply(entry(KEY_A, T0), T0 + 11) is False  # relayed by a peer that missed it
    assert view.membership(T0 + 11, 600) == (0, 1)
    assert view.apply(entry(KEY_A, T0 + 20), T0 + 20) is True  # back, with a newer record
    assert view.membership(T0 + 21, 600) == (1, 1)


def test_entries_sorted_by_peer_id() -> None:
    view = MachineView()
    keys = [KeyPair(bytes([i]) * 32) for i in range(1, 8)]
    for k in keys:
        view.apply(entry(k, T0), T0)
    ids = [e.peer_id for e in view.entries()]
    assert ids == sorted(k.peer_id for k in keys)


def test_withdraw_drops_and_remembers() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)
    assert view.withdraw(KEY_A.peer_id, T0 + 5, T0 + 5) is True
    assert view.get(KEY_A.peer_id) is None
    # The old record (still in the DHT or in flight) must not bring the machine back.
    assert view.apply(entry(KEY_A, T0), T0 + 6) is False
    assert view.apply(entry(KEY_A, T0 + 5), T0 + 6) is False  # equal ts
    assert view.get(KEY_A.peer_id) is None
    # A record made after the withdrawal (the machine came back) is accepted.
    newer = entry(KEY_A, T0 + 5.5)
    assert view.apply(newer, T0 + 6) is True
    assert view.get(KEY_A.peer_id) == newer


def test_withdraw_unknown_peer_still_remembered() -> None:
    view = MachineView()
    assert view.withdraw(KEY_A.peer_id, T0, T0) is False
    assert view.apply(entry(KEY_A, T0 - 1), T0) is False
    assert view.apply(entry(KEY_A, T0 + 1), T0 + 1) is True


def test_withdraw_only_affects_that_peer() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)
    view.apply(entry(KEY_B, T0), T0)
    view.withdraw(KEY_A.peer_id, T0, T0)
    assert [e.peer_id for e in view.entries()] == [KEY_B.peer_id]
    assert view.apply(entry(KEY_B, T0 - 1), T0) is False  # older, and B never withdrew
    assert view.apply(entry(KEY_B, T0 + 1), T0 + 1) is True


def test_withdrawal_forgotten_after_its_memory() -> None:
    view = MachineView()
    view.withdraw(KEY_A.peer_id, T0, T0)
    # A hand-built long-lived entry older than the withdrawal, so only the withdrawal decides.
    old = MachineEntry(KEY_A.peer_id, MachineRecord.from_body(record_body(KEY_A)), T0 - 1)
    assert view.apply(old, T0 + 300) is False
    view.forget(T0 + WITHDRAWAL_MEMORY_S - 1)
    assert view.apply(old, T0 + WITHDRAWAL_MEMORY_S - 1) is False  # still remembered
    view.forget(T0 + WITHDRAWAL_MEMORY_S)
    assert view.apply(old, T0 + WITHDRAWAL_MEMORY_S) is True


def with_tasks(key: KeyPair, ts: float, *tasks: str) -> MachineEntry:
    e = entry(key, ts)
    pods = tuple(PodSummary("deployment/default/web", i, t, f"web-{i}", "running", 0.0)
                 for i, t in enumerate(tasks))
    return dataclasses.replace(e, record=dataclasses.replace(e.record, pods=pods))


def test_pods_listed_on_arrival_and_later() -> None:
    """What a machine lists within the grace of coming into view it brought along (from the
    far side of a partition); what it starts listing later, in view all along, it did not."""
    view = MachineView()
    view.apply(with_tasks(KEY_A, T0, "t-old"), T0)
    view.apply(with_tasks(KEY_A, T0 + 5, "t-old", "t-brought"), T0 + 5)
    view.apply(with_tasks(KEY_A, T0 + 30, "t-old", "t-brought", "t-new"), T0 + 30)
    assert view.listed_on_arrival(KEY_A.peer_id, "t-old", 10)
    assert view.listed_on_arrival(KEY_A.peer_id, "t-brought", 10)
    assert not view.listed_on_arrival(KEY_A.peer_id, "t-new", 10)
    assert view.lists(KEY_A.peer_id, "t-new") and not view.lists(KEY_B.peer_id, "t-new")
    # a task it stops listing is forgotten: listing it again later is a new claim
    view.apply(with_tasks(KEY_A, T0 + 31, "t-new"), T0 + 31)
    view.apply(with_tasks(KEY_A, T0 + 32, "t-new", "t-old"), T0 + 32)
    assert not view.listed_on_arrival(KEY_A.peer_id, "t-old", 10)


def test_a_machine_back_in_view_brings_its_pods_along() -> None:
    """After a verdict (a partition) or a withdrawal, a machine's next run starts afresh:
    what its first records list counts as brought along."""
    view = MachineView()
    view.apply(with_tasks(KEY_A, T0), T0)
    view.apply(with_tasks(KEY_A, T0 + 5), T0 + 5)
    view.dead(KEY_A.peer_id, T0 + 5, T0 + 20)
    view.apply(with_tasks(KEY_A, T0 + 100, "t-far"), T0 + 100)
    assert view.listed_on_arrival(KEY_A.peer_id, "t-far", 10)
    view.withdraw(KEY_A.peer_id, T0 + 101, T0 + 101)
    assert not view.lists(KEY_A.peer_id, "t-far")
    assert not view.listed_on_arrival(KEY_B.peer_id, "t-far", 10)  # never seen
