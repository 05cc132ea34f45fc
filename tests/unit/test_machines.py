"""Machine records and the MachineView built from them (newest wins, expiry, withdrawal)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from beemesh import machines, wire
from beemesh.identity import KeyPair, peer_id
from beemesh.machines import (
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    MAX_RECORD_TTL_S,
    TOMBSTONE_S,
    MachineEntry,
    MachineView,
    RecordError,
    entry_from_envelope,
)

T0 = 1_700_000_000.0
KEY_A = KeyPair(b"\x0a" * 32)
KEY_B = KeyPair(b"\x0b" * 32)


def record_body(key: KeyPair, ttl_s: int = 10, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "peer_id": key.peer_id,
        "addrs": ["/ip4/10.0.0.1/tcp/4001"],
        "arch": "aarch64",
        "labels": {"zone": "a"},
        "capacity": {
            "cpu_milli": 4000,
            "memory_bytes": 8 << 30,
            "memory_available_bytes": 6 << 30,
        },
        "protocol": machines.PROTOCOL_VERSION,
        "ttl_s": ttl_s,
    }
    body.update(extra)
    return body


def envelope(key: KeyPair, ts: float, body: dict[str, Any] | None = None) -> wire.Envelope:
    return wire.decode(wire.seal(key, MACHINE_RECORD.name, body or record_body(key), ts))


def entry(key: KeyPair, ts: float, now: float | None = None, ttl_s: int = 10) -> MachineEntry:
    return entry_from_envelope(
        envelope(key, ts, record_body(key, ttl_s)), ts if now is None else now
    )


def test_record_body_matches_kind_schema() -> None:
    """The helper builds what the real verifier accepts, so the tests use realistic records."""
    verifier = wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict)
    data = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A, cordoned=True), T0)
    assert verifier.check(data, T0, origin=KEY_A.public_key).body["cordoned"] is True
    assert MACHINE_RECORD.signer == wire.MACHINE
    assert MACHINE_WITHDRAW.signer == wire.MACHINE


def test_entry_from_envelope() -> None:
    e = entry(KEY_A, T0, ttl_s=10)
    assert e.peer_id == KEY_A.peer_id
    assert e.ts == T0
    assert e.expires_at == T0 + 10
    assert e.body["arch"] == "aarch64"


def test_entry_rejects_peer_id_not_matching_signer() -> None:
    body = record_body(KEY_A)
    body["peer_id"] = KEY_B.peer_id  # A claims to be B
    with pytest.raises(RecordError):
        entry_from_envelope(envelope(KEY_A, T0, body), T0)


@pytest.mark.parametrize("ttl", [0, -1, MAX_RECORD_TTL_S + 1, 10**9])
def test_entry_rejects_ttl_out_of_range(ttl: int) -> None:
    with pytest.raises(RecordError):
        entry_from_envelope(envelope(KEY_A, T0, record_body(KEY_A, ttl)), T0)


@pytest.mark.parametrize("ttl", [1, MAX_RECORD_TTL_S])
def test_entry_accepts_ttl_bounds(ttl: int) -> None:
    e = entry_from_envelope(envelope(KEY_A, T0, record_body(KEY_A, ttl)), T0)
    assert e.expires_at == T0 + ttl


def test_future_timestamp_capped_at_now() -> None:
    e = entry(KEY_A, T0 + 25, now=T0, ttl_s=10)
    assert e.ts == T0 + 25
    assert e.expires_at == T0 + 10  # not T0 + 35


def test_past_timestamp_counts_from_ts() -> None:
    e = entry(KEY_A, T0 - 4, now=T0, ttl_s=10)
    assert e.expires_at == T0 + 6


# --- MachineView --------------------------------------------------------------------------


def test_apply_and_get() -> None:
    view = MachineView()
    e = entry(KEY_A, T0)
    assert view.apply(e, T0) is True
    assert view.get(KEY_A.peer_id) == e
    assert view.get(KEY_B.peer_id) is None
    assert view.entries(T0) == [e]


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
    same_ts = entry_from_envelope(
        envelope(KEY_A, T0 + 2, record_body(KEY_A, arch="x86_64")), T0 + 2
    )
    assert view.apply(same_ts, T0 + 2) is False
    assert view.get(KEY_A.peer_id) == new


def test_expired_entry_not_applied() -> None:
    view = MachineView()
    e = entry(KEY_A, T0, ttl_s=10)
    assert view.apply(e, T0 + 10) is False  # expires exactly at ts + ttl
    assert view.get(KEY_A.peer_id) is None
    assert view.apply(e, T0 + 9.9) is True


def test_expiry_at_ts_plus_ttl() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0, ttl_s=10), T0)
    view.apply(entry(KEY_B, T0 + 5, ttl_s=10), T0 + 5)
    assert [e.peer_id for e in view.entries(T0 + 9.99)] == sorted([KEY_A.peer_id, KEY_B.peer_id])
    assert [e.peer_id for e in view.entries(T0 + 10)] == [KEY_B.peer_id]
    assert view.get(KEY_A.peer_id) is None
    assert view.entries(T0 + 15) == []


def test_expire_returns_gone_peers() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0, ttl_s=10), T0)
    view.apply(entry(KEY_B, T0, ttl_s=20), T0)
    assert view.expire(T0 + 5) == []
    assert view.expire(T0 + 10) == [KEY_A.peer_id]
    assert view.expire(T0 + 10) == []
    assert view.expire(T0 + 20) == [KEY_B.peer_id]


def test_refresh_extends_life() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0, ttl_s=10), T0)
    view.apply(entry(KEY_A, T0 + 8, ttl_s=10), T0 + 8)
    assert [e.peer_id for e in view.entries(T0 + 15)] == [KEY_A.peer_id]


def test_future_record_expires_from_now() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0 + 20, now=T0, ttl_s=10), T0)
    assert view.entries(T0 + 9) != []
    assert view.entries(T0 + 10) == []


def test_entries_sorted_by_peer_id() -> None:
    view = MachineView()
    keys = [KeyPair(bytes([i]) * 32) for i in range(1, 8)]
    for k in keys:
        view.apply(entry(k, T0), T0)
    ids = [e.peer_id for e in view.entries(T0)]
    assert ids == sorted(k.peer_id for k in keys)


def test_withdraw_drops_and_tombstones() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0, ttl_s=60), T0)
    assert view.withdraw(KEY_A.peer_id, T0 + 5, T0 + 5) is True
    assert view.get(KEY_A.peer_id) is None
    # The old record (still in the DHT or in flight) must not bring the machine back.
    assert view.apply(entry(KEY_A, T0, now=T0 + 6, ttl_s=60), T0 + 6) is False
    assert view.apply(entry(KEY_A, T0 + 5, now=T0 + 6, ttl_s=60), T0 + 6) is False  # equal ts
    assert view.get(KEY_A.peer_id) is None
    # A record made after the withdrawal (the machine came back) is accepted.
    newer = entry(KEY_A, T0 + 5.5, now=T0 + 6, ttl_s=60)
    assert view.apply(newer, T0 + 6) is True
    assert view.get(KEY_A.peer_id) == newer


def test_withdraw_unknown_peer_still_tombstones() -> None:
    view = MachineView()
    assert view.withdraw(KEY_A.peer_id, T0, T0) is False
    assert view.apply(entry(KEY_A, T0 - 1, now=T0, ttl_s=60), T0) is False
    assert view.apply(entry(KEY_A, T0 + 1, now=T0 + 1, ttl_s=60), T0 + 1) is True


def test_withdraw_only_affects_that_peer() -> None:
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)
    view.apply(entry(KEY_B, T0), T0)
    view.withdraw(KEY_A.peer_id, T0, T0)
    assert [e.peer_id for e in view.entries(T0)] == [KEY_B.peer_id]
    assert view.apply(entry(KEY_B, T0 - 1, now=T0), T0) is False  # older, not tombstoned
    assert view.apply(entry(KEY_B, T0 + 1, now=T0 + 1), T0 + 1) is True


def test_tombstone_forgotten_after_max_ttl_plus_skew() -> None:
    view = MachineView()
    view.withdraw(KEY_A.peer_id, T0, T0)
    # A hand-built long-lived entry older than the withdrawal, so only the tombstone decides.
    old = MachineEntry(KEY_A.peer_id, record_body(KEY_A), T0 - 1, T0 + 10 * TOMBSTONE_S)
    assert view.apply(old, T0 + MAX_RECORD_TTL_S) is False
    view.expire(T0 + TOMBSTONE_S - 1)
    assert view.apply(old, T0 + TOMBSTONE_S - 1) is False  # still remembered
    view.expire(T0 + TOMBSTONE_S)
    assert view.apply(old, T0 + TOMBSTONE_S) is True


def test_tombstone_forgotten_via_entries() -> None:
    view = MachineView()
    view.withdraw(KEY_A.peer_id, T0, T0)
    old = MachineEntry(KEY_A.peer_id, record_body(KEY_A), T0 - 1, T0 + 10 * TOMBSTONE_S)
    view.entries(T0 + TOMBSTONE_S + 1)
    assert view.apply(old, T0 + TOMBSTONE_S + 1) is True


# --- MachineEntry.to_dict -----------------------------------------------------------------


def test_to_dict() -> None:
    e = entry(KEY_A, T0, ttl_s=10)
    d = e.to_dict(T0 + 2, self_id=KEY_A.peer_id)
    assert {"peer_id", "arch", "cpu", "memory", "labels", "self"} <= set(d)
    assert d["peer_id"] == KEY_A.peer_id
    assert d["arch"] == "aarch64"
    assert d["cpu"] == 4.0
    assert d["cpu_milli"] == 4000
    assert d["memory"] == 8 << 30
    assert d["memory_available"] == 6 << 30
    assert d["labels"] == {"zone": "a"}
    assert d["addrs"] == ["/ip4/10.0.0.1/tcp/4001"]
    assert d["cordoned"] is False
    assert d["age_s"] == 2.0
    assert d["expires_in_s"] == 8.0
    assert d["self"] is True


def test_to_dict_self_only_for_own_id() -> None:
    e = entry(KEY_A, T0)
    assert e.to_dict(T0, self_id=KEY_B.peer_id)["self"] is False
    assert e.to_dict(T0, self_id="")["self"] is False


def test_to_dict_cordoned_and_clamped_ages() -> None:
    body = record_body(KEY_A, cordoned=True)
    e = entry_from_envelope(envelope(KEY_A, T0 + 5, body), T0)
    d = e.to_dict(T0, self_id="")
    assert d["cordoned"] is True
    assert d["age_s"] == 0.0  # future timestamp: never a negative age
    assert e.to_dict(T0 + 100, self_id="")["expires_in_s"] == 0.0


def test_to_dict_copies_labels() -> None:
    e = entry(KEY_A, T0)
    d = e.to_dict(T0, self_id="")
    d["labels"]["zone"] = "changed"
    assert e.body["labels"] == {"zone": "a"}


# --- membership and quorum ------------------------------------------------------------------

KEY_C = KeyPair(b"\x0c" * 32)
KEY_D = KeyPair(b"\x0d" * 32)
FOUR = (KEY_A, KEY_B, KEY_C, KEY_D)
MEMORY_S = 600.0


def seen(view: MachineView, keys: tuple[KeyPair, ...], ts: float, ttl_s: int = 10) -> None:
    for k in keys:
        assert view.apply(entry(k, ts, ttl_s=ttl_s), ts)


def quorum(view: MachineView, now: float) -> tuple[tuple[int, int], bool, bool]:
    return (view.membership(now, MEMORY_S), view.has_majority(now, MEMORY_S),
            view.outnumbered(now, MEMORY_S))


def test_membership_all_visible() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    assert quorum(view, T0 + 1) == ((4, 4), True, False)


def test_three_of_four_keep_majority_lone_one_outnumbered() -> None:
    big, lone = MachineView(), MachineView()
    seen(big, FOUR, T0)
    seen(lone, FOUR, T0)
    # D is cut off: A, B and C keep hearing each other, D hears only itself.
    seen(big, (KEY_A, KEY_B, KEY_C), T0 + 8)
    seen(lone, (KEY_D,), T0 + 8)
    assert quorum(big, T0 + 9) == ((4, 4), True, False)  # D not expired yet
    assert quorum(big, T0 + 12) == ((3, 4), True, False)  # D still counts as a member
    assert quorum(lone, T0 + 12) == ((1, 4), False, True)


def test_lone_machine_not_outnumbered_while_it_sees_the_others() -> None:
    lone = MachineView()
    seen(lone, FOUR, T0)
    seen(lone, (KEY_D, KEY_A), T0 + 8)
    assert quorum(lone, T0 + 12) == ((2, 4), False, False)


def test_even_split_nobody_has_majority_nobody_outnumbered() -> None:
    left, right = MachineView(), MachineView()
    seen(left, FOUR, T0)
    seen(right, FOUR, T0)
    seen(left, (KEY_A, KEY_B), T0 + 8)
    seen(right, (KEY_C, KEY_D), T0 + 8)
    for view in (left, right):
        assert quorum(view, T0 + 12) == ((2, 4), False, False)


def test_withdrawn_machine_no_longer_counts() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    view.withdraw(KEY_D.peer_id, T0 + 1, T0 + 1)
    assert quorum(view, T0 + 1) == ((3, 3), True, False)
    # Two of the remaining three vanish without withdrawing: A alone is outnumbered.
    seen(view, (KEY_A,), T0 + 8)
    assert quorum(view, T0 + 12) == ((1, 3), False, True)


def test_withdrawn_then_back_counts_again() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    view.withdraw(KEY_D.peer_id, T0 + 1, T0 + 1)
    seen(view, (KEY_D,), T0 + 2)
    assert view.membership(T0 + 3, MEMORY_S) == (4, 4)


def test_vanished_members_forgotten_after_memory() -> None:
    view = MachineView()
    seen(view, FOUR, T0, ttl_s=10)
    t = T0
    while t < T0 + 10 + MEMORY_S + 5:
        t += 5
        seen(view, (KEY_A,), t)
    # B, C, D expired at T0 + 10 and are remembered for MEMORY_S after that.
    assert view.membership(T0 + 10 + MEMORY_S - 1, MEMORY_S) == (1, 4)
    assert view.outnumbered(T0 + 10 + MEMORY_S - 1, MEMORY_S) is True
    assert view.membership(T0 + 10 + MEMORY_S, MEMORY_S) == (1, 1)
    # Forgotten members no longer count: the survivor is a majority of one.
    assert view.has_majority(T0 + 10 + MEMORY_S, MEMORY_S) is True
    assert view.outnumbered(T0 + 10 + MEMORY_S, MEMORY_S) is False


def test_memory_counts_from_last_record_expiry() -> None:
    view = MachineView()
    seen(view, (KEY_A, KEY_B), T0, ttl_s=10)
    seen(view, (KEY_A,), T0 + 5, ttl_s=100)
    seen(view, (KEY_B,), T0 + 5, ttl_s=20)  # B's newest record expires at T0 + 25
    assert view.membership(T0 + 25 + 50, 60) == (1, 2)
    assert view.membership(T0 + 25 + 60, 60) == (1, 1)


def test_empty_view_has_no_majority() -> None:
    view = MachineView()
    assert quorum(view, T0) == ((0, 0), False, False)


def test_machine_dht_validator_refuses_workload_signers_and_foreign_keys() -> None:
    """What a machine stores for the machine DHT: its own record, never a workload key's."""
    from beemesh.agent import MachineRecordValidator, machine_dht_key

    workload_peers: set[str] = set()

    def refuse(env: wire.Envelope) -> None:
        if peer_id(env.sender) in workload_peers:
            raise wire.Rejected("wrong_plane", "signed by a workload key")

    validator = MachineRecordValidator(
        wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict), refuse)
    now = time.time()
    data = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A, ttl_s=60), now)
    validator.validate(machine_dht_key(KEY_A.peer_id), data)
    with pytest.raises(ValueError, match="another key"):
        validator.validate(machine_dht_key(KEY_B.peer_id), data)
    expired = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A, ttl_s=5), now - 10)
    with pytest.raises(ValueError, match="expired"):
        validator.validate(machine_dht_key(KEY_A.peer_id), expired)
    workload_peers.add(KEY_A.peer_id)  # the same key, now known as a workload's
    with pytest.raises(ValueError, match="workload key"):
        validator.validate(machine_dht_key(KEY_A.peer_id), data)
