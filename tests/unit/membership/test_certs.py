"""Machine certificates (beemesh.membership.certs): who signs, what they grant, until when."""

from __future__ import annotations

import pytest

from beemesh import wire
from beemesh.identity import KeyPair
from beemesh.membership.certs import (
    MACHINE_CERT,
    CertError,
    check_cert,
    enroll,
    issue_enrollment,
    issue_machine_cert,
)

NOW = 1_800_000_000.0
DAY = 86_400.0
OPERATOR = KeyPair.generate()
OPERATORS = {OPERATOR.public_key: "ops"}
MACHINE = KeyPair.generate().peer_id


def refused(data: bytes, reason: str, fragment: str = "", now: float = NOW) -> None:
    with pytest.raises(CertError) as exc:
        check_cert(data, OPERATORS, now)
    assert exc.value.reason == reason, exc.value
    assert fragment in str(exc.value)


def test_an_operator_cert_admits_its_machine_with_its_labels() -> None:
    data = issue_machine_cert(OPERATOR, MACHINE, {"zone": "a"}, NOW + DAY, NOW)
    cert = check_cert(data, OPERATORS, NOW)
    assert (cert.peer_id, dict(cert.labels), cert.expires, cert.signer) == (
        MACHINE, {"zone": "a"}, NOW + DAY, "ops")
    assert cert.data == data
    assert cert.allows({"zone": "a"}) is None
    assert cert.allows({"zone": "b"}) == "label zone=b is not granted by its certificate"
    assert cert.allows({"gpu": "yes"}) is not None


def test_expired_certs_are_refused() -> None:
    data = issue_machine_cert(OPERATOR, MACHINE, {}, NOW + 10, NOW)
    check_cert(data, OPERATORS, NOW + 9)
    refused(data, "expired", "expired 1 s ago", now=NOW + 11)


def test_a_key_outside_the_trust_list_admits_nobody() -> None:
    refused(issue_machine_cert(KeyPair.generate(), MACHINE, {}, NOW + DAY, NOW), "untrusted")


def test_an_altered_cert_is_refused() -> None:
    data = issue_machine_cert(OPERATOR, MACHINE, {"zone": "a"}, NOW + DAY, NOW)
    env = wire.decode(data)
    forged = wire.encode(wire.Envelope(env.version, env.kind, env.sender, env.ts_ms, env.nonce,
                                       {**env.body, "labels": {"zone": "b"}}, env.signature))
    refused(forged, "bad_signature")


def test_malformed_certs_are_refused() -> None:
    refused(b"\xff" * 20, "malformed")
    refused(b"x" * 9000, "oversized")
    refused(issue_machine_cert(OPERATOR, "not-a-peer", {}, NOW + DAY, NOW), "schema")
    refused(wire.seal(OPERATOR, "Bid", {"x": 1}, NOW), "unknown_kind")
    refused(wire.seal(OPERATOR, MACHINE_CERT.name, {"peer_id": MACHINE}, NOW), "schema")


def test_a_site_enrollment_key_admits_machines_of_its_site_only() -> None:
    site = issue_enrollment(OPERATOR, "plant-a", NOW + 30 * DAY, NOW)
    cert = check_cert(enroll(site, MACHINE, {"ssd": "yes"}, NOW + DAY, NOW), OPERATORS, NOW)
    assert dict(cert.labels) == {"ssd": "yes", "site": "plant-a"}
    assert cert.signer.startswith("site plant-a enrollment ") and cert.signer.endswith("(ops)")
    with pytest.raises(CertError, match="admits machines of site plant-a only"):
        enroll(site, MACHINE, {"site": "plant-b"}, NOW + DAY, NOW)


def test_an_enrolled_cert_expires_with_its_enrollment() -> None:
    site = issue_enrollment(OPERATOR, "plant-a", NOW + DAY, NOW)
    cert = check_cert(enroll(site, MACHINE, {}, NOW + 365 * DAY, NOW), OPERATORS, NOW)
    assert cert.expires == NOW + DAY
    refused(cert.data, "expired", "enrollment key of site plant-a expired", now=NOW + 2 * DAY)


def test_an_enrollment_key_cannot_grant_another_site_by_signing_by_hand() -> None:
    site = issue_enrollment(OPERATOR, "plant-a", NOW + DAY, NOW)
    body = {"peer_id": MACHINE, "labels": {"site": "plant-b"}, "expires_ms": int(NOW + 60) * 1000,
            "enrollment": site.cert}
    refused(wire.seal(site.key, MACHINE_CERT.name, body, NOW), "labels", "site plant-a")


def test_an_enrollment_not_signed_by_an_operator_admits_nobody() -> None:
    rogue = issue_enrollment(KeyPair.generate(), "plant-a", NOW + DAY, NOW)
    refused(enroll(rogue, MACHINE, {}, NOW + DAY, NOW), "untrusted")


def test_a_machine_cert_signed_by_another_key_than_its_enrollment_is_refused() -> None:
    site = issue_enrollment(OPERATOR, "plant-a", NOW + DAY, NOW)
    body = {"peer_id": MACHINE, "labels": {"site": "plant-a"}, "expires_ms": int(NOW + 60) * 1000,
            "enrollment": site.cert}
    refused(wire.seal(KeyPair.generate(), MACHINE_CERT.name, body, NOW), "untrusted")
