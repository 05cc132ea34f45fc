"""Scheduling messages: deterministic task ids (with heal epochs) and re-encoded envelopes."""

from __future__ import annotations

import pytest

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.scheduling.messages import TASK, task_id
from beemesh.workloads.messages import DELETE
from beemesh.workplane.records import WORKLOAD_CERT

T0 = 1_700_000_000.0
WID = "deployment/default/web"
GEN = int(T0 * 1000)
OPERATOR = KeyPair(b"\x61" * 32)
MACHINE = KeyPair(b"\x62" * 32)


def test_task_id_deterministic() -> None:
    assert task_id(WID, 0, GEN) == task_id(WID, 0, GEN)
    assert task_id(WID, 0, GEN, "tlost") == task_id(WID, 0, GEN, "tlost")


def test_task_id_shape() -> None:
    tid = task_id(WID, 0, GEN, "tlost")
    assert tid.startswith("t") and len(tid) == 26
    assert tid == tid.lower() and tid.isalnum()


def test_empty_epoch_is_the_apply_task() -> None:
    """An apply's task id (no epoch) is what the 3-argument form always gave."""
    assert task_id(WID, 2, GEN, "") == task_id(WID, 2, GEN)


def test_task_id_varies_with_each_input() -> None:
    ids = {
        task_id(WID, 0, GEN),
        task_id(WID, 1, GEN),
        task_id(WID, 0, GEN + 1),
        task_id("deployment/default/web2", 0, GEN),
        task_id(WID, 0, GEN, "ta"),
        task_id(WID, 0, GEN, "tb"),
        task_id(WID, 0, GEN, "orphan"),
    }
    assert len(ids) == 7


def test_heal_of_a_heal_differs() -> None:
    first = task_id(WID, 0, GEN)
    heal = task_id(WID, 0, GEN, first)
    assert heal != first
    assert task_id(WID, 0, GEN, heal) not in (first, heal)


def test_no_ambiguity_between_fields() -> None:
    # The separator keeps "web" + ordinal 10 apart from "web1" + ordinal 0, etc.
    assert task_id("a", 10, GEN) != task_id("a1", 0, GEN)
    assert task_id(WID, 0, 12, "3") != task_id(WID, 0, 123)


def _verifier() -> wire.Verifier:
    return wire.Verifier({k.name: k for k in (DELETE, TASK, WORKLOAD_CERT)},
                         lambda: {OPERATOR.public_key: "ops"})


@pytest.mark.parametrize("key, kind, body", [
    (OPERATOR, DELETE.name, {"workload_id": WID}),
    (MACHINE, TASK.name, {"task_id": "tx", "workload_id": WID, "ordinal": 0,
                          "origin": MACHINE.peer_id, "workload": b"\x00" * 10,
                          "epoch": "tlost"}),
    (MACHINE, WORKLOAD_CERT.name, {"machine": MACHINE.peer_id, "peer_id": "p",
                                   "workload_id": WID, "ordinal": 3, "pod": "web-3",
                                   "task": "t"}),
])
def test_encode_decode_returns_sealed_bytes(key: KeyPair, kind: str, body: dict) -> None:
    sealed = wire.seal(key, kind, body, T0)
    again = wire.encode(wire.decode(sealed))
    assert again == sealed
    env = _verifier().authenticate(again)
    assert env.body == body and env.sender == key.public_key
    # Passing it on once more still verifies (a Delete relayed in a RelayedDelete, twice).
    assert wire.encode(_verifier().authenticate(again)) == sealed
    assert _verifier().check(again, T0 + 1).kind == kind


def test_encode_of_altered_envelope_fails_verification() -> None:
    env = wire.decode(wire.seal(OPERATOR, DELETE.name, {"workload_id": WID}, T0))
    forged = wire.encode(wire.Envelope(env.version, env.kind, env.sender, env.ts_ms,
                                       env.nonce, {"workload_id": "deployment/default/db"},
                                       env.signature))
    with pytest.raises(wire.Rejected) as e:
        _verifier().authenticate(forged)
    assert e.value.reason == "bad_signature"
