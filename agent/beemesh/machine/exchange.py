"""Late joiners: asking a peer for the signed manifest of a workload it runs.

A machine that joined after an apply never saw its Tasks, so it has no manifest of the
workload, yet it may be the one that must heal it (a watcher) once the machines that ran it
are gone. When a machine record lists a pod of a workload this machine has no manifest of
(and no Delete of), it asks that machine over `/beemesh/manifest/1.0.0`: the request is the
workload id, the answer the operator-signed Workload bytes, checked here like an embedded
Workload (trusted operator, schema, size cap, the workload that was asked for). A peer can
only hand over what an operator signed; it cannot make one up or swap in another workload.
"""

from __future__ import annotations

import logging
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
from beemesh.workloads.messages import MAX_WORKLOAD_BYTES
from beemesh.workloads.store import WorkloadStore

log = logging.getLogger("beemesh.manifests")

MANIFEST_PROTOCOL = "/beemesh/manifest/1.0.0"
ASK_AGAIN_S = 10.0
TIMEOUT_S = 5.0


def wanted(view: MachineView, store: WorkloadStore, machine: str,
           now: float) -> dict[str, str]:
    """Workloads some live machine runs that this one has no manifest or Delete of, and for
    each the machine to ask."""
    out: dict[str, str] = {}
    for entry, pod in view.pods_elsewhere(machine, now):
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


class ManifestExchange:
    def __init__(self, *, machine: str, view: MachineView, store: WorkloadStore,
                 authenticate: Callable[[bytes], wire.Envelope], mesh: MeshHost,
                 events: EventLog) -> None:
        """`authenticate`: checks an operator-signed Workload (trusted signer, any age)."""
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
                stored = self.store.workload(str(request["workload_id"]))
                await send_request(stream, stored.blob if stored is not None else b"")
        except Exception as e:  # garbage or a peer that went away: nothing to answer
            log.debug("manifest request not served: %s", e)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    async def run(self) -> None:
        """Ask for what is missing, each workload at most every ASK_AGAIN_S."""
        async with trio.open_nursery() as nursery:
            while True:
                now = time.time()
                for wid, peer in wanted(self.view, self.store, self.machine, now).items():
                    if now - self._asked.get(wid, 0.0) >= ASK_AGAIN_S:
                        self._asked[wid] = now
                        nursery.start_soon(self._ask, peer, wid)
                await trio.sleep(2)

    async def _ask(self, peer: str, workload_id: str) -> None:
        try:
            with trio.fail_after(TIMEOUT_S):
                stream = await self.mesh.open_stream(peer, MANIFEST_PROTOCOL)
                try:
                    await send_request(stream, cbor2.dumps({"workload_id": workload_id}))
                    data = await read_request(stream, MAX_WORKLOAD_BYTES)
                finally:
                    with trio.move_on_after(1):
                        await stream.close()
            if accept(self.store, self.authenticate, workload_id, data):
                self.events.add(time.time(), "ManifestLearned", f"signed manifest of "
                                f"{workload_id} from {peer}", workload=workload_id,
                                machine=self.machine)
        except wire.Rejected as e:
            log.warning("manifest of %s from %s refused (%s): %s", workload_id, peer, e.reason,
                        e.detail)
        except Exception as e:  # unreachable peer, timeout, closed stream: ask again later
            log.debug("could not get the manifest of %s from %s: %s", workload_id, peer, e)
