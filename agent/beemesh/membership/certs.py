"""Machine certificates: the operator's grant that makes a key a machine of the fleet (sans-IO).

A `MachineCert` names one Peer ID, the labels that machine may claim and when the grant
expires. It is signed either by an operator key of the trust list, or by a site's enrollment
key: an `EnrollmentCert` (operator-signed: the enrollment key, its site, its expiry) travels
inside the machine certificate, so a site with no link to the operator admits its own machines
(`beemesh fleet admit --enrollment DIR`, `bundle install`). A certificate signed that way
always grants `site=<its site>` and no other site, and expires no later than its enrollment.

Both are ordinary signed envelopes (``wire``), kept as bytes: in `STATE_DIR/machine.cert`, in
the machine's record, in the answer to a peer's certificate request. `check_cert` is the one
reader: everything a receiver needs, or `CertError` naming what is wrong (and the fix when a
person will read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from beemesh import schema, wire
from beemesh.identity import KeyPair, fingerprint, is_peer_id

SITE_LABEL = "site"
MAX_CERT_BYTES = 8 * 1024
MAX_LABELS = 64
DAY_S = 86_400

ENROLLMENT_CERT = wire.Kind(
    "EnrollmentCert", wire.OPERATOR,
    schema.Struct(required={"key": bytes, "site": str, "expires_ms": schema.NON_NEGATIVE}),
)
MACHINE_CERT = wire.Kind(
    "MachineCert", wire.OPERATOR,  # an operator of the trust list, or an enrollment key
    schema.Struct(
        required={"peer_id": str, "labels": schema.MapOf(str, str, max_len=MAX_LABELS),
                  "expires_ms": schema.NON_NEGATIVE},
        optional={"enrollment": bytes},
    ),
)


class CertError(ValueError):
    """A certificate that does not admit its machine; `reason` is a metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class MachineCert:
    """A checked machine certificate."""

    peer_id: str
    labels: Mapping[str, str]
    expires: float  # unix time
    signer: str  # who admitted it: an operator's name, or "site S enrollment <fingerprint>"
    data: bytes  # the signed envelope, to pass on

    def allows(self, labels: Mapping[str, str]) -> str | None:
        """Why a record claiming `labels` claims more than granted, or None."""
        for key, value in sorted(labels.items()):
            if self.labels.get(key) != value:
                return f"label {key}={value} is not granted by its certificate"
        return None


@dataclass(frozen=True)
class Enrollment:
    """A site's enrollment key and its operator-signed certificate."""

    key: KeyPair
    cert: bytes


def issue_machine_cert(operator: KeyPair, peer: str, labels: Mapping[str, str],
                       expires: float, now: float) -> bytes:
    """A certificate signed by an operator key (which must be in the fleet's trust list)."""
    return wire.seal(operator, MACHINE_CERT.name, _cert_body(peer, labels, expires), now)


def issue_enrollment(operator: KeyPair, site: str, expires: float, now: float) -> Enrollment:
    """A new enrollment key for `site`, certified by the operator until `expires`."""
    key = KeyPair.generate()
    body = {"key": key.public_key, "site": site, "expires_ms": int(expires * 1000)}
    return Enrollment(key, wire.seal(operator, ENROLLMENT_CERT.name, body, now))


def enroll(enrollment: Enrollment, peer: str, labels: Mapping[str, str], expires: float,
           now: float) -> bytes:
    """A certificate signed by a site's enrollment key: site=<its site> is always granted."""
    body = wire.decode(enrollment.cert).body
    site = body["site"]
    if labels.get(SITE_LABEL, site) != site:
        raise CertError("labels", f"this enrollment key admits machines of site {site} only; "
                        f"drop {SITE_LABEL}={labels[SITE_LABEL]} from --labels")
    expires = min(expires, body["expires_ms"] / 1000)
    cert = _cert_body(peer, {**labels, SITE_LABEL: site}, expires)
    cert["enrollment"] = enrollment.cert
    return wire.seal(enrollment.key, MACHINE_CERT.name, cert, now)


def _cert_body(peer: str, labels: Mapping[str, str], expires: float) -> dict[str, object]:
    return {"peer_id": peer, "labels": dict(labels), "expires_ms": int(expires * 1000)}


def check_cert(data: bytes, operators: Mapping[bytes, str], now: float) -> MachineCert:
    """The machine certificate in `data`, checked: signature, signer (an operator, or an
    enrollment key an operator certified), site rule and expiry of both."""
    if len(data) > MAX_CERT_BYTES:
        raise CertError("oversized", f"certificate of {len(data)} bytes (at most "
                        f"{MAX_CERT_BYTES})")
    try:
        body = wire.decode(data, MAX_CERT_BYTES).body
        enrollment = body.get("enrollment") if isinstance(body, dict) else None
        if enrollment is None:
            env = _verifier(MACHINE_CERT, operators).authenticate(data)
            signer = operators[env.sender]
        else:
            if not isinstance(enrollment, bytes):
                raise CertError("schema", "enrollment is not a signed certificate")
            site_key, site, signer = _enrollment(enrollment, operators, now)
            env = _verifier(MACHINE_CERT, {site_key: signer}).authenticate(data)
            if env.body["labels"].get(SITE_LABEL) != site:
                raise CertError("labels", f"signed by the enrollment key of site {site} but "
                                f"does not grant {SITE_LABEL}={site}")
    except wire.Rejected as e:
        raise CertError(e.reason, f"certificate refused: {e.detail}") from None
    body = env.body
    if not is_peer_id(body["peer_id"]):
        raise CertError("schema", "certificate names no valid Peer ID")
    expires = body["expires_ms"] / 1000
    if expires <= now:
        raise CertError("expired", f"certificate of {body['peer_id']} expired "
                        f"{_ago(now - expires)} ago")
    return MachineCert(body["peer_id"], dict(body["labels"]), expires, signer, data)


def _enrollment(data: bytes, operators: Mapping[bytes, str],
                now: float) -> tuple[bytes, str, str]:
    env = _verifier(ENROLLMENT_CERT, operators).authenticate(data)
    key, site = env.body["key"], env.body["site"]
    if len(key) != 32:
        raise CertError("schema", "enrollment key is not an Ed25519 public key")
    expires = env.body["expires_ms"] / 1000
    if expires <= now:
        raise CertError("expired", f"the enrollment key of site {site} expired "
                        f"{_ago(now - expires)} ago")
    return key, site, f"site {site} enrollment {fingerprint(key)} ({operators[env.sender]})"


def _verifier(kind: wire.Kind, trusted: Mapping[bytes, str]) -> wire.Verifier:
    return wire.Verifier({kind.name: kind}, lambda: trusted, max_bytes=MAX_CERT_BYTES)


def _ago(seconds: float) -> str:
    return f"{seconds / DAY_S:.1f} days" if seconds >= DAY_S else f"{seconds:.0f} s"
