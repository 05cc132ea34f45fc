"""The agent <-> work plane contract: each record survives JSON, and a bad message names its
field instead of being half-read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from beemesh.workplane import sync

HOST = sync.WorkPlaneHost("12D3KooWhost", ("/ip4/10.0.0.1/tcp/4002",))
VIEW = sync.AgentView(
    machine="12D3KooWme", addrs=("10.0.0.1",),
    replicas=(sync.Replica("web-0", "deployment/default/web", 0, "t1", "running", True, False,
                           False, (sync.Port("http", 8080, 18080, "TCP"),)),),
    workloads=(sync.Workload("deployment/default/web", 2, False),),
    deleted=frozenset({"deployment/default/old"}),
    machines=(sync.Machine("12D3KooWme", HOST,
                           (sync.HeldPod("web-0", "deployment/default/web", 0, "t1"),)),
              sync.Machine("12D3KooWother", None)),
    statefulset_margin_s=10.0)
REPORT = sync.Report(HOST, ({"workload": "deployment/default/web", "ordinal": 0},),
                     {"web-0": "12D3KooWpeer"}, True, {"untrusted": 3}, 2)


def over_the_wire(data: Any) -> Any:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("record", [
    VIEW, REPORT, sync.CertifyRequest("web-0", "t1", "ab" * 32),
    sync.Certificate(b"\x01\x02", "12D3KooWpeer"), sync.HealRequest("w", 1, "orphan"),
    sync.HealAnswer(True, task_id="t2"), sync.HealAnswer(False, reason="settling"),
    sync.RemoveRequest("web-1", "scaled down"), sync.ViewRequest("v/3", 5),
    sync.ViewAnswer("v/3", VIEW), sync.ViewAnswer("v/3", None),
])
def test_round_trip(record: Any) -> None:
    assert type(record).from_json(over_the_wire(record.to_json())) == record


@pytest.mark.parametrize(("parse", "data", "field"), [
    (sync.AgentView.from_json, {**VIEW.to_json(), "addrs": "10.0.0.1"}, "agent view.addrs"),
    (sync.ViewRequest.from_json, {"have": "v/3", "wait_s": 3600}, "view request.wait_s"),
    (sync.ViewRequest.from_json, {"have": 3, "wait_s": 5}, "view request.have"),
    (sync.ViewAnswer.from_json, {"version": "v/3", "view": {}}, "view answer.view.machine"),
    (sync.AgentView.from_json, {**VIEW.to_json(), "replicas": [{"pod": "x"}]},
     "agent view.replicas[0].workload"),
    (sync.AgentView.from_json, {**VIEW.to_json(), "surprise": 1}, "agent view.surprise"),
    (sync.AgentView.from_json, "not a map", "agent view"),
    (sync.AgentView.from_json, {**VIEW.to_json(), "machines": [
        {"peer_id": "m", "pods": [{"pod": "p", "workload": "w", "ordinal": -1, "task": "t"}]}]},
     "agent view.machines[0].pods[0].ordinal"),
    (sync.Report.from_json, {**REPORT.to_json(), "gated": True}, "report.gated"),
    (sync.Report.from_json, {**REPORT.to_json(), "records": ["x"]}, "report.records[0]"),
    (sync.HealRequest.from_json, {"workload_id": "w", "ordinal": False, "epoch": ""},
     "heal request.ordinal"),
    (sync.CertifyRequest.from_json, {"pod": "p", "public_key": "00"}, "certify request.task"),
    (sync.Certificate.from_json, {"cert": "zz", "peer_id": "p"}, "certificate.cert"),
    (sync.RemoveRequest.from_json, None, "remove request"),
])
def test_bad_messages_name_the_field(parse: Any, data: Any, field: str) -> None:
    with pytest.raises(sync.SyncError) as e:
        parse(data)
    assert str(e.value).startswith(field)


def test_lists_are_bounded() -> None:
    data = {**VIEW.to_json(), "deleted": ["w"] * (sync.MAX_ITEMS + 1)}
    with pytest.raises(sync.SyncError, match="at most"):
        sync.AgentView.from_json(data)


def test_a_long_reason_is_cut() -> None:
    assert len(sync.RemoveRequest.from_json({"pod": "p", "reason": "x" * 1000}).reason) == 300


def test_a_report_changes_its_key_with_what_it_says_not_with_the_records_ages() -> None:
    record = {"workload": "w", "ordinal": 0, "age_s": 1.0, "expires_in_s": 14.0}
    first = sync.Report(HOST, (record,), {}, True)
    later = sync.Report(HOST, ({**record, "age_s": 2.0, "expires_in_s": 13.0},), {}, True)
    assert first.key() == later.key()
    assert first.key() != sync.Report(HOST, ({**record, "ordinal": 1},), {}, True).key()
    assert first.key() != sync.Report(HOST, (record,), {"w-0": "peer"}, True).key()


def test_an_aged_record_is_older_and_nearer_its_expiry() -> None:
    record = {"workload": "w", "age_s": 1.0, "expires_in_s": 4.0}
    assert sync.aged(record, 2.5) == {"workload": "w", "age_s": 3.5, "expires_in_s": 1.5}
    assert sync.aged(record, 10)["expires_in_s"] == 0.0
    assert sync.aged({"workload": "w", "age_s": "x"}, 1) == {"workload": "w", "age_s": "x"}
