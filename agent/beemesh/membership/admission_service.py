"""`AdmissionService`: carries out what `membership.admission` decides, on the mesh.

- Serves `/beemesh/admission/1.0.0`: the answer is this machine's certificate and the
  revocations it knows (so an agent that was away learns them from the first peer it meets).
- Asks every new connection the same question; a peer that shows no valid certificate within
  the grace is disconnected and refused for a while (py-libp2p gates connections by IP only, so
  this is the connection gate by Peer ID). A revoked peer is refused before it can open a stream.
- Takes a Revoke (from the tasks topic or a peer's answer): keeps it on disk, drops the
  machine's record (its replicas are healed elsewhere, as for a machine that died) and closes
  its connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from beemesh import cbor, schema, wire
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.membership import revocations_file
from beemesh.membership.admission import Admission, Revocation, revocation
from beemesh.membership.certs import MAX_CERT_BYTES, CertError, check_cert
from beemesh.membership.view import MachineView
from beemesh.mesh.framing import send_request
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics

log = logging.getLogger("beemesh.admission")

ADMISSION_PROTOCOL = "/beemesh/admission/1.0.0"
ASK_AGAIN_S = 1.0  # after an ask that failed (not one that was slow), while the grace lasts
MAX_ANSWER_REVOCATIONS = 10_000
MAX_ANSWER_BYTES = MAX_CERT_BYTES + MAX_ANSWER_REVOCATIONS * 1024
ANSWER = schema.Struct(required={"revoked": schema.ListOf(bytes, MAX_ANSWER_REVOCATIONS)},
                       optional={"cert": bytes})


class AdmissionService:
    def __init__(self, *, admission: Admission, cert: bytes | None, mesh: MeshHost,
                 view: MachineView, state_dir: Path, files: WriteBehind, events: EventLog,
                 metrics: Metrics, revokes: wire.Verifier,
                 on_drop: Callable[[str, str, str, str], None],
                 on_admitted: Callable[[str], None]) -> None:
        """`cert`: this machine's own certificate (None when the fleet does not require one);
        `revokes` checks Revoke envelopes (signature, trusted operator; any age);
        `on_admitted(peer)`: a new connection's peer showed a valid certificate (or none is
        required), so membership may learn its record now rather than at its next pass."""
        self.admission = admission
        self.cert = cert
        self.mesh = mesh
        self.view = view
        self.state_dir = state_dir
        self.files = files
        self.events = events
        self.metrics = metrics
        self.revokes = revokes
        self.on_drop = on_drop
        self.on_admitted = on_admitted
        metrics.describe("connections_refused", "connections closed by admission", "reason")
        mesh.handle(ADMISSION_PROTOCOL, self._answer, unadmitted=True)

    # ---- revocations -----------------------------------------------------------------------

    def load(self) -> None:
        for item in revocations_file.load(self.state_dir, self.check_revoke):
            self.admission.revoke(item)

    def check_revoke(self, data: bytes) -> Revocation:
        return revocation(self.revokes.authenticate(data), self.revokes.trusted_operators())

    def on_revoke(self, env: wire.Envelope) -> None:
        """A verified Revoke from the tasks topic."""
        self.take(revocation(env, self.revokes.trusted_operators()))

    def take(self, item: Revocation) -> None:
        if not self.admission.revoke(item):
            return
        now = time.time()
        revocations_file.save(self.files, self.state_dir, self.admission.revoked.values())
        self.view.withdraw(item.peer_id, now, now)
        self.events.add(now, "Revoked", f"{item.peer_id} revoked by {item.signer}: "
                        f"{item.reason or 'no reason given'}", machine=item.peer_id)
        log.warning("machine %s revoked by %s (%s)", item.peer_id, item.signer,
                    item.reason or "no reason given")

    # ---- streams ---------------------------------------------------------------------------

    async def _answer(self, stream: INetStream) -> None:
        revoked = [r.data for r in list(self.admission.revoked.values())[:MAX_ANSWER_REVOCATIONS]]
        answer: dict[str, object] = {"revoked": revoked}
        if self.cert is not None:
            answer["cert"] = self.cert
        await send_request(stream, cbor2.dumps(answer))
        await stream.close()

    async def _ask(self, peer: str) -> None:
        """Ask until an answer comes or the grace runs out: a peer slow to answer (a busy
        host; 40 agents starting at once on 2 cores took over 5 s) is no unadmitted one, and
        the gate would refuse it for `REFUSE_S` (it cut new agents off their bootstrap)."""
        deadline = time.monotonic() + self.admission.grace_s
        while True:
            left = deadline - time.monotonic()
            try:
                data = await self.mesh.ask(peer, ADMISSION_PROTOCOL, None, MAX_ANSWER_BYTES,
                                           max(0.1, left))
                answer = cbor.loads(data)
                schema.check(answer, ANSWER, "answer")
                break
            except (schema.SchemaError, cbor.CBORError) as e:
                self.on_drop("admission", peer, "malformed", f"admission answer: {e}")
                return
            except trio.TooSlowError:
                log.info("%s did not answer for its certificate within %.0f s", peer,
                         self.admission.grace_s)
                return
            except Exception as e:  # reset, refused: again while the grace lasts
                log.debug("could not ask %s for its certificate: %s", peer, e)
                if left < ASK_AGAIN_S or ID.from_base58(peer) not in self.mesh.connected():
                    return
                await trio.sleep(ASK_AGAIN_S)
        for item in answer["revoked"]:
            try:
                self.take(self.check_revoke(item))
            except wire.Rejected as e:
                self.on_drop("admission", peer, e.reason, f"revocation from a peer: {e.detail}")
        if not self.admission.required:
            self.on_admitted(peer)
        elif "cert" in answer:
            try:
                cert = self.admission.learn(answer["cert"], time.time())
                if cert.peer_id != peer:
                    raise CertError("unadmitted", f"{peer} showed the certificate of "
                                    f"{cert.peer_id}")
            except CertError as e:
                self.on_drop("admission", peer, "unadmitted", str(e))
                return
            self.on_admitted(peer)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._gate_loop)
            async for peer in self.mesh.connections:
                self.admission.connected(peer, time.time())
                nursery.start_soon(self._ask, peer)

    async def _gate_loop(self) -> None:
        """Close connections of peers past the grace, and of revoked peers, every second."""
        while True:
            now = time.time()
            late = self.admission.overdue(now)
            revoked = [p for p in self.mesh.connected() if p.to_base58() in
                       self.admission.revoked]
            for peer in [*(ID.from_base58(p) for p in late), *revoked]:
                reason = "revoked" if peer in revoked else "unadmitted"
                self.metrics.inc("connections_refused", reason)
                log.info("closing the connection with %s (%s)", peer, reason)
                try:
                    await self.mesh.shun(peer)
                except Exception as e:
                    log.debug("closing %s: %s", peer, e)
            await trio.sleep(1)



def load_own_cert(path: Path, key_peer: str, labels: dict[str, str], required: bool,
                  admission: Admission, now: float) -> bytes | None:
    """This machine's certificate, checked as its peers will check it. When the fleet requires
    admission a missing, unreadable, foreign, expired or too narrow one is a UserError naming
    the fix; otherwise a certificate is optional (carried if good, to ease opting in)."""
    fix = (f"ask the operator for one: `beemesh fleet admit --fleet DIR {key_peer} --out FILE` "
           f"(with --labels for this machine's labels), then put it at {path} or pass --cert")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CERT_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise UserError(f"this fleet requires admission and {path} does not exist; "
                            f"{fix}") from None
        return None
    except OSError as e:
        raise UserError(f"cannot read machine certificate {path} ({e.strerror}); {fix}") from None
    try:
        cert = check_cert(data, admission.operators(), now)
        if cert.peer_id != key_peer:
            raise CertError("unadmitted", f"it admits {cert.peer_id}, not this machine "
                            f"({key_peer})")
        excess = cert.allows(labels)
        if excess:
            raise CertError("labels", f"{excess} (labels given to this agent)")
    except CertError as e:
        if not required:
            log.warning("machine certificate %s is not valid (%s); not carried", path, e)
            return None
        raise UserError(f"machine certificate {path} is not valid: {e}; {fix}") from None
    admission.learn(data, now)
    return data
