"""A WorkloadCert counts only for a pod its machine's record lists; records that arrive before
that record wait for it (sans-IO `holding`, and `Admission` driven with signed messages)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.workplane import sync
from beemesh.workplane.admission import HISTORY_S, Admission, RecordValidator
from beemesh.workplane.holding import HOLD_GRACE_S, Holdings, Waiting
from beemesh.workplane.records import SERVICE_RECORD, WORKLOAD_CERT, ServiceView, dht_key

T0 = 1_700_000_000.0
WID = "deployment/default/web"
MACHINE = KeyPair(b"\x41" * 32)
ROGUE = KeyPair(b"\x42" * 32)
HOST = KeyPair(b"\x61" * 32)
ROGUE_HOST = KeyPair(b"\x62" * 32)
ME = KeyPair(b"\x63" * 32)
REPLICA = KeyPair(b"\x51" * 32)
WEB0 = sync.HeldPod("web-0", WID, 0, "t-one")


def machine(key: KeyPair = MACHINE, host: KeyPair = HOST,
            pods: tuple[sync.HeldPod, ...] = (WEB0,)) -> sync.Machine:
    return sync.Machine(key.peer_id, sync.WorkPlaneHost(host.peer_id, ()), pods)


# --- Holdings ----------------------------------------------------------------------------------


def test_holdings_accepts_only_the_listed_pod_and_task() -> None:
    h = Holdings()
    h.learn([machine()])
    h.check(MACHINE.peer_id, "web-0", WID, 0, "t-one")
    for args in [("web-1", WID, 0, "t-one"), ("web-0", WID, 1, "t-one"),
                 ("web-0", "deployment/default/db", 0, "t-one"), ("web-0", WID, 0, "t-two")]:
        with pytest.raises(wire.Rejected) as e:
            h.check(MACHINE.peer_id, *args)
        assert e.value.reason == "not_held"


def test_holdings_unknown_machine_and_forgetting() -> None:
    h = Holdings()
    with pytest.raises(wire.Rejected) as e:
        h.check(MACHINE.peer_id, "web-0", WID, 0, "t-one")
    assert e.value.reason == "not_held" and "no accepted record" in e.value.detail
    h.learn([machine()])
    h.learn([machine(pods=())])  # the pod stopped: its certificate no longer counts
    with pytest.raises(wire.Rejected):
        h.check(MACHINE.peer_id, "web-0", WID, 0, "t-one")
    assert "not_held" in wire.REJECT_REASONS


# --- Waiting -----------------------------------------------------------------------------------


def not_held() -> None:
    raise wire.Rejected("not_held", "not yet")


def test_waiting_keeps_items_until_taken_or_grace() -> None:
    w: Waiting[str] = Waiting(grace_s=10, max_items=4)
    assert w.add("a", "a1", T0)
    assert w.retry(T0 + 1, lambda _: not_held()) == []  # still waiting
    assert w.add("a", "a2", T0 + 2)  # the newest item of a key, its first arrival's clock
    taken: list[str] = []
    assert w.retry(T0 + 3, taken.append) == []
    assert taken == ["a2"] and len(w) == 0
    w.add("b", "b1", T0)
    assert w.retry(T0 + 9.9, lambda _: not_held()) == []
    [(item, e)] = w.retry(T0 + 10, lambda _: not_held())
    assert item == "b1" and e.reason == "not_held" and len(w) == 0


def test_waiting_other_refusals_leave_at_once() -> None:
    w: Waiting[str] = Waiting()

    def untrusted(_: str) -> None:
        raise wire.Rejected("untrusted", "no")

    w.add("a", "a1", T0)
    assert [e.reason for _, e in w.retry(T0, untrusted)] == ["untrusted"]
    assert len(w) == 0


def test_waiting_is_bounded() -> None:
    w: Waiting[int] = Waiting(max_items=2)
    assert w.add(1, 1, T0) and w.add(2, 2, T0)
    assert not w.add(3, 3, T0)
    assert w.add(1, 11, T0)  # a newer item of a key already waiting still fits


# --- Admission: pub/sub and the DHT ------------------------------------------------------------


def sealed_record(cert_key: KeyPair = MACHINE, ts: float | None = None,
                  **over: Any) -> bytes:
    ts = time.time() if ts is None else ts
    cert = {"machine": cert_key.peer_id, "peer_id": REPLICA.peer_id, "workload_id": WID,
            "ordinal": 0, "pod": "web-0", "task": "t-one"}
    body: dict[str, Any] = {
        "workload_id": WID, "ordinal": 0, "peer_id": REPLICA.peer_id, "pod": "web-0",
        "task": "t-one", "addrs": [], "ports": [], "ready": True, "retiring": False,
        "version": int(ts * 1000), "ttl_s": 15,
        "cert": wire.seal(cert_key, WORKLOAD_CERT.name, cert, ts)}
    body.update(over)
    return wire.seal(REPLICA, SERVICE_RECORD.name, body, ts)


def message(host: KeyPair, data: bytes) -> rpc_pb2.Message:
    return rpc_pb2.Message(from_id=ID.from_base58(host.peer_id).to_bytes(), data=data)


def deliver(a: Admission, host: KeyPair, data: bytes) -> bool:
    ok = a.validate(ID.from_base58(host.peer_id), message(host, data))
    if ok:
        a.handle(message(host, data))
    return ok


def admission(*machines: sync.Machine) -> Admission:
    a = Admission(ME.peer_id, ServiceView())
    a.learn(machines, time.time())
    return a


def test_record_of_a_held_pod_accepted() -> None:
    a = admission(machine())
    assert deliver(a, HOST, sealed_record())
    assert [r.pod for r in a.view.records(time.time())] == ["web-0"]


def test_forged_record_from_a_machine_not_holding_the_pod_refused() -> None:
    """An admitted machine certifies a key for a pod it does not run: refused, and counted
    once the grace is over."""
    a = admission(machine(), machine(ROGUE, ROGUE_HOST, pods=()))
    assert not deliver(a, ROGUE_HOST, sealed_record(ROGUE))
    now = time.time()
    assert a.dropped == {}  # waiting for the rogue's record to list it
    a.learn([machine(), machine(ROGUE, ROGUE_HOST, pods=())], now + 1)
    assert a.dropped == {}
    a.learn([machine(), machine(ROGUE, ROGUE_HOST, pods=())], now + HOLD_GRACE_S)
    assert a.dropped == {"not_held": 1}
    assert a.view.records(now + HOLD_GRACE_S) == []


def test_record_before_its_machine_record_waits_for_it() -> None:
    """Start-up ordering: the record arrives before the machine record listing its pod."""
    a = admission(machine(pods=()))
    now = time.time()
    assert not deliver(a, HOST, sealed_record())
    assert a.view.records(now) == []
    a.learn([machine()], now + 1)  # the next sync brings the machine record
    assert [r.pod for r in a.view.records(now + 1)] == ["web-0"]
    assert a.dropped == {}


def test_own_records_need_no_machine_record() -> None:
    a = admission()
    a.accept(wire.decode(sealed_record()), None, time.time())
    assert len(a.view.records(time.time())) == 1


def test_dht_validator_live_records_must_be_held() -> None:
    a = admission(machine(), machine(ROGUE, ROGUE_HOST, pods=()))
    v = RecordValidator(a)
    key = dht_key(WID, 0)
    v.validate(key, sealed_record())
    with pytest.raises(ValueError, match="not_held"):
        v.validate(key, sealed_record(ROGUE))
    # An expired record is history (the heal epoch): its machine need not hold the pod now.
    v.validate(key, sealed_record(ROGUE, ts=time.time() - 60))
    with pytest.raises(ValueError, match="unknown machine"):
        v.validate(key, sealed_record(KeyPair(b"\x43" * 32), ts=time.time() - 60))
    assert a.dropped == {"not_held": 1, "untrusted": 1}  # counted for the agent's metrics


def test_dht_validator_refuses_a_future_stamp_or_inflated_version() -> None:
    a = admission(machine())
    v = RecordValidator(a)
    key = dht_key(WID, 0)
    with pytest.raises(ValueError, match="stale"):
        v.validate(key, sealed_record(ts=time.time() + 3600))
    with pytest.raises(ValueError, match="version"):
        v.validate(key, sealed_record(version=2**62))


def test_dht_select_orders_by_timestamp_not_version() -> None:
    v = RecordValidator(admission(machine()))
    now = time.time()
    older = sealed_record(ts=now - 5, version=int((now - 5) * 1000))
    newer = sealed_record(ts=now, version=int((now - 60) * 1000))
    assert v.select(dht_key(WID, 0), [older, newer]) == 1
    assert v.select(dht_key(WID, 0), [newer, older]) == 0


def test_dht_keeps_a_service_record_a_while_past_its_ttl_unless_its_workload_is_deleted() -> None:
    """The history that gives a heal its epoch, kept HISTORY_S past the TTL; a deleted
    workload's records go at the next sweep (mesh/dht_expiry.py)."""
    deleted: set[str] = set()
    v = RecordValidator(admission(machine()), deleted.__contains__)
    now = time.time()
    key = dht_key(WID, 0)
    assert v.kept_until(key, sealed_record(ts=now)) == pytest.approx(now + 15 + HISTORY_S,
                                                                     abs=0.01)
    deleted.add(WID)
    assert v.kept_until(key, sealed_record(ts=now)) == 0.0
    assert v.kept_until(key, b"\xa0") == 0.0  # unreadable: never kept
