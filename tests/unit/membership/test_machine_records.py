"""Machine records: the kinds, typed records and entries (their DHT validator: test_dht)."""

from __future__ import annotations

import dataclasses

import pytest
from machine_records_testlib import KEY_A, KEY_B, T0, entry, envelope, record_body

from beemesh import wire
from beemesh.membership.records import (
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    MAX_RECORD_VOLUMES,
    MachineRecord,
    PodSummary,
    RecordError,
    entry_from_envelope,
    worth_announcing,
)
from beemesh.workplane.sync import WorkPlaneHost


def test_record_body_matches_kind_schema() -> None:
    """The helper builds what the real verifier accepts, so the tests use realistic records."""
    verifier = wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict)
    data = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A, cordoned=True), T0)
    assert verifier.check(data, T0, origin=KEY_A.public_key).body["cordoned"] is True
    assert MACHINE_RECORD.signer == wire.MACHINE
    assert MACHINE_WITHDRAW.signer == wire.MACHINE


def test_entry_from_envelope() -> None:
    e = entry(KEY_A, T0)
    assert e.peer_id == KEY_A.peer_id
    assert e.ts == T0
    assert e.record.arch == "aarch64"


def test_entry_rejects_peer_id_not_matching_signer() -> None:
    body = record_body(KEY_A)
    body["peer_id"] = KEY_B.peer_id  # A claims to be B
    with pytest.raises(RecordError):
        entry_from_envelope(envelope(KEY_A, T0, body))


def test_a_record_with_a_ttl_is_refused_by_the_schema() -> None:
    """Records no longer carry a TTL (liveness decides): an unknown field is refused."""
    verifier = wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict)
    data = wire.seal(KEY_A, MACHINE_RECORD.name, record_body(KEY_A, ttl_s=10), T0)
    with pytest.raises(wire.Rejected) as e:
        verifier.check(data, T0)
    assert e.value.reason == "schema"


def test_worth_announcing_ignores_small_moves_of_free_memory() -> None:
    rec = MachineRecord.from_body(record_body(KEY_A))
    cap = rec.capacity
    assert worth_announcing(None, rec)
    assert not worth_announcing(rec, rec)
    small = dataclasses.replace(cap, memory_available_bytes=cap.memory_available_bytes - 100)
    assert not worth_announcing(rec, dataclasses.replace(rec, capacity=small))
    big = dataclasses.replace(cap, memory_available_bytes=cap.memory_available_bytes
                              - cap.memory_bytes // 16)
    assert worth_announcing(rec, dataclasses.replace(rec, capacity=big))
    assert worth_announcing(rec, dataclasses.replace(rec, cordoned=True))
    assert worth_announcing(rec, dataclasses.replace(rec, labels={"zone": "b"}))


# --- MachineEntry.to_dict -----------------------------------------------------------------


def test_to_dict() -> None:
    e = entry(KEY_A, T0)
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
    assert d["self"] is True


def test_to_dict_self_only_for_own_id() -> None:
    e = entry(KEY_A, T0)
    assert e.to_dict(T0, self_id=KEY_B.peer_id)["self"] is False
    assert e.to_dict(T0, self_id="")["self"] is False


def test_to_dict_cordoned_and_clamped_ages() -> None:
    body = record_body(KEY_A, cordoned=True)
    e = entry_from_envelope(envelope(KEY_A, T0 + 5, body))
    d = e.to_dict(T0, self_id="")
    assert d["cordoned"] is True
    assert d["age_s"] == 0.0  # future timestamp: never a negative age


def test_to_dict_copies_labels() -> None:
    e = entry(KEY_A, T0)
    d = e.to_dict(T0, self_id="")
    d["labels"]["zone"] = "changed"
    assert e.record.labels == {"zone": "a"}


# --- typed records --------------------------------------------------------------------------


def test_typed_record_round_trips_through_the_wire_schema() -> None:
    """What an agent announces (`to_body`) passes the kind's schema and reads back the same."""
    rec = MachineRecord.from_body(record_body(KEY_A))
    rec = MachineRecord(
        **{**rec.__dict__, "pods": (PodSummary("deployment/default/web", 1, "t1", "web-1",
                                               "running", T0, ready=True, peer="12D3KooWx"),
                                    PodSummary("statefulset/default/db", 0, "t2", "db-0",
                                               "exited", T0 - 5, retiring=True)),
           "cordoned": True, "draining": True,
           "workplane": WorkPlaneHost("12D3KooWwp", ("/ip4/10.0.0.1/tcp/4002",)),
           "volumes": (("statefulset/default/db", 0), ("statefulset/default/db", 2)),
           "host_path_roots": ("/srv/data",)})
    data = wire.seal(KEY_A, MACHINE_RECORD.name, rec.to_body(), T0)
    env = wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict).check(data, T0)
    back = entry_from_envelope(env).record
    assert back == rec
    assert back.pods[0].peer == "12D3KooWx" and back.pods[1].peer == ""
    assert "peer" not in rec.to_body()["pods"][1]  # no workload key yet: not announced


def test_old_records_without_optional_fields_read_as_defaults() -> None:
    rec = MachineRecord.from_body(record_body(KEY_B))
    assert (rec.pods, rec.cordoned, rec.draining, rec.workplane, rec.volumes) == (
        (), False, False, None, ())
    assert PodSummary.from_body({"workload": "w", "replica": 0, "task": "t", "pod": "w-0",
                                 "state": "running", "created": T0}).ready is False


@pytest.mark.parametrize("volumes", [
    [{"workload_id": "statefulset/default/db", "ordinal": -1}],
    [{"workload_id": "statefulset/default/db"}],
    [{"workload_id": "w", "ordinal": 0}] * (MAX_RECORD_VOLUMES + 1),
])
def test_a_record_listing_bad_volumes_is_refused(volumes: list[dict[str, object]]) -> None:
    body = {**record_body(KEY_A), "volumes": volumes}
    data = wire.seal(KEY_A, MACHINE_RECORD.name, body, T0)
    with pytest.raises(wire.Rejected):
        wire.Verifier({MACHINE_RECORD.name: MACHINE_RECORD}, dict).check(data, T0)
