"""Who may speak on the machine plane: admitted machines, revocations, connection grace (sans-IO).

When the fleet requires admission (`fleet.toml`: `admission = "required"`), a key is a
machine only while this agent holds a valid certificate for it (``certs``): learned from the
machine's record, or from its answer when this agent asks a new connection for it. Every
message, DHT value and stream from a non-operator key that is not an admitted machine is
refused ("unadmitted"), and a connection whose peer shows no valid certificate within
`grace_s` is closed, its peer refused for `refuse_s`. Revocations are operator-signed and
permanent: a revoked Peer ID is refused at every level, whatever certificate it shows, and
never admitted again (the machine is reinstalled with a new key and admitted anew).

Without admission (an older fleet that has not opted in) every key holding the fleet's
network key is a machine, as before; revocations still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from beemesh import schema, wire
from beemesh.identity import peer_id
from beemesh.membership.certs import CertError, MachineCert, check_cert
from beemesh.membership.records import MACHINE_RECORD
from beemesh.mesh.recent import Recent

CONNECT_GRACE_S = 10.0  # a new connection's peer has this long to show a valid certificate
REFUSE_S = 60.0  # then it is refused this long before it may try again
MAX_CERTS = 200_000  # machines whose certificate this agent keeps (a fleet, with headroom)
MAX_PENDING = 4_096  # connections waiting for a certificate at once
MAX_REVOKED = 200_000

# `beemesh revoke`: gossiped on the tasks topic, kept by every agent, passed to late joiners.
REVOKE = wire.Kind("Revoke", wire.OPERATOR, schema.Struct(
    required={"peer_id": str}, optional={"reason": str}))


@dataclass(frozen=True)
class Revocation:
    """A checked operator revocation: `data` is the signed envelope, to keep and pass on."""

    peer_id: str
    reason: str
    signer: str
    at: float
    data: bytes


def revocation(env: wire.Envelope, operators: Mapping[bytes, str]) -> Revocation:
    """A verified Revoke envelope as a Revocation."""
    return Revocation(env.body["peer_id"], env.body.get("reason", ""),
                      operators.get(env.sender, "operator"), env.ts_ms / 1000, wire.encode(env))


class Admission:
    def __init__(self, operators: Callable[[], Mapping[bytes, str]], required: bool, *,
                 grace_s: float = CONNECT_GRACE_S, refuse_s: float = REFUSE_S) -> None:
        self.operators = operators
        self.required = required
        self.grace_s = grace_s
        self.refuse_s = refuse_s
        self.certs = Recent(MAX_CERTS)  # peer -> MachineCert, the least recently learned first
        self.revoked: dict[str, Revocation] = {}
        self._pending = Recent(MAX_PENDING)  # peer -> connected at
        self._refused = Recent(MAX_PENDING)  # peer -> refused until
        # certificate bytes -> (MachineCert, the trust list they were checked under): every
        # machine record carries its certificate, and checking it (two signatures, CBOR) was
        # a fifth of validating the record
        self._checked = Recent(MAX_PENDING)

    # ---- certificates ----------------------------------------------------------------------

    def learn(self, data: bytes, now: float) -> MachineCert:
        """Check a certificate and keep it (the one that lasts longest wins); CertError if it
        admits nobody, or admits a revoked machine."""
        operators = self.operators()
        checked = self._checked.get(data)
        if checked is not None and checked[1] is operators and checked[0].expires > now:
            cert = checked[0]  # these bytes passed under this trust list already
        else:
            cert = check_cert(data, operators, now)
            self._checked.renew(data, (cert, operators))
        if cert.peer_id in self.revoked:
            raise CertError("revoked", f"{cert.peer_id} is revoked")
        held = self.certs.get(cert.peer_id)
        if held is None or held.expires < cert.expires or held.expires <= now:
            self.certs.renew(cert.peer_id, cert)
        self._pending.pop(cert.peer_id, None)
        self._refused.pop(cert.peer_id, None)
        return self.certs[cert.peer_id]

    def cert(self, peer: str, now: float) -> MachineCert | None:
        """The valid certificate held for `peer`, if any."""
        cert = self.certs.get(peer)
        return cert if cert is not None and cert.expires > now else None

    def admitted(self, peer: str, now: float) -> bool:
        if peer in self.revoked:
            return False
        return not self.required or self.cert(peer, now) is not None

    # ---- messages and DHT values -----------------------------------------------------------

    def refuse(self, env: wire.Envelope, now: float) -> None:
        """Raise wire.Rejected unless a verified envelope's signer may speak: an operator of
        the trust list, or an admitted machine. A machine record's own certificate is learned
        first, and the labels it claims must be granted by that certificate."""
        if env.sender in self.operators():
            return
        peer = peer_id(env.sender)
        if peer in self.revoked:
            raise wire.Rejected("revoked", f"{peer} is revoked")
        if not self.required:
            return
        cert = None
        if env.kind == MACHINE_RECORD.name and isinstance(env.body.get("cert"), bytes):
            try:
                cert = self.learn(env.body["cert"], now)
            except CertError as e:
                raise wire.Rejected("unadmitted", f"record of {peer}: {e}") from None
            if cert.peer_id != peer:
                raise wire.Rejected("unadmitted", f"record of {peer} carries the certificate "
                                    f"of {cert.peer_id}")
        cert = cert or self.cert(peer, now)
        if cert is None:
            raise wire.Rejected("unadmitted", f"{env.kind} from {peer}, which shows no valid "
                                "machine certificate")
        if env.kind == MACHINE_RECORD.name:
            claimed = env.body.get("labels")
            excess = cert.allows(claimed) if isinstance(claimed, dict) else "no labels"
            if excess:
                raise wire.Rejected("labels", f"record of {peer}: {excess}")

    # ---- revocations -----------------------------------------------------------------------

    def revoke(self, revocation: Revocation) -> bool:
        """Keep a checked revocation; True if it is new."""
        if revocation.peer_id in self.revoked or len(self.revoked) >= MAX_REVOKED:
            return False
        self.revoked[revocation.peer_id] = revocation
        self.certs.pop(revocation.peer_id, None)
        self._pending.pop(revocation.peer_id, None)
        return True

    # ---- connections -----------------------------------------------------------------------

    def allows_connection(self, peer: str, now: float) -> bool:
        """The connection gate: never a revoked peer, nor one refused a moment ago."""
        if peer in self.revoked:
            return False
        until = self._refused.get(peer)
        if until is not None and until > now:
            return False
        self._refused.pop(peer, None)
        return True

    def connected(self, peer: str, now: float) -> bool:
        """A new connection: True if this agent should ask the peer for its certificate."""
        if not self.required or self.cert(peer, now) is not None:
            return False
        if peer not in self._pending:
            self._pending[peer] = now
        return True

    def overdue(self, now: float) -> list[str]:
        """Peers connected for longer than the grace without a valid certificate: to be
        disconnected, and refused for refuse_s."""
        late = [p for p, since in self._pending.items() if now - since > self.grace_s]
        for peer in late:
            del self._pending[peer]
            self._refused[peer] = now + self.refuse_s
        return late
