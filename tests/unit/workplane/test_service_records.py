"""Service records: certificate checks on real signed envelopes, and the ServiceView."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.workplane.records import (
    KINDS,
    MAX_RECORD_TTL_S,
    SERVICE_RECORD,
    SERVICE_WITHDRAW,
    WORKLOAD_CERT,
    ServiceRecord,
    ServiceView,
    certificate,
    dht_key,
    record_from_envelope,
)

T0 = 1_700_000_000.0
WID = "deployment/default/web"
MACHINE_A = KeyPair(b"\x41" * 32)
MACHINE_B = KeyPair(b"\x42" * 32)
REPLICA = KeyPair(b"\x51" * 32)  # the certified workload key
OTHER_REPLICA = KeyPair(b"\x52" * 32)
HOST_A = "host-of-machine-a"
HOST_B = "host-of-machine-b"
HOSTS = {HOST_A: MACHINE_A.peer_id, HOST_B: MACHINE_B.peer_id}


def cert_verifier() -> wire.Verifier:
    return wire.Verifier({WORKLOAD_CERT.name: WORKLOAD_CERT}, dict)


def record_verifier() -> wire.Verifier:
    return wire.Verifier(KINDS, dict)


def cert_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"machine": MACHINE_A.peer_id, "peer_id": REPLICA.peer_id,
                            "workload_id": WID, "ordinal": 0, "pod": "web-0", "task": "t-one"}
    body.update(over)
    return body


def make_cert(key: KeyPair = MACHINE_A, ts: float = T0, **over: Any) -> bytes:
    return wire.seal(key, WORKLOAD_CERT.name, cert_body(**over), ts)


def record_body(cert: bytes | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workload_id": WID, "ordinal": 0, "peer_id": REPLICA.peer_id, "pod": "web-0",
        "task": "t-one", "addrs": ["10.0.0.1"],
        "ports": [{"name": "http", "port": 8080, "host_port": 18080, "protocol": "TCP"}],
        "ready": True, "retiring": False, "version": 1, "ttl_s": 15,
        "cert": make_cert() if cert is None else cert,
    }
    body.update(over)
    return body


def signed_record(key: KeyPair = REPLICA, ts: float = T0, cert: bytes | None = None,
                  **over: Any) -> wire.Envelope:
    """A record that passed the record verifier (signature, schema, names_signer)."""
    data = wire.seal(key, SERVICE_RECORD.name, record_body(cert, **over), ts)
    return record_verifier().check(data, ts)


def convert(env: wire.Envelope, now: float = T0, host: str | None = None) -> ServiceRecord:
    return record_from_envelope(env, cert_verifier(), now, HOSTS.get, host)


def refused(env: wire.Envelope, now: float = T0, host: str | None = None) -> wire.Rejected:
    with pytest.raises(wire.Rejected) as e:
        convert(env, now, host)
    assert e.value.reason in wire.REJECT_REASONS
    return e.value


# --- record_from_envelope ----------------------------------------------------------------------


def test_valid_record() -> None:
    rec = convert(signed_record(), T0, host=HOST_A)
    assert rec.workload_id == WID
    assert rec.ordinal == 0
    assert rec.peer_id == REPLICA.peer_id
    assert rec.pod == "web-0"
    assert rec.task == "t-one"
    assert rec.addrs == ("10.0.0.1",)
    assert rec.ports == ({"name": "http", "port": 8080, "host_port": 18080, "protocol": "TCP"},)
    assert rec.ready is True and rec.retiring is False
    assert rec.version == 1
    assert rec.ts == T0
    assert rec.expires_at == T0 + 15
    assert rec.machine == MACHINE_A.peer_id


def test_valid_record_without_host_check() -> None:
    """Our own records (host None) are not checked against the host map."""
    assert convert(signed_record(), T0, host=None).machine == MACHINE_A.peer_id


def test_record_kinds_signed_by_workload_keys() -> None:
    assert SERVICE_RECORD.signer == wire.WORKLOAD
    assert SERVICE_WITHDRAW.signer == wire.WORKLOAD
    assert WORKLOAD_CERT.signer == wire.MACHINE


def test_record_signed_by_uncertified_key() -> None:
    # Another key signs a record in its own name but presents REPLICA's certificate.
    env = signed_record(key=OTHER_REPLICA, peer_id=OTHER_REPLICA.peer_id)
    e = refused(env)
    assert e.reason == "untrusted" and "another replica or key" in e.detail


def test_record_naming_another_peer_than_its_signer() -> None:
    # The record verifier refuses this already (names_signer); the converter does too, for
    # envelopes that reach it by another road (e.g. decoded from the DHT).
    data = wire.seal(OTHER_REPLICA, SERVICE_RECORD.name, record_body(), T0)
    with pytest.raises(wire.Rejected) as e:
        record_verifier().check(data, T0)
    assert e.value.reason == "untrusted"
    e2 = refused(wire.decode(data))
    assert e2.reason == "untrusted" and "signer" in e2.detail


@pytest.mark.parametrize("field, value", [
    ("ordinal", 1),
    ("workload_id", "deployment/default/other"),
    ("peer_id", OTHER_REPLICA.peer_id),
    ("pod", "web-1"),
    ("task", "t-two"),
])
def test_cert_for_another_replica(field: str, value: Any) -> None:
    env = signed_record(cert=make_cert(**{field: value}))
    e = refused(env)
    assert e.reason == "untrusted"
    assert "certificate is for another" in e.detail


def test_cert_signed_by_other_machine_than_it_names() -> None:
    # Machine B signs a certificate claiming machine A vouches for the key.
    forged = make_cert(key=MACHINE_B, machine=MACHINE_A.peer_id)
    e = refused(signed_record(cert=forged))
    assert e.reason == "untrusted"
    assert "speaks for a peer other than its signer" in e.detail


def test_cert_signed_by_workload_key_itself() -> None:
    forged = make_cert(key=REPLICA, machine=REPLICA.peer_id)
    # Schema-valid and self-consistent: the converter accepts it, so the machine it names
    # must be checked by the caller (host map on pub/sub, fleet membership in the DHT).
    assert convert(signed_record(cert=forged)).machine == REPLICA.peer_id
    e = refused(signed_record(cert=forged), host=HOST_A)
    assert e.reason == "untrusted"


def test_cert_with_bad_signature() -> None:
    raw = bytearray(make_cert())
    raw[raw.index(b"web-0")] ^= 0x01
    e = refused(signed_record(cert=bytes(raw)))
    assert e.reason in ("bad_signature", "malformed")


def test_cert_of_the_wrong_kind() -> None:
    """A ServiceRecord cannot stand in for a WorkloadCert."""
    not_a_cert = wire.seal(MACHINE_A, SERVICE_RECORD.name, record_body(), T0)
    assert refused(signed_record(cert=not_a_cert)).reason == "unknown_kind"


def test_cert_garbage() -> None:
    assert refused(signed_record(cert=b"not cbor at all \xff")).reason == "malformed"


def test_record_published_by_another_machines_host() -> None:
    e = refused(signed_record(), host=HOST_B)
    assert e.reason == "untrusted" and "another machine" in e.detail


def test_record_published_by_unknown_host() -> None:
    assert refused(signed_record(), host="stranger").reason == "untrusted"


def test_record_from_machine_b_accepted_from_host_b() -> None:
    cert = make_cert(key=MACHINE_B, machine=MACHINE_B.peer_id)
    assert convert(signed_record(cert=cert), host=HOST_B).machine == MACHINE_B.peer_id


@pytest.mark.parametrize("ttl", [0, -5, MAX_RECORD_TTL_S + 1])
def test_ttl_out_of_bounds(ttl: int) -> None:
    """Refused by the kind's schema, before the record is read."""
    with pytest.raises(wire.Rejected) as e:
        signed_record(ttl_s=ttl)
    assert e.value.reason == "schema" and "ttl_s" in e.value.detail


@pytest.mark.parametrize("ttl", [1, MAX_RECORD_TTL_S])
def test_ttl_bounds_accepted(ttl: int) -> None:
    assert convert(signed_record(ttl_s=ttl)).expires_at == T0 + ttl


def test_negative_ordinal() -> None:
    with pytest.raises(wire.Rejected) as e:
        signed_record(cert=make_cert(ordinal=0), ordinal=-1)
    assert e.value.reason == "schema" and "ordinal" in e.value.detail


def test_expiry_from_past_timestamp() -> None:
    env = signed_record(ts=T0 - 4)
    assert convert(env, now=T0).expires_at == T0 - 4 + 15


def test_expiry_never_from_a_future_timestamp() -> None:
    env = signed_record(ts=T0 + 20)
    rec = convert(env, now=T0)
    assert rec.ts == T0 + 20
    assert rec.expires_at == T0 + 15


def test_certificate_of_a_withdrawal() -> None:
    body = {"workload_id": WID, "ordinal": 0, "peer_id": REPLICA.peer_id, "cert": make_cert()}
    assert certificate(cert_verifier(), body).body["machine"] == MACHINE_A.peer_id
    with pytest.raises(wire.Rejected):
        certificate(cert_verifier(), {**body, "ordinal": 3})


def test_dht_key_short_and_distinct() -> None:
    long_id = "statefulset/" + "n" * 63 + "/" + "x" * 53
    keys = {dht_key(long_id, o) for o in range(0, 1000, 7)}
    assert len(keys) == len(range(0, 1000, 7))
    assert all(len(k.encode()) < 50 for k in keys)
    assert len(dht_key(long_id, 999).encode()) < 50
    assert dht_key(WID, 0) != dht_key("deployment/default/web2", 0)
    assert dht_key(WID, 0) == dht_key(WID, 0)
    assert dht_key(WID, 0).startswith("/svc/")


def test_to_dict() -> None:
    rec = convert(signed_record(), T0)
    d = rec.to_dict(T0 + 3)
    assert d["workload"] == WID and d["ordinal"] == 0 and d["peer_id"] == REPLICA.peer_id
    assert d["machine"] == MACHINE_A.peer_id
    assert d["age_s"] == 3.0 and d["expires_in_s"] == 12.0
    assert rec.to_dict(T0 + 100)["expires_in_s"] == 0.0


# --- ServiceView -------------------------------------------------------------------------------


def rec(ordinal: int = 0, peer: str = "peer-a", ts: float = T0, version: int = 1,
        ready: bool = True, ttl: float = 15, task: str = "t-one", retiring: bool = False,
        workload_id: str = WID) -> ServiceRecord:
    return ServiceRecord(workload_id=workload_id, ordinal=ordinal, peer_id=peer,
                         pod=f"web-{ordinal}", task=task, addrs=(), ports=(), ready=ready,
                         retiring=retiring, version=version, ts=ts, expires_at=ts + ttl,
                         machine="m")


def test_view_newest_per_slot_by_ts_then_version() -> None:
    view = ServiceView()
    assert view.apply(rec(ts=T0, version=1), T0)
    assert view.apply(rec(ts=T0 + 1, version=1), T0 + 1)  # same version, later
    assert view.records(T0 + 1)[0].ts == T0 + 1
    # A higher version does not outrank a later timestamp (a version cannot be inflated).
    assert not view.apply(rec(ts=T0 + 0.5, version=2**62), T0 + 1)
    assert view.apply(rec(ts=T0 + 1, version=2), T0 + 1)  # same ts: the version decides
    assert view.records(T0 + 1)[0].version == 2
    assert view.apply(rec(ts=T0 + 5, version=1), T0 + 5)  # the next refresh wins
    assert not view.apply(rec(ts=T0 + 5, version=1), T0 + 5)  # the same again
    assert [r.ts for r in view.records(T0 + 5)] == [T0 + 5]


def test_view_expiry() -> None:
    view = ServiceView()
    assert not view.apply(rec(ts=T0, ttl=15), T0 + 15)  # already expired
    assert view.apply(rec(ts=T0, ttl=15), T0 + 14)
    assert len(view.records(T0 + 14.9)) == 1
    assert view.records(T0 + 15) == []
    assert view.ordinal(WID, 0, T0 + 15) == []


def test_view_refresh_keeps_record_alive() -> None:
    view = ServiceView()
    view.apply(rec(ts=T0), T0)
    view.apply(rec(ts=T0 + 10), T0 + 10)
    assert len(view.records(T0 + 20)) == 1


def test_view_withdraw_shadows_older_records() -> None:
    view = ServiceView()
    view.apply(rec(ts=T0), T0)
    view.withdraw(WID, 0, "peer-a", T0 + 2, T0 + 2)
    assert view.records(T0 + 2) == []
    # A late copy of a record made before the withdrawal does not bring it back.
    assert not view.apply(rec(ts=T0 + 1), T0 + 3)
    assert not view.apply(rec(ts=T0 + 2, version=9), T0 + 3)
    assert view.records(T0 + 3) == []
    # The withdrawal is only for that replica instance.
    assert view.apply(rec(ts=T0 + 1, peer="peer-b"), T0 + 3)


def test_view_withdraw_does_not_shadow_newer_records() -> None:
    view = ServiceView()
    view.withdraw(WID, 0, "peer-a", T0, T0)
    assert view.apply(rec(ts=T0 + 1), T0 + 1)
    assert len(view.records(T0 + 1)) == 1


def test_view_late_withdraw_keeps_newer_record() -> None:
    """A withdrawal that arrives after a newer record of the same replica (its work plane
    restarted with the same key) must not remove that newer record."""
    view = ServiceView()
    view.apply(rec(ts=T0 + 5), T0 + 5)
    view.withdraw(WID, 0, "peer-a", T0 + 2, T0 + 6)
    assert [r.ts for r in view.records(T0 + 6)] == [T0 + 5]
    assert view.ready_for(view.records(T0 + 6)[0], T0 + 6) == 1.0  # unbroken since T0 + 5


def test_view_withdrawal_forgotten_after_max_ttl() -> None:
    view = ServiceView()
    view.withdraw(WID, 0, "peer-a", T0, T0)
    # A (hand-built) record older than the withdrawal but still alive.
    old = rec(ts=T0 - 1, ttl=10 * MAX_RECORD_TTL_S)
    assert not view.apply(old, T0 + MAX_RECORD_TTL_S - 1)
    view.expire(T0 + MAX_RECORD_TTL_S)
    assert view.apply(old, T0 + MAX_RECORD_TTL_S)


def test_view_ready_for() -> None:
    view = ServiceView()
    view.apply(rec(ts=T0, ready=False), T0)
    assert view.ready_for(rec(), T0 + 1) == 0.0
    view.apply(rec(ts=T0 + 2, ready=True), T0 + 2)  # first ready sighting
    view.apply(rec(ts=T0 + 4, ready=True), T0 + 4)  # still ready: keeps counting from T0 + 2
    assert view.ready_for(rec(), T0 + 7) == 5.0
    view.apply(rec(ts=T0 + 8, ready=False), T0 + 8)  # a break resets it
    assert view.ready_for(rec(), T0 + 9) == 0.0
    view.apply(rec(ts=T0 + 10, ready=True), T0 + 10)
    assert view.ready_for(rec(), T0 + 12) == 2.0


def test_view_ready_for_counts_from_sighting_not_record_ts() -> None:
    view = ServiceView()
    view.apply(rec(ts=T0, ready=True), T0 + 3)  # heard 3 s after it was made
    assert view.ready_for(rec(), T0 + 4) == 1.0


def test_view_ready_for_reset_by_expiry_and_withdrawal() -> None:
    view = ServiceView()
    view.apply(rec(ts=T0, ttl=5), T0)
    view.expire(T0 + 5)
    assert view.ready_for(rec(), T0 + 5) == 0.0
    view.apply(rec(ts=T0 + 6, ttl=5), T0 + 6)
    assert view.ready_for(rec(), T0 + 7) == 1.0
    view.withdraw(WID, 0, "peer-a", T0 + 8, T0 + 8)
    assert view.ready_for(rec(), T0 + 9) == 0.0


def test_view_ready_for_is_per_instance() -> None:
    view = ServiceView()
    view.apply(rec(peer="peer-a", ts=T0), T0)
    view.apply(rec(peer="peer-b", ts=T0 + 3), T0 + 3)
    assert view.ready_for(rec(peer="peer-a"), T0 + 4) == 4.0
    assert view.ready_for(rec(peer="peer-b"), T0 + 4) == 1.0
    assert view.ready_for(rec(peer="peer-c"), T0 + 4) == 0.0


def test_view_last_task_survives_expiry_and_follows_newest() -> None:
    view = ServiceView()
    assert view.last_task(WID, 0) is None
    view.apply(rec(peer="peer-a", ts=T0, task="t-one"), T0)
    assert view.last_task(WID, 0) == "t-one"
    view.apply(rec(peer="peer-b", ts=T0 + 1, task="t-two"), T0 + 1)
    assert view.last_task(WID, 0) == "t-two"
    # A refresh of the older instance (newer ts) makes it the newest again.
    view.apply(rec(peer="peer-a", ts=T0 + 2, task="t-one"), T0 + 2)
    assert view.last_task(WID, 0) == "t-one"
    view.expire(T0 + 100)
    assert view.records(T0 + 100) == []
    assert view.last_task(WID, 0) == "t-one"
    assert view.last_task(WID, 1) is None


def test_view_last_task_ignores_older_record() -> None:
    view = ServiceView()
    view.apply(rec(peer="peer-b", ts=T0 + 5, task="t-new"), T0 + 5)
    view.apply(rec(peer="peer-a", ts=T0 + 1, task="t-old"), T0 + 5)  # another instance, older
    assert view.last_task(WID, 0) == "t-new"
    assert len(view.ordinal(WID, 0, T0 + 5)) == 2


def test_view_copies_of_one_ordinal_coexist() -> None:
    view = ServiceView()
    view.apply(rec(peer="peer-b", ts=T0), T0)
    view.apply(rec(peer="peer-a", ts=T0), T0)
    view.apply(rec(ordinal=1, peer="peer-c", ts=T0), T0)
    view.apply(rec(peer="peer-x", ts=T0, workload_id="deployment/default/db"), T0)
    assert [r.peer_id for r in view.ordinal(WID, 0, T0)] == ["peer-a", "peer-b"]
    assert [r.peer_id for r in view.ordinal(WID, 1, T0)] == ["peer-c"]
    assert [(r.workload_id, r.ordinal, r.peer_id) for r in view.records(T0)] == [
        ("deployment/default/db", 0, "peer-x"), (WID, 0, "peer-a"), (WID, 0, "peer-b"),
        (WID, 1, "peer-c")]
    assert len(view.records(T0, WID)) == 3


def test_view_forget_workload() -> None:
    view = ServiceView()
    view.apply(rec(peer="peer-a", ts=T0), T0)
    view.apply(rec(ordinal=1, peer="peer-b", ts=T0), T0)
    view.apply(rec(peer="peer-x", ts=T0, workload_id="deployment/default/db", task="t-db"), T0)
    view.forget_workload(WID)
    assert view.records(T0, WID) == []
    assert view.last_task(WID, 0) is None
    assert view.ready_for(rec(peer="peer-a"), T0 + 1) == 0.0
    assert [r.peer_id for r in view.records(T0)] == ["peer-x"]
    assert view.last_task("deployment/default/db", 0) == "t-db"


def test_version_ahead_of_its_own_timestamp_refused() -> None:
    """A version may not be ahead of the record's signed timestamp (ms): an honest work
    plane's version is the time of the last change."""
    ts_ms = int(T0 * 1000)
    assert convert(signed_record(version=ts_ms)).version == ts_ms
    e = refused(signed_record(version=ts_ms + 1))
    assert e.reason == "schema" and "version" in e.detail
    e = refused(signed_record(version=2**62))
    assert e.reason == "schema"


def test_timestamp_ahead_of_the_clock_refused() -> None:
    """Within the skew window a record is believed (expiry still counts from now); beyond it
    it is refused: ordering by timestamp cannot be won by stamping records in the future."""
    assert convert(signed_record(ts=T0 + wire.MAX_CLOCK_SKEW_S), now=T0)
    data = wire.seal(REPLICA, SERVICE_RECORD.name, record_body(), T0 + 3600)
    e = refused(record_verifier().authenticate(data), now=T0)
    assert e.reason == "stale"


def test_view_newness_tiebreak_on_peer() -> None:
    a = rec(peer="peer-a", ts=T0)
    b = dataclasses.replace(a, peer_id="peer-b")
    assert b.newness > a.newness
