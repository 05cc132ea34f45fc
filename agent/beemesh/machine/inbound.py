"""What arrives on the machine plane's topics: checked before it is relayed, then routed.

Every message passes `wire.Verifier` inside the gossipsub topic validator (size, shape, schema,
signature, signer, skew, replay), plus the checks of its kind (a Task's embedded operator
signature and consistency; a relayed Delete's inner signature), so an invalid message is
dropped before it is relayed to anyone else: counted under
`beemesh_messages_dropped_total{reason}` and logged once per (peer, reason). Workload keys
never speak on the machine plane. Accepted messages go to the service that owns their kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from beemesh import wire
from beemesh.identity import peer_id, public_key_from_peer_id_bytes
from beemesh.machine.audit_log import Audit
from beemesh.machine.deleting import Deleter
from beemesh.machine.workplane_link import CertifiedKeys
from beemesh.membership.admission import REVOKE, Admission
from beemesh.membership.admission_service import AdmissionService
from beemesh.membership.records import (
    MACHINE_ACCUSE,
    MACHINE_RECORD,
    MACHINE_WITHDRAW,
    RecordError,
)
from beemesh.membership.service import Membership
from beemesh.membership.view import MachineView
from beemesh.mesh.host import publisher
from beemesh.metrics import Metrics
from beemesh.node.cordon import Cordon
from beemesh.once import Once
from beemesh.podconfig.holding import SECRET_WANT, SecretCopies
from beemesh.scheduling.driver import AuctionDriver
from beemesh.scheduling.messages import BID, DEPLOYED, FAILED, LEASE, TASK
from beemesh.scheduling.tasks import check_task
from beemesh.topics import TOPIC_EVENTS, TOPIC_PROPOSALS, TOPIC_TASKS
from beemesh.workloads.messages import (
    CORDON,
    DELETE,
    DRAIN,
    OBJECT_KINDS,
    RELAYED_DELETE,
    WORKLOAD,
    check_object,
    check_workload,
)

log = logging.getLogger("beemesh.inbound")

# Which kinds each topic carries; anything else on a topic is dropped as unknown_kind.
TOPIC_KINDS: dict[str, dict[str, wire.Kind]] = {
    TOPIC_TASKS: {**{k.name: k for k in (TASK, WORKLOAD, DELETE, CORDON, DRAIN,
                                         RELAYED_DELETE, REVOKE)}, **OBJECT_KINDS},
    TOPIC_PROPOSALS: {BID.name: BID},
    TOPIC_EVENTS: {k.name: k for k in (MACHINE_RECORD, MACHINE_WITHDRAW, MACHINE_ACCUSE,
                                       DEPLOYED, FAILED, LEASE, SECRET_WANT)},
}
WORKLOAD_PEERS_REFRESH_S = 1.0


class Drops:
    """Counts every dropped message by reason, and logs it once per (peer, reason)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._once = Once()
        metrics.describe("messages_dropped", "inbound messages dropped, by reason")

    def count(self, topic: str, origin: str, reason: str, detail: str) -> None:
        self.metrics.inc("messages_dropped", reason)
        if self._once.first(origin, reason):
            log.warning("dropped message on %s from %s: %s (logged once per peer and reason)",
                        topic, origin, detail)

    def refused_value(self, e: wire.Rejected) -> None:
        """A value refused for the Machine DHT (py-libp2p does not say who sent it)."""
        self.count("the Machine DHT", "a DHT value", e.reason, e.detail)

    def unhandled(self, topic: str, origin: str, exc: Exception) -> None:
        """Checking or handling a message raised something unexpected: drop it, count it, log
        the traceback once per peer (it is a bug to fix), and carry on."""
        self.metrics.inc("messages_dropped", "unhandled")
        if self._once.first(origin, "unhandled"):
            log.error("dropped message on %s from %s: %s: %s (logged once per peer)", topic,
                      origin, type(exc).__name__, exc, exc_info=exc)


class PlaneGuard:
    """Who may speak on the machine plane (topics, DHT records, lease hints, connections,
    streams): operators and admitted machines (`membership.admission`), and never a workload
    key. The workload keys it knows are the ones this machine certified and those other
    machines' records list."""

    def __init__(self, view: MachineView, certified: CertifiedKeys,
                 admission: Admission) -> None:
        self.view = view
        self.certified = certified
        self.admission = admission
        self._peers: tuple[float, set[str]] = (-WORKLOAD_PEERS_REFRESH_S, set())

    def refuse(self, env: wire.Envelope) -> None:
        """Raise wire.Rejected unless a verified envelope's signer may speak here."""
        self.refuse_workload_signer(env)
        self.admission.refuse(env, time.time())

    def allows_connection(self, peer: str) -> bool:
        return self.admission.allows_connection(peer, time.time())

    def admitted(self, peer: str) -> bool:
        return self.admission.admitted(peer, time.time())

    def refuse_workload_signer(self, env: wire.Envelope) -> None:
        if peer_id(env.sender) in self.workload_peers():
            raise wire.Rejected("wrong_plane", "signed by a workload key; only machine and "
                                "operator keys speak on the machine plane")

    def workload_peers(self) -> set[str]:
        """Workload Peer IDs this machine knows (refreshed at most once a second)."""
        at, peers = self._peers
        if time.monotonic() - at > WORKLOAD_PEERS_REFRESH_S:
            peers = self.certified.peers()
            for entry in self.view.entries():
                peers.update(p.peer for p in entry.record.pods if p.peer)
            self._peers = (time.monotonic(), peers)
        return peers


class Inbound:
    def __init__(self, *, machine: str, verifier_for: Callable[[dict[str, wire.Kind]],
                                                                wire.Verifier],
                 authenticate_workload: Callable[[bytes], wire.Envelope], guard: PlaneGuard,
                 drops: Drops, membership: Membership,
                 driver: AuctionDriver, deleter: Deleter, cordon: Cordon,
                 admitting: AdmissionService, metrics: Metrics, audit: Audit,
                 keep_object: Callable[[bytes, wire.Envelope], object],
                 secrets: SecretCopies) -> None:
        """`audit` keeps each operator request this machine acts on (a Delete; a Cordon or
        Drain of this machine); `keep_object` keeps a Service, ConfigMap or Secret if it is
        the newest (`store.WorkloadStore.add_object`)."""
        self.machine = machine
        self.keep_object = keep_object
        self.secrets = secrets
        self.verifiers = {topic: verifier_for(kinds) for topic, kinds in TOPIC_KINDS.items()}
        self.authenticate_workload = authenticate_workload
        self.guard = guard
        self.drops = drops
        self.membership = membership
        self.driver = driver
        self.deleter = deleter
        self.cordon = cordon
        self.admitting = admitting
        self.metrics = metrics
        self.audit = audit
        metrics.describe("messages_accepted", "inbound messages accepted, by kind", "kind")

    # ---- checks --------------------------------------------------------------------------

    def validator(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        verifier = self.verifiers[topic]

        def validate(_forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                env = verifier.check(msg.data, time.time(), public_key_from_peer_id_bytes(
                    msg.from_id))
                self.guard.refuse(env)
                if env.kind == TASK.name:
                    task = check_task(env, self.authenticate_workload)
                    self.deleter.refuse_stale(task)
                    self.driver.refuse_excess(task)
                elif env.kind == RELAYED_DELETE.name:
                    self.deleter.check_relayed(env)
                elif env.kind == WORKLOAD.name:
                    check_workload(msg.data, env)
                elif env.kind in OBJECT_KINDS:
                    check_object(msg.data, env)
                elif env.kind == BID.name:
                    self.driver.refuse_bid(env)
                elif env.kind == MACHINE_ACCUSE.name:
                    self.membership.refuse_accusation(env, time.time())
            except wire.Rejected as e:
                self.drops.count(topic, publisher(msg), e.reason, e.detail)
                return False
            except Exception as e:  # fail closed: never let a message take pub/sub down
                self.drops.unhandled(topic, publisher(msg), e)
                return False
            self.metrics.inc("messages_accepted", env.kind)
            return True

        return validate

    # ---- routing ---------------------------------------------------------------------------

    async def consume(self, topic: str, sub: Any) -> None:
        while True:
            self.handle(topic, await sub.get())

    def handle(self, topic: str, msg: rpc_pb2.Message) -> None:
        """One message the topic validator let through: routed, and never raises."""
        try:
            env = wire.decode(msg.data)  # already verified by the topic validator
            self.route(env, msg.data)
        except (RecordError, wire.Rejected) as e:  # e.g. a relayed Delete expired meanwhile
            self.drops.count(topic, publisher(msg), getattr(e, "reason", "schema"), str(e))
        except Exception as e:  # fail closed: one message never stops the others
            self.drops.unhandled(topic, publisher(msg), e)

    def route(self, env: wire.Envelope, data: bytes) -> None:
        """Hand a verified message (`data`: as signed) to the service that owns its kind."""
        kind, body = env.kind, env.body
        if kind in (MACHINE_RECORD.name, MACHINE_WITHDRAW.name, MACHINE_ACCUSE.name):
            self.membership.on_message(env, data, time.time())
        elif kind == TASK.name:
            self.driver.on_task(check_task(env, wire.decode))  # signature checked already
        elif kind in (BID.name, DEPLOYED.name, FAILED.name, LEASE.name):
            self.driver.handle(env)
        elif kind == WORKLOAD.name:
            self.audit(env, time.time(), "")
            self.driver.on_workload(data, env)
        elif kind in OBJECT_KINDS:
            self.audit(env, time.time(), "")
            self.keep_object(data, env)
        elif kind == SECRET_WANT.name:
            self.secrets.on_want(env)
        elif kind == DELETE.name:
            self.audit(env, time.time(), "")
            self.deleter.on_delete(env)
        elif kind == RELAYED_DELETE.name:
            delete = self.deleter.check_relayed(env)
            self.audit(delete, time.time(), "")
            self.deleter.on_delete(delete)
        elif kind == REVOKE.name:
            self.audit(env, time.time(), "")
            self.admitting.on_revoke(env)
        elif kind == CORDON.name and body["machine"] == self.machine:
            self.audit(env, time.time(), "")
            self.cordon.set_cordoned(body["cordoned"])
        elif kind == DRAIN.name and body["machine"] == self.machine:
            self.audit(env, time.time(), "")
            self.cordon.set_draining(body["grace_s"], body.get("keep_data", False))

