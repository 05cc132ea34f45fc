"""Signed values in the Machine DHT (beemesh.membership.dht): keys, validation, selection."""

from __future__ import annotations

import time

import pytest
from machine_records_testlib import FOUR, KEY_A, KEY_B, T0, record_body

from beemesh import wire
from beemesh.identity import peer_id
from beemesh.membership.dht import (
    MACHINE_NS,
    STORED_RECORD_S,
    MachineRecordValidator,
    SignedValueValidator,
    machine_dht_key,
)
from beemesh.membership.records import MACHINE_RECORD


def verifier() -> wire.Verifier:
    return wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict)


def admit_all(env: wire.Envelope) -> None:
    return None


def record(ts: float) -> bytes:
    return wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A), ts)


# --- machine_dht_key ------------------------------------------------------------------------


def test_machine_dht_key_is_the_tail_of_the_peer_id() -> None:
    pid = KEY_A.peer_id
    assert len(pid) > 40  # so the key really drops the common "12D3KooW" head
    assert machine_dht_key(pid) == f"/{MACHINE_NS}/{pid[-40:]}"
    assert machine_dht_key(pid) == "/machine/" + pid[-40:]


def test_machine_dht_keys_fit_py_libp2p_and_stay_distinct() -> None:
    """py-libp2p servers refuse non-multihash keys over 50 bytes."""
    keys = [machine_dht_key(k.peer_id) for k in FOUR]
    assert all(len(key.encode()) < 50 for key in keys)
    assert len(set(keys)) == len(FOUR)


def test_machine_dht_key_of_a_short_id_keeps_it_whole() -> None:
    assert machine_dht_key("12D3KooWshort") == "/machine/12D3KooWshort"


def ignore(_refusal: wire.Rejected) -> None:
    pass


# --- SignedValueValidator.select ------------------------------------------------------------


def test_select_the_newest_signature_time() -> None:
    validator = SignedValueValidator(verifier(), admit_all, ignore)
    key = machine_dht_key(KEY_A.peer_id)
    assert validator.select(key, [record(T0), record(T0 + 5), record(T0 - 5)]) == 1
    assert validator.select(key, [record(T0 + 5), record(T0), record(T0 + 4.999)]) == 0
    assert validator.select(key, [record(T0 - 1), record(T0), record(T0 + 0.001)]) == 2


def test_select_a_single_value() -> None:
    validator = SignedValueValidator(verifier(), admit_all, ignore)
    assert validator.select("/machine/x", [record(T0)]) == 0


@pytest.mark.parametrize("junk", [b"", b"junk", b"\xa0", b"\x80" * 10])
def test_select_undecodable_values_lose(junk: bytes) -> None:
    validator = SignedValueValidator(verifier(), admit_all, ignore)
    key = machine_dht_key(KEY_A.peer_id)
    assert validator.select(key, [junk, record(T0)]) == 1
    assert validator.select(key, [record(0), junk]) == 0  # even to the oldest time there is


def test_authenticate_returns_the_envelope_the_refuse_callback_saw() -> None:
    seen: list[wire.Envelope] = []
    validator = SignedValueValidator(verifier(), seen.append, ignore)
    env = validator.authenticate(record(T0))
    assert seen == [env]
    assert env.body["peer_id"] == KEY_A.peer_id


# --- MachineRecordValidator -----------------------------------------------------------------


def test_machine_dht_validator_refuses_workload_signers_and_foreign_keys() -> None:
    """What a machine stores for the machine DHT: its own record, never a workload key's."""
    workload_peers: set[str] = set()

    def refuse(env: wire.Envelope) -> None:
        if peer_id(env.sender) in workload_peers:
            raise wire.Rejected("wrong_plane", "signed by a workload key")

    refused: list[wire.Rejected] = []
    validator = MachineRecordValidator(
        wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict), refuse, refused.append)
    now = time.time()
    data = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A), now)
    validator.validate(machine_dht_key(KEY_A.peer_id), data)
    with pytest.raises(ValueError, match="another machine's key"):
        validator.validate(machine_dht_key(KEY_B.peer_id), data)
    expired = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A),
                        now - STORED_RECORD_S - 1)
    with pytest.raises(ValueError, match="made too long ago"):
        validator.validate(machine_dht_key(KEY_A.peer_id), expired)
    workload_peers.add(KEY_A.peer_id)  # the same key, now known as a workload's
    with pytest.raises(ValueError, match="workload key"):
        validator.validate(machine_dht_key(KEY_A.peer_id), data)
    assert [e.reason for e in refused] == ["untrusted", "stale", "wrong_plane"]


def test_machine_dht_validator_refuses_junk_and_records_for_another_peer() -> None:
    refused: list[wire.Rejected] = []
    validator = MachineRecordValidator(verifier(), admit_all, refused.append)
    key = machine_dht_key(KEY_A.peer_id)
    with pytest.raises(ValueError, match="invalid machine record: malformed"):
        validator.validate(key, b"junk")
    claims_b = wire.seal(KEY_A, MACHINE_RECORD.name,
                         record_body(KEY_A, peer_id=KEY_B.peer_id), time.time())
    with pytest.raises(ValueError, match="invalid machine record"):
        validator.validate(machine_dht_key(KEY_B.peer_id), claims_b)


# --- kept_until: when the DHT may forget a value (mesh/dht_expiry.py) ------------------------


def test_a_machine_record_is_kept_for_a_while_and_junk_not_at_all() -> None:
    validator = MachineRecordValidator(verifier(), admit_all, ignore)
    now = time.time()
    key = machine_dht_key(KEY_A.peer_id)
    assert validator.kept_until(key, record(now)) == pytest.approx(now + STORED_RECORD_S,
                                                                   abs=0.01)
    assert validator.kept_until(key, b"junk") == 0.0
