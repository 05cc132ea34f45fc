"""The agent's event log (beemesh.events): numbered, bounded, read back with `since`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from beemesh.events import Event, EventLog

T0 = 1_700_000_000.0


def test_sequence_numbers_start_at_one_and_count_up() -> None:
    log = EventLog()
    assert log.last_seq == 0
    first = log.add(T0, "TaskSeen", "saw t1", task="t1")
    second = log.add(T0 + 1, "Deployed", "started web-0")
    assert (first.seq, second.seq) == (1, 2)
    assert log.last_seq == 2


def test_add_returns_the_stored_event() -> None:
    log = EventLog()
    event = log.add(T0, "Failed", "web-0 exited 1", task="t1", workload="deployment/default/web",
                    machine="12D3KooWabc")
    assert event == Event(1, T0, "Failed", "web-0 exited 1", task="t1",
                          workload="deployment/default/web", machine="12D3KooWabc")
    assert log.since(0) == [event]


def test_since_returns_only_later_events_in_order() -> None:
    log = EventLog()
    for i in range(5):
        log.add(T0 + i, "Note", f"n{i}")
    assert [e.seq for e in log.since(0)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.since(-1)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.since(3)] == [4, 5]
    assert [e.text for e in log.since(3)] == ["n3", "n4"]
    assert log.since(log.last_seq) == []
    assert log.since(99) == []


def test_since_on_an_empty_log() -> None:
    assert EventLog().since(0) == []


def test_since_is_a_copy() -> None:
    log = EventLog()
    log.add(T0, "Note", "kept")
    log.since(0).clear()
    assert [e.text for e in log.since(0)] == ["kept"]


def test_capacity_drops_the_oldest_but_numbers_keep_counting() -> None:
    log = EventLog(capacity=3)
    for i in range(5):
        log.add(T0 + i, "Note", f"n{i}")
    assert [e.seq for e in log.since(0)] == [3, 4, 5]
    assert log.last_seq == 5
    assert log.add(T0 + 5, "Note", "n5").seq == 6
    assert [e.seq for e in log.since(0)] == [4, 5, 6]
    assert [e.seq for e in log.since(4)] == [5, 6]


def test_default_capacity_is_bounded() -> None:
    log = EventLog()
    for i in range(2001):
        log.add(T0, "Note", str(i))
    events = log.since(0)
    assert len(events) == 2000
    assert events[0].seq == 2
    assert events[-1].seq == 2001


def test_to_dict_has_every_field() -> None:
    log = EventLog()
    event = log.add(T0, "Deleted", "removed web", workload="deployment/default/web",
                    machine="12D3KooWabc")
    assert event.to_dict() == {
        "seq": 1,
        "ts": T0,
        "kind": "Deleted",
        "text": "removed web",
        "task": "",
        "workload": "deployment/default/web",
        "machine": "12D3KooWabc",
        "signer": "",
    }
    assert json.loads(json.dumps(event.to_dict())) == event.to_dict()


def test_ids_default_to_empty() -> None:
    d = EventLog().add(T0, "Note", "hello").to_dict()
    assert (d["task"], d["workload"], d["machine"]) == ("", "", "")


def test_events_are_frozen() -> None:
    event = EventLog().add(T0, "Note", "hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "changed"  # type: ignore[misc]
