"""Late joiners: asking a peer for the signed manifest of a workload it runs.

A machine that joined after an apply never saw its Tasks, so it has no manifest of the
workload, yet it may be the one that must heal it (a watcher) once the machines that ran it
are gone. When a machine record lists a pod of a workload this machine has no manifest of
(and no Delete of), it asks that machine over `/beemesh/manifest/1.0.0`: the request is the
workload id, the answer the operator-signed Workload bytes, checked here like an embedded
Workload (trusted operator, schema, size cap, the workload that was asked for). A peer can
only hand over what an operator signed; it cannot make one up or swap in another workload.

Services, ConfigMaps and Secrets (without values) are in no record, so a machine also asks
one live peer for every such object it keeps (`{"objects": true}`: a CBOR list of
operator-signed messages, newest first, at most OBJECTS_ANSWER_BYTES) once its first peer is in
view and every OBJECTS_EVERY_S after; each is checked and kept like a published one (an object
deleted here stays deleted).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import cbor2
import trio

from beemesh import cbor, wire
from beemesh.events import EventLog
from beemesh.manifest import ManifestError, WorkloadSpec
from beemesh.membership.view import MachineView
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.workloads.messages import MAX_WORKLOAD_BYTES, check_object
from beemesh.workloads.store import WorkloadStore

log = logging.getLogger("beemesh.manifests")

MANIFEST_PROTOCOL = "/beemesh/manifest/1.0.0"
ASK_AGAIN_S = 10.0
TIMEOUT_S = 5.0
OBJECTS_EVERY_S = 60.0
OBJECTS_ANSWER_BYTES = 4 * 1024 * 1024


def wanted(view: MachineView, store: WorkloadStore, machine: str,
           now: float) -> dict[str, str]:
    """Workloads some live machine runs that this one has no manifest or Delete of, and for
    each the machine to ask."""
    out: dict[str, str] = {}
    for entry, pod in view.pods_elsewhere(machine):
        wid = pod.workload_id
        if store.workload(wid) is None and not store.deleted(wid):
            out.setdefault(wid, entry.peer_id)
    return out


def accept(store: WorkloadStore, authenticate: Callable[[bytes], wire.Envelope],
           workload_id: str, data: bytes) -> bool:
    """Keep a manifest a peer sent if an operator signed it and it is the one asked for."""
    if not data:
        return False
    if len(data) > MAX_WORKLOAD_BYTES:
        raise wire.Rejected("oversized", "manifest over the workload size cap")
    env = authenticate(data)
    try:
        spec = WorkloadSpec.from_dict(env.body["spec"])
    except ManifestError as e:
        raise wire.Rejected("schema", f"manifest: {e}") from None
    if spec.workload_id != workload_id:
        raise wire.Rejected("untrusted", f"asked for {workload_id}, got {spec.workload_id}")
    return store.add_workload(data, env) is not None


def objects_answer(store: WorkloadStore) -> bytes:
    """The objects this machine keeps, as signed, newest first up to OBJECTS_ANSWER_BYTES."""
    blobs: list[bytes] = []
    size = 0
    for obj in sorted(store.objects(), key=lambda s: -s.ts):
        if size + len(obj.blob) + 16 > OBJECTS_ANSWER_BYTES:
            break
        blobs.append(obj.blob)
        size += len(obj.blob) + 16
    return cbor2.dumps(blobs)


def accept_objects(store: WorkloadStore, authenticate: Callable[[bytes], wire.Envelope],
                   data: bytes) -> list[str]:
    """Keep the objects a peer sent that an operator signed; the ids of the ones new here.
    Rejected if the answer is not a list of signed objects."""
    try:
        blobs = cbor.loads(data)
    except cbor.CBORError as e:
        raise wire.Rejected("schema", f"objects answer: {e}") from None
    if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
        raise wire.Rejected("schema", "objects answer is not a list of signed objects")
    new = []
    for blob in blobs:
        env = authenticate(blob)
        oid = check_object(blob, env).object_id
        before = store.object(oid)
        kept = store.add_object(blob, env)
        if kept is not None and kept is not before:
            new.append(oid)
    return new


class ManifestExchange:
    def __init__(self, *, machine: str, view: MachineView, store: WorkloadStore,
                 authenticate: Callable[[bytes], wire.Envelope], mesh: MeshHost,
                 events: EventLog,
                 authenticate_object: Callable[[bytes], wire.Envelope]) -> None:
        """`authenticate`: checks an operator-signed Workload (trusted signer, any age);
        `authenticate_object` a Service, ConfigMap or Secret."""
        self.authenticate_object = authenticate_object
        self.machine = machine
        self.view = view
        self.store = store
        self.authenticate = authenticate
        self.mesh = mesh
        self.events = events
        self._asked: dict[str, float] = {}
        mesh.handle(MANIFEST_PROTOCOL, self._serve)

    async def _serve(self, stream: Any) -> None:
        try:
            with trio.fail_after(TIMEOUT_S):
                request = cbor.loads(await read_request(stream, 1024))
                if request.get("objects") is True:
                    await send_request(stream, objects_answer(self.store))
                    return
                stored = self.store.workload(str(request["workload_id"]))
                await send_request(stream, stored.blob if stored is not None else b"")
        except Exception as e:  # garbage or a peer that went away: nothing to answer
            log.debug("manifest request not served: %s", e)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    async def run(self) -> None:
        """Ask for what is missing, each workload at most every ASK_AGAIN_S."""
        objects_at = -OBJECTS_EVERY_S
        async with trio.open_nursery() as nursery:
            while True:
                now = time.time()
                # asked long enough ago to ask again: forgotten (one entry per workload ever
                # asked for would grow with every name the fleet has used)
                self._asked = {w: t for w, t in self._asked.items() if now - t < ASK_AGAIN_S}
                for wid, peer in wanted(self.view, self.store, self.machine, now).items():
                    if wid not in self._asked:
                        self._asked[wid] = now
                        nursery.start_soon(self._ask, peer, wid)
                peers = sorted(self.view.machine_ids() - {self.machine})
                if peers and time.monotonic() - objects_at >= OBJECTS_EVERY_S:
                    objects_at = time.monotonic()
                    nursery.start_soon(self._ask_objects, random.choice(peers))
                await trio.sleep(2)

    async def _ask_objects(self, peer: str) -> None:
        try:
            data = await self.mesh.ask(peer, MANIFEST_PROTOCOL, cbor2.dumps({"objects": True}),
                                       OBJECTS_ANSWER_BYTES + 64, TIMEOUT_S)
            for oid in accept_objects(self.store, self.authenticate_object, data):
                self.events.add(time.time(), "ManifestLearned", f"signed {oid} from {peer}",
                                workload=oid, machine=self.machine)
        except wire.Rejected as e:
            log.warning("objects from %s refused (%s): %s", peer, e.reason, e.detail)
        except Exception as e:  # unreachable peer, timeout, closed stream: ask again later
            log.debug("could not get the objects of %s: %s", peer, e)

    async def _ask(self, peer: str, workload_id: str) -> None:
        try:
            data = await self.mesh.ask(peer, MANIFEST_PROTOCOL,
                                       cbor2.dumps({"workload_id": workload_id}),
                                       MAX_WORKLOAD_BYTES, TIMEOUT_S)
            if accept(self.store, self.authenticate, workload_id, data):
                self.events.add(time.time(), "ManifestLearned", f"signed manifest of "
                                f"{workload_id} from {peer}", workload=workload_id,
                                machine=self.machine)
        except wire.Rejected as e:
            log.warning("manifest of %s from %s refused (%s): %s", workload_id, peer, e.reason,
                        e.detail)
        except Exception as e:  # unreachable peer, timeout, closed stream: ask again later
            log.debug("could not get the manifest of %s from %s: %s", workload_id, peer, e)
