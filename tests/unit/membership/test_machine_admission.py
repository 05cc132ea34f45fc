"""Admission (beemesh.membership.admission): who may speak, revocations, connection grace."""

from __future__ import annotations

from typing import Any

import pytest

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.membership.admission import REVOKE, Admission, revocation
from beemesh.membership.certs import CertError, issue_machine_cert
from beemesh.membership.records import MACHINE_RECORD

NOW = 1_800_000_000.0
OPERATOR = KeyPair.generate()
OPERATORS = {OPERATOR.public_key: "ops"}


def admission(required: bool = True) -> Admission:
    return Admission(lambda: OPERATORS, required, grace_s=10, refuse_s=60)


def cert(key: KeyPair, labels: dict[str, str] | None = None, ttl: float = 3600) -> bytes:
    return issue_machine_cert(OPERATOR, key.peer_id, labels or {}, NOW + ttl, NOW)


def message(key: KeyPair, kind: str = "Bid", **body: Any) -> wire.Envelope:
    return wire.decode(wire.seal(key, kind, body, NOW))


def record(key: KeyPair, labels: dict[str, str], cert_data: bytes | None) -> wire.Envelope:
    body: dict[str, Any] = {"peer_id": key.peer_id, "labels": labels}
    if cert_data is not None:
        body["cert"] = cert_data
    return message(key, MACHINE_RECORD.name, **body)


def rejected(a: Admission, env: wire.Envelope, reason: str, now: float = NOW) -> None:
    with pytest.raises(wire.Rejected) as exc:
        a.refuse(env, now)
    assert exc.value.reason == reason, exc.value


def revoke(a: Admission, peer: str) -> bool:
    env = wire.decode(wire.seal(OPERATOR, REVOKE.name, {"peer_id": peer, "reason": "stolen"},
                                NOW))
    return a.revoke(revocation(env, OPERATORS))


def test_an_unadmitted_key_cannot_speak() -> None:
    rejected(admission(), message(KeyPair.generate()), "unadmitted")


def test_operators_always_speak() -> None:
    admission().refuse(message(OPERATOR, "Task"), NOW)


def test_a_record_brings_its_certificate_and_then_its_machine_speaks() -> None:
    a, m = admission(), KeyPair.generate()
    a.refuse(record(m, {"zone": "a"}, cert(m, {"zone": "a"})), NOW)
    a.refuse(message(m), NOW)
    assert a.admitted(m.peer_id, NOW)


def test_a_record_claims_no_label_its_certificate_does_not_grant() -> None:
    a, m = admission(), KeyPair.generate()
    rejected(a, record(m, {"zone": "a", "gpu": "yes"}, cert(m, {"zone": "a"})), "labels")


def test_a_record_with_another_machines_certificate_is_refused() -> None:
    a, m, other = admission(), KeyPair.generate(), KeyPair.generate()
    rejected(a, record(m, {}, cert(other)), "unadmitted")
    rejected(a, message(m), "unadmitted")


def test_a_record_with_a_forged_certificate_is_refused() -> None:
    a, m = admission(), KeyPair.generate()
    forged = issue_machine_cert(m, m.peer_id, {}, NOW + 60, NOW)  # signed by itself
    rejected(a, record(m, {}, forged), "unadmitted")


def test_an_expired_certificate_stops_its_machine() -> None:
    a, m = admission(), KeyPair.generate()
    a.learn(cert(m, ttl=60), NOW)
    a.refuse(message(m), NOW + 59)
    rejected(a, message(m), "unadmitted", now=NOW + 61)


def test_the_longest_lasting_certificate_is_kept() -> None:
    a, m = admission(), KeyPair.generate()
    a.learn(cert(m, ttl=600), NOW)
    a.learn(cert(m, ttl=60), NOW)
    assert a.admitted(m.peer_id, NOW + 300)


def test_a_revoked_machine_is_refused_at_every_level_and_for_good() -> None:
    a, m = admission(), KeyPair.generate()
    a.learn(cert(m), NOW)
    assert revoke(a, m.peer_id)
    assert not revoke(a, m.peer_id)  # already known
    rejected(a, message(m), "revoked")
    rejected(a, record(m, {}, cert(m)), "revoked")
    with pytest.raises(CertError, match="revoked"):
        a.learn(cert(m), NOW)
    assert not a.admitted(m.peer_id, NOW)
    assert not a.allows_connection(m.peer_id, NOW)
    assert a.revoked[m.peer_id].reason == "stolen" and a.revoked[m.peer_id].signer == "ops"


def test_without_admission_every_key_speaks_but_revocations_hold() -> None:
    a, m = admission(required=False), KeyPair.generate()
    a.refuse(message(m), NOW)
    a.refuse(record(m, {"any": "label"}, None), NOW)
    revoke(a, m.peer_id)
    rejected(a, message(m), "revoked")
    assert not a.connected(KeyPair.generate().peer_id, NOW)  # nothing to ask for


def test_a_connection_without_a_certificate_is_closed_after_the_grace() -> None:
    a, quiet, shows = admission(), KeyPair.generate().peer_id, KeyPair.generate()
    assert a.connected(quiet, NOW) and a.connected(shows.peer_id, NOW)
    a.learn(cert(shows), NOW + 5)
    assert a.overdue(NOW + 10) == []
    assert a.overdue(NOW + 11) == [quiet]
    assert a.overdue(NOW + 12) == []
    assert not a.allows_connection(quiet, NOW + 30)
    assert a.allows_connection(quiet, NOW + 72)  # may try again after refuse_s
    assert a.allows_connection(shows.peer_id, NOW + 30)
    assert not a.connected(shows.peer_id, NOW + 30)  # admitted: nothing to ask


def test_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import beemesh.membership.admission as mod

    monkeypatch.setattr(mod, "MAX_PENDING", 3)
    a = admission()
    for i in range(10):
        a.connected(f"peer-{i}", NOW)
    assert len(a._pending) == 3
    assert len(a.overdue(NOW + 11)) == 3


def test_a_certificate_is_checked_once_per_trust_list_and_again_past_its_expiry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every machine record carries its certificate: the same bytes are not checked again
    while the trust list stands, but a new trust list (an operator removed) checks again,
    and so does an expired certificate (which then fails)."""
    from beemesh.membership import admission as module

    checks: list[bytes] = []
    real = module.check_cert

    def counting(data: bytes, operators: Any, now: float) -> Any:
        checks.append(data)
        return real(data, operators, now)
    monkeypatch.setattr(module, "check_cert", counting)
    trusted = {"now": OPERATORS}
    a = Admission(lambda: trusted["now"], True, grace_s=10, refuse_s=60)
    m = KeyPair.generate()
    data = cert(m, ttl=60)
    for _ in range(3):
        a.refuse(record(m, {}, data), NOW)
    assert len(checks) == 1
    trusted["now"] = {}  # the operator left the trust list
    rejected(a, record(m, {}, data), "unadmitted")
    assert len(checks) == 2
    trusted["now"] = OPERATORS
    rejected(a, record(m, {}, data), "unadmitted", now=NOW + 61)  # expired: checked, refused
    assert len(checks) == 3
