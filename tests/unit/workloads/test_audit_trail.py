"""Audit entries from real signed requests, the trail's bounds, and reading a hostile file."""

from __future__ import annotations

import json

import pytest

from beemesh import wire
from beemesh.identity import KeyPair, fingerprint
from beemesh.workloads.audit import (
    ACTIONS,
    MAX_FIELD,
    AuditEntry,
    AuditTrail,
    entry_for,
    parse,
)
from beemesh.workloads.messages import CORDON, DELETE, DRAIN, LOGS_REQUEST, WORKLOAD

T0 = 1_700_000_000.0
OPERATOR = KeyPair(b"\x31" * 32)


def signed(kind: str, body: dict, ts: float = T0) -> wire.Envelope:
    return wire.decode(wire.seal(OPERATOR, kind, body, ts))


def entry(n: int = 0, target: str = "deployment/default/web") -> AuditEntry:
    return AuditEntry(ts=T0 + n, signed_at=T0 + n - 0.5, action="apply", target=target,
                      signer="ops", key="abc", ref=f"ref-{n}")


def test_every_operator_kind_has_an_action() -> None:
    assert {k.name for k in (WORKLOAD, DELETE, CORDON, DRAIN, LOGS_REQUEST)} <= set(ACTIONS)
    assert all(k.signer == wire.OPERATOR for k in (WORKLOAD, DELETE, CORDON, DRAIN,
                                                   LOGS_REQUEST))


def test_entry_names_action_target_signer_and_times() -> None:
    env = signed(CORDON.name, {"machine": "12D3KooWm", "cordoned": False}, ts=T0 - 2)
    e = entry_for(env, "alice", T0)
    assert e is not None
    assert (e.action, e.target, e.signer) == ("cordon", "cordoned=False machine=12D3KooWm",
                                              "alice")
    assert e.key == fingerprint(OPERATOR.public_key)
    assert (e.ts, e.signed_at) == (T0, T0 - 2)
    assert "alice" in e.text and "cordon" in e.text
    apply = entry_for(signed(WORKLOAD.name, {"spec": {"kind": "Deployment"}}), "", T0,
                      "deployment/default/web")
    assert apply is not None and apply.target == "deployment/default/web"
    assert apply.text.endswith(f"by key {apply.key}")  # a key without a name in the list


def test_unnamed_kinds_are_not_audited() -> None:
    assert entry_for(signed("Task", {"task_id": "t"}), "x", T0) is None


def test_long_fields_are_cut() -> None:
    env = signed(LOGS_REQUEST.name, {"pod": "p" * 5000, "follow": True})
    e = entry_for(env, "n" * 5000, T0)
    assert e is not None and len(e.target) == MAX_FIELD and len(e.signer) == MAX_FIELD


def test_one_entry_per_signed_request() -> None:
    """A Delete accepted from the CLI comes back on the topic: one entry."""
    env = signed(DELETE.name, {"workload_id": "deployment/default/web"})
    trail = AuditTrail()
    first, again = entry_for(env, "ops", T0), entry_for(env, "ops", T0 + 1)
    assert first is not None and again is not None
    assert trail.add(first)
    assert not trail.add(again)
    other = entry_for(signed(DELETE.name, {"workload_id": "deployment/default/web"}), "ops", T0)
    assert other is not None and trail.add(other)  # signed again: another request
    assert len(trail) == 2


def test_bounded_by_count_oldest_first() -> None:
    trail = AuditTrail(max_entries=3)
    for n in range(5):
        trail.add(entry(n))
    assert trail.refs() == ["ref-2", "ref-3", "ref-4"]
    assert trail.add(entry(0))  # forgotten, so no longer a duplicate


def test_bounded_by_bytes() -> None:
    size = len(entry(0).to_line())
    trail = AuditTrail(max_bytes=3 * size + 10)
    for n in range(10):
        trail.add(entry(n))
    assert trail.refs() == ["ref-7", "ref-8", "ref-9"]
    big = AuditTrail(max_bytes=10)  # the newest entry is kept even if alone it is too big
    big.add(entry(0))
    assert len(big) == 1


def test_file_round_trip() -> None:
    trail = AuditTrail()
    lines = [trail.add(entry(n)) for n in range(3)]
    entries, problems = parse(b"".join(line for line in lines if line is not None))
    assert entries == [entry(n) for n in range(3)] and problems == []


@pytest.mark.parametrize("line", [
    b"not json", b"\xff\xfe", b"[]", b"{}", b'{"ts": 1}', b"[" * 100_000,
    json.dumps({**entry(9).to_dict(), "ts": "yesterday"}).encode(),
    json.dumps({**entry(9).to_dict(), "ts": True}).encode(),
    json.dumps({**entry(9).to_dict(), "signed_at": 1e400}).encode(),
    json.dumps({**entry(9).to_dict(), "target": "x" * (MAX_FIELD + 1)}).encode(),
    json.dumps({**entry(9).to_dict(), "extra": 1}).encode(),
    json.dumps({**entry(9).to_dict(), "signer": None}).encode(),
])
def test_damaged_lines_skipped_and_named(line: bytes) -> None:
    good = entry(1).to_line()
    entries, problems = parse(good + line + b"\n" + entry(2).to_line())
    assert [e.ref for e in entries] == ["ref-1", "ref-2"]
    assert len(problems) == 1 and problems[0].startswith("line 2:")
