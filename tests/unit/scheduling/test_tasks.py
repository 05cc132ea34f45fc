"""A Task is checked before it is relayed: the embedded workload an operator signed, and the
task consistent with it."""

from __future__ import annotations

from typing import Any

import pytest
from store_testlib import OPERATOR, STRANGER, T0, WID, apply_blob, spec, verifiers

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.scheduling.messages import TASK, task_id
from beemesh.scheduling.tasks import Task, check_task
from beemesh.workloads.messages import MAX_WORKLOAD_BYTES

MACHINE = KeyPair(b"\x71" * 32)
GEN = int(T0 * 1000)
AUTH = verifiers()[0].authenticate


def task_env(blob: bytes | None = None, **over: Any) -> wire.Envelope:
    body: dict[str, Any] = {"task_id": task_id(WID, 1, GEN, "tlost"), "workload_id": WID,
                            "ordinal": 1, "origin": MACHINE.peer_id,
                            "workload": blob if blob is not None else apply_blob(spec(), T0),
                            "epoch": "tlost"}
    body.update(over)
    return wire.decode(wire.seal(MACHINE, TASK.name, body, T0))


def test_a_consistent_task_is_read_whole() -> None:
    task = check_task(task_env(), AUTH)
    assert (task.workload_id, task.ordinal, task.generation, task.epoch) == (WID, 1, GEN, "tlost")
    assert task.origin == MACHINE.peer_id and task.pod == "web-1"
    assert task.request().ordinal == 1 and not task.request().stateful
    assert check_task(wire.decode(wire.seal(MACHINE, TASK.name, task.body(), T0)), AUTH) == task


def test_the_apply_task_has_no_epoch_field() -> None:
    env = task_env(task_id=task_id(WID, 0, GEN), ordinal=0, epoch="")
    task = check_task(env, AUTH)
    assert task.epoch == "" and "epoch" not in task.body()


@pytest.mark.parametrize(("over", "reason"), [
    pytest.param({"workload_id": "deployment/default/other"}, "schema", id="other-workload"),
    pytest.param({"ordinal": 2}, "schema", id="ordinal-beyond-replicas"),
    pytest.param({"ordinal": -1}, "schema", id="negative-ordinal"),
    pytest.param({"task_id": "tmadeup"}, "schema", id="task-id-not-derived"),
    pytest.param({"epoch": "tother"}, "schema", id="another-epoch"),
    pytest.param({"workload": apply_blob(spec(), T0, key=STRANGER)}, "untrusted",
                 id="workload-of-a-stranger"),
    pytest.param({"workload": b"x" * (MAX_WORKLOAD_BYTES + 1)}, "oversized", id="oversized"),
    pytest.param({"workload": b"\xa1garbage"}, "malformed", id="garbage"),
])
def test_bad_tasks_are_rejected(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(wire.Rejected) as e:
        check_task(task_env(**over), AUTH)
    assert e.value.reason == reason


def test_a_workload_that_is_not_a_spec_is_a_schema_error() -> None:
    bad = wire.seal(OPERATOR, "Workload", {"spec": {"kind": "Deployment"}}, T0)
    with pytest.raises(wire.Rejected) as e:
        check_task(task_env(bad), AUTH)
    assert e.value.reason == "schema" and "embedded workload" in e.value.detail


def test_task_record_fields() -> None:
    t = Task("t1", spec(), 0, b"blob", GEN, "m", "")
    assert t.body() == {"task_id": "t1", "workload_id": WID, "ordinal": 0, "origin": "m",
                        "workload": b"blob"}
