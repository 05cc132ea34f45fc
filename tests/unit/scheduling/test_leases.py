"""Lease hints in the Machine DHT (beemesh.scheduling.leases): keys and the validator."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from machine_records_testlib import KEY_A, KEY_B, record_body

from beemesh import wire
from beemesh.identity import KeyPair, peer_id
from beemesh.membership.records import MACHINE_RECORD
from beemesh.scheduling.leases import LEASE_NS, LeaseValidator, lease_key
from beemesh.scheduling.messages import LEASE

TASK = "tq6bxhk5ttn3xszoaqlqhv2ihz"


def hint(key: KeyPair, task: str = TASK, expires_in_s: float = 60, *,
         signed_at: float | None = None, **body: Any) -> bytes:
    """A lease hint as an agent publishes it: `key`'s machine holds `task` for a while."""
    now = time.time() if signed_at is None else signed_at
    fields: dict[str, Any] = {"task_id": task, "machine": key.peer_id,
                              "expires_ms": int((time.time() + expires_in_s) * 1000)}
    fields.update(body)
    return wire.seal(key, LEASE.name, fields, now)


REFUSED: list[str] = []  # reasons `on_refused` was told, newest last


def validator(workload_peers: set[str] | None = None) -> LeaseValidator:
    refused = workload_peers or set()

    def refuse(env: wire.Envelope) -> None:
        if peer_id(env.sender) in refused:
            raise wire.Rejected("wrong_plane", "signed by a workload key")

    return LeaseValidator(wire.Verifier({LEASE.name: LEASE}, dict), refuse,
                          lambda e: REFUSED.append(e.reason))


def test_lease_key() -> None:
    assert lease_key(TASK) == f"/{LEASE_NS}/{TASK}"
    assert lease_key("t1") == "/lease/t1"
    assert lease_key("t1") != lease_key("t2")


def test_accepts_a_hint_of_its_own_machine_under_its_task() -> None:
    v = validator()
    v.validate(lease_key(TASK), hint(KEY_A))
    v.validate(lease_key("t2"), hint(KEY_B, "t2"))


def test_accepts_the_same_hint_again_and_an_old_signature() -> None:
    """A stored value is checked again whenever it is served: no replay or clock-skew check."""
    v = validator()
    data = hint(KEY_A)
    v.validate(lease_key(TASK), data)
    v.validate(lease_key(TASK), data)
    v.validate(lease_key(TASK), hint(KEY_A, signed_at=time.time() - 3600))


def test_refuses_another_tasks_key() -> None:
    with pytest.raises(ValueError, match="another task's key"):
        validator().validate(lease_key("t2"), hint(KEY_A))
    with pytest.raises(ValueError, match="another task's key"):
        validator().validate(TASK, hint(KEY_A))  # the bare task id is not its key


@pytest.mark.parametrize("expires_in_s", [-1, -3600, 0])
def test_refuses_an_expired_hint(expires_in_s: float) -> None:
    with pytest.raises(ValueError, match="invalid lease hint: stale: expired"):
        validator().validate(lease_key(TASK), hint(KEY_A, expires_in_s=expires_in_s))
    assert REFUSED[-1] == "stale"  # counted like a dropped message


def test_refuses_a_workload_signer() -> None:
    data = hint(KEY_A)
    validator({KEY_B.peer_id}).validate(lease_key(TASK), data)  # another key is refused
    with pytest.raises(ValueError, match="invalid lease hint: wrong_plane"):
        validator({KEY_A.peer_id}).validate(lease_key(TASK), data)


def test_refuses_a_hint_naming_another_machine() -> None:
    """A machine may only say where its own leases are."""
    with pytest.raises(ValueError, match="invalid lease hint: untrusted"):
        validator().validate(lease_key(TASK), hint(KEY_A, machine=KEY_B.peer_id))


def test_refuses_a_forged_hint() -> None:
    env = wire.decode(hint(KEY_A, expires_in_s=1))
    later = {**env.body, "expires_ms": env.body["expires_ms"] + 3_600_000}
    forged = wire.encode(dataclasses.replace(env, body=later))
    with pytest.raises(ValueError, match="invalid lease hint: bad_signature"):
        validator().validate(lease_key(TASK), forged)
    stolen = wire.encode(dataclasses.replace(env, sender=KEY_B.public_key))  # B claims A's hint
    with pytest.raises(ValueError, match="invalid lease hint: bad_signature"):
        validator().validate(lease_key(TASK), stolen)


def test_refuses_an_unsigned_hint() -> None:
    env = wire.decode(hint(KEY_A))
    unsigned = wire.encode(dataclasses.replace(env, signature=b""))
    with pytest.raises(ValueError, match="invalid lease hint: unsigned"):
        validator().validate(lease_key(TASK), unsigned)


@pytest.mark.parametrize(("data", "reason"), [
    (b"junk", "malformed"),
    (wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A), 1_700_000_000.0),
     "unknown_kind"),
])
def test_refuses_values_that_are_not_lease_hints(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=f"invalid lease hint: {reason}"):
        validator().validate(lease_key(TASK), data)
    assert REFUSED[-1] == reason


@pytest.mark.parametrize("body", [
    {"expires_ms": "soon"},
    {"task_id": 7},
])
def test_refuses_a_hint_off_the_schema(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid lease hint: schema"):
        validator().validate(lease_key(TASK), hint(KEY_A, **body))


def test_a_lease_hint_is_kept_until_it_expires() -> None:
    data = hint(KEY_A, expires_in_s=30)
    assert validator().kept_until(lease_key(TASK), data) == pytest.approx(time.time() + 30,
                                                                           abs=1)
