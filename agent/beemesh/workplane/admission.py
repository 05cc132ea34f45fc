"""What a work plane accepts from other work planes: hosts, records, withdrawals.

It admits only the work-plane hosts that live machine records announce (so a machine key, or
anyone else, is refused on its streams), and a ServiceRecord or ServiceWithdraw only when it is
signed by the replica's workload key, carries a certificate the named machine issued for that
key, and (on pub/sub) was published by the work-plane host that machine announced. A
ServiceRecord counts only while that machine's record lists the pod and task it is for
(`holding.py`; one that arrives before the machine record waits up to `HOLD_GRACE_S`).
Whatever it drops is counted by reason and logged once per (host, reason); the agent shows the
counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from beemesh import wire
from beemesh.membership.dht import CheckedValidator
from beemesh.mesh.host import publisher
from beemesh.once import Once
from beemesh.workplane.holding import Holdings, Waiting
from beemesh.workplane.records import (
    KINDS,
    SERVICE_RECORD,
    WORKLOAD_CERT,
    ServiceRecord,
    ServiceView,
    certificate,
    dht_key,
    record_from_envelope,
)
from beemesh.workplane.sync import Machine

log = logging.getLogger("beemesh.workplane")

HISTORY_S = 600.0  # how long the Workload DHT keeps an expired record (RecordValidator)



class NotHeld(wire.Rejected):
    """A record whose certifying machine does not (yet) list its pod: it may wait."""

    def __init__(self, record: ServiceRecord, detail: str) -> None:
        super().__init__("not_held", detail)
        self.record = record


class Admission:
    def __init__(self, me: str, view: ServiceView) -> None:
        """`me`: this work plane's host Peer ID; `view`: where accepted records go."""
        self.me = me
        self.view = view
        self.machines: set[str] = set()
        self.machine_of_host: dict[str, str] = {}  # work-plane host -> the machine announcing it
        self.holdings = Holdings()
        # records refused only as not (yet) held, with the host that published them
        self.waiting: Waiting[tuple[ServiceRecord, str]] = Waiting()
        replay = wire.ReplayGuard()
        self.cert_verifier = wire.Verifier({WORKLOAD_CERT.name: WORKLOAD_CERT}, dict,
                                           replay=replay)
        self.record_verifier = wire.Verifier(KINDS, dict, replay=replay)
        self.dropped: dict[str, int] = {}
        self._once = Once()

    def learn(self, machines: Iterable[Machine], now: float | None = None) -> None:
        """The live machines, where their work planes listen and the pods they hold (from the
        agent's sync); records waiting for their machine's record are tried again."""
        machines = list(machines)
        self.machines = {m.peer_id for m in machines}
        self.machine_of_host = {m.workplane.peer_id: m.peer_id for m in machines if m.workplane}
        self.holdings.learn(machines)
        now = time.time() if now is None else now
        for (_, host), e in self.waiting.retry(now, lambda item: self.admit(item[0], now)):
            self.drop(host, e)

    def allowed(self, host: str) -> bool:
        """Only work-plane hosts announced in live machine records may connect."""
        return host in self.machine_of_host

    # ---- pub/sub --------------------------------------------------------------------------

    def validate(self, _forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """The topic validator: checked before gossipsub relays it; fails closed."""
        host = publisher(msg)
        now = time.time()
        try:
            if host not in self.machine_of_host and host != self.me:
                raise wire.Rejected("untrusted", "published by a host no machine announced")
            env = self.record_verifier.check(msg.data, now)
            try:
                self.accept(env, host, now, dry_run=True)
            except NotHeld as e:
                rec = e.record
                if not self.waiting.add((rec.workload_id, rec.ordinal, rec.peer_id),
                                        (rec, host), now):
                    raise
                return False  # tried again at the next syncs; counted if it stays refused
        except wire.Rejected as e:
            self.drop(host, e)
            return False
        except Exception as e:  # never let a message take pub/sub down
            self.unhandled(host, e)
            return False
        return True

    def handle(self, msg: rpc_pb2.Message) -> None:
        """A message the topic validator let through: applied to the view; never raises."""
        host = publisher(msg)
        if host == self.me:
            return  # our own records went into the view when we published them
        try:
            self.accept(wire.decode(msg.data), host, time.time())
        except wire.Rejected as e:  # the host map changed since validation
            self.drop(host, e)
        except Exception as e:  # fail closed: one message never stops the others
            self.unhandled(host, e)

    def accept(self, env: wire.Envelope, host: str | None, now: float,
               dry_run: bool = False) -> None:
        """Check a verified envelope's certificate against the host that published it (None:
        our own), then apply it to the view."""
        if host == self.me:
            host = None
        if env.kind == SERVICE_RECORD.name:
            rec = record_from_envelope(env, self.cert_verifier, now, self.machine_of_host.get,
                                       host)
            if host is None:  # ours: our agent checked the pod runs here when it certified
                self.view.apply(rec, now)
            else:
                self.admit(rec, now, dry_run)
        else:
            cert = certificate(self.cert_verifier, env.body)
            if host is not None and self.machine_of_host.get(host) != cert.body["machine"]:
                raise wire.Rejected("untrusted", "withdrawal from another machine's work plane")
            if not dry_run:
                self.view.withdraw(env.body["workload_id"], env.body["ordinal"],
                                   env.body["peer_id"], env.ts_ms / 1000, now)

    def admit(self, rec: ServiceRecord, now: float, dry_run: bool = False) -> None:
        """Apply a checked record to the view if its machine holds the pod (`NotHeld`)."""
        self.check_held(rec)
        if not dry_run:
            self.view.apply(rec, now)

    def check_held(self, rec: ServiceRecord) -> None:
        try:
            self.holdings.check(rec.machine, rec.pod, rec.workload_id, rec.ordinal, rec.task)
        except wire.Rejected as e:
            raise NotHeld(rec, e.detail) from None

    def refused_value(self, e: wire.Rejected) -> None:
        """A value refused for the Workload DHT (py-libp2p does not say who sent it)."""
        self.drop("a DHT value", e)

    def drop(self, host: str, e: wire.Rejected) -> None:
        self.dropped[e.reason] = self.dropped.get(e.reason, 0) + 1
        if self._once.first(host, e.reason):
            log.warning("dropped work-plane message from %s: %s (logged once per peer and "
                        "reason)", host, e)

    def unhandled(self, host: str, exc: Exception) -> None:
        """Checking or applying a message raised something unexpected: drop it, count it, log
        the traceback once per host (it is a bug to fix), and carry on."""
        self.dropped["unhandled"] = self.dropped.get("unhandled", 0) + 1
        if self._once.first(host, "unhandled"):
            log.error("dropped work-plane message from %s: %s: %s (logged once per peer)",
                      host, type(exc).__name__, exc, exc_info=exc)

    # ---- the Workload DHT -----------------------------------------------------------------

    def last_task(self, data: bytes) -> str | None:
        """The task of a certified record read from the DHT (expired ones too), or None."""
        try:
            env = self.record_verifier.authenticate(data)
            certificate(self.cert_verifier, env.body)
        except wire.Rejected:
            return None
        return str(env.body["task"])


class RecordValidator(CheckedValidator):
    """Workload DHT values: a signed ServiceRecord with a valid certificate, under its own key,
    never stamped ahead of the clock; while live, held by the machine that certified it.

    Expiry is enforced by readers, not here: the DHT keeps the last record of each ordinal,
    which is how a work plane that never saw a replica learns its task id (the heal epoch).
    An expired record is history: its machine must be known, but need not hold the pod now.
    That history is kept `HISTORY_S` past the record's TTL (a heal is asked within seconds of
    the expiry; past that, every work plane heals the ordinal as an orphan alike), and not at
    all once the fleet has deleted the workload (`deleted`: from the agent's view)."""

    what = "service record"

    def __init__(self, admission: Admission,
                 deleted: Callable[[str], bool] = lambda _workload_id: False) -> None:
        super().__init__(admission.refused_value)
        self.admission = admission
        self.deleted = deleted

    def useful_until(self, key: str, value: bytes) -> float | None:
        env = wire.decode(value)
        if self.deleted(env.body["workload_id"]):
            return 0.0
        return env.ts_ms / 1000 + env.body["ttl_s"] + HISTORY_S

    def check(self, key: str, value: bytes) -> None:
        a = self.admission
        env = a.record_verifier.authenticate(value)
        if env.kind != SERVICE_RECORD.name:
            raise wire.Rejected("unknown_kind", "only ServiceRecords are stored")
        now = time.time()
        rec = record_from_envelope(env, a.cert_verifier, now)
        if key != dht_key(rec.workload_id, rec.ordinal):
            raise wire.Rejected("untrusted", "stored under another replica's key")
        if rec.expires_at > now:
            a.check_held(rec)
        elif rec.machine not in a.machines:
            raise wire.Rejected("untrusted", "vouched for by an unknown machine")

    def select(self, key: str, values: list[bytes]) -> int:
        def newness(v: bytes) -> tuple[int, int, bytes]:
            """As `ServiceRecord.newness`: (ts, version, signer); values were validated."""
            try:
                env = wire.decode(v)
                return (env.ts_ms, int(env.body.get("version", -1)), env.sender)
            except (wire.Rejected, ValueError, TypeError):
                return (-1, -1, b"")

        return max(range(len(values)), key=lambda i: newness(values[i]))

