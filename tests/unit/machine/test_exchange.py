"""Late joiners keep a manifest a peer sends only if an operator signed it and it was asked for."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest
from store_testlib import OPERATOR, STRANGER, WID, make_store, manifest, verifiers

from beemesh import wire
from beemesh.machine import exchange
from beemesh.manifest import parse_manifests
from beemesh.workloads.messages import DELETE, MAX_WORKLOAD_BYTES, OBJECT_KINDS, SERVICE, WORKLOAD
from beemesh.workloads.store import WorkloadStore


@dataclass
class Machine:
    """The two things `accept` uses: the real store, and the real verifier's check."""

    workload_verifier: wire.Verifier
    store: WorkloadStore


def machine(tmp_path: Path) -> Machine:
    return Machine(verifiers()[0], make_store(tmp_path))


def accept(m: Machine, workload_id: str, data: bytes) -> bool:
    return exchange.accept(m.store, m.workload_verifier.authenticate, workload_id, data)


def signed(key=OPERATOR, name: str = "web", **extra: object) -> bytes:
    (spec,) = parse_manifests(manifest(name), "test.yaml")
    return wire.seal(key, WORKLOAD.name, {"spec": spec.to_dict(), **extra}, time.time())


def test_an_operator_signed_manifest_that_was_asked_for_is_kept(tmp_path: Path) -> None:
    m = machine(tmp_path)
    assert accept(m, WID, signed())
    stored = m.store.workload(WID)
    assert stored is not None and stored.spec.replicas == 2
    assert not accept(m, WID, b""), "an empty answer means the peer has none"


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(signed(STRANGER), "untrusted", id="signed-by-a-stranger"),
    pytest.param(signed(name="other"), "untrusted", id="another-workload-than-asked"),
    pytest.param(b"\xa1garbage", "malformed", id="not-cbor"),
    pytest.param(signed()[:-10], "malformed", id="truncated"),
    pytest.param(b"x" * (MAX_WORKLOAD_BYTES + 1), "oversized", id="oversized"),
    pytest.param(wire.seal(OPERATOR, WORKLOAD.name, {"spec": {"kind": "Deployment"}},
                           time.time()), "schema", id="spec-not-a-workload"),
    pytest.param(wire.seal(OPERATOR, DELETE.name, {"workload_id": WID}, time.time()),
                 "unknown_kind", id="a-delete-not-a-workload"),
])
def test_bad_manifests_from_peers_are_refused_and_nothing_is_stored(
        tmp_path: Path, data: bytes, reason: str) -> None:
    m = machine(tmp_path)
    with pytest.raises(wire.Rejected) as e:
        accept(m, WID, data)
    assert e.value.reason == reason
    assert m.store.workloads() == []
    assert not (tmp_path / "workloads").exists() or not any((tmp_path / "workloads").iterdir())


def test_a_manifest_of_a_deleted_workload_is_not_revived(tmp_path: Path) -> None:
    m = machine(tmp_path)
    old = signed()
    delete = wire.seal(OPERATOR, DELETE.name, {"workload_id": WID}, time.time() + 1)
    assert m.store.add_delete(delete, wire.decode(delete), time.time())
    assert not accept(m, WID, old)
    assert m.store.workload(WID) is None


# ---- Services (in no record: a machine asks a peer for all it keeps) -------------------------

SERVICE_DOC = """
apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def service_blob(name: str = "web", key=OPERATOR, ts: float | None = None) -> bytes:
    (svc,) = parse_manifests(SERVICE_DOC % name, "svc.yaml")
    return wire.seal(key, SERVICE.name, {"spec": svc.to_dict()}, ts or time.time())


def service_auth() -> wire.Verifier:
    return wire.Verifier(OBJECT_KINDS, lambda: {OPERATOR.public_key: "ops"})


def test_a_late_joiner_keeps_the_services_a_peer_keeps(tmp_path: Path) -> None:
    peer, late = make_store(tmp_path / "peer"), make_store(tmp_path / "late")
    for name in ("web", "db"):
        blob = service_blob(name)
        peer.add_object(blob, wire.decode(blob))
    answer = exchange.objects_answer(peer)
    new = exchange.accept_objects(late, service_auth().authenticate, answer)
    assert sorted(new) == ["service/default/db", "service/default/web"]
    assert [s.object_id for s in late.services()] == sorted(new)
    assert exchange.accept_objects(late, service_auth().authenticate, answer) == []  # known


@pytest.mark.parametrize("answer", [
    b"\xa1garbage", cbor2.dumps({"not": "a list"}), cbor2.dumps(["text"]),
    cbor2.dumps([service_blob(key=STRANGER)]),
    cbor2.dumps([wire.seal(OPERATOR, SERVICE.name, {"spec": {"name": "x"}}, time.time())]),
])
def test_a_bad_objects_answer_is_refused(tmp_path: Path, answer: bytes) -> None:
    late = make_store(tmp_path)
    with pytest.raises(wire.Rejected):
        exchange.accept_objects(late, service_auth().authenticate, answer)
    assert late.services() == []


def test_the_answer_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = make_store(tmp_path)
    for i in range(5):
        blob = service_blob(f"s{i}", ts=time.time() + i)
        peer.add_object(blob, wire.decode(blob))
    one = len(service_blob("s0"))
    monkeypatch.setattr(exchange, "OBJECTS_ANSWER_BYTES", 2 * (one + 16))
    assert len(cbor2.loads(exchange.objects_answer(peer))) == 2  # the newest two
