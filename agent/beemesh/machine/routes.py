"""The local control API's routes (HTTP/1.1 + JSON on a unix socket, mode 0600): what the
CLI reads and asks. Each route parses the request, calls the service that owns the answer and
shapes the JSON; nothing here decides anything."""

from __future__ import annotations

import base64
import binascii
import os
import time
from typing import Any

import trio

from beemesh import __version__, footprint
from beemesh.api.server import ApiError, ApiServer, Request, Response
from beemesh.events import EventLog
from beemesh.machine.persistence import Persister
from beemesh.machine.pod_access import PodAccess
from beemesh.machine.pods import Pods, service_rows, workload_rows
from beemesh.machine.requests import OperatorRequests
from beemesh.machine.workplane_link import WorkPlaneLink
from beemesh.manifest.strategy import template_changes
from beemesh.membership.admission import REVOKE, Admission
from beemesh.membership.lateness import Lateness
from beemesh.membership.service import Membership
from beemesh.membership.view import MachineView
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics
from beemesh.node.capacity import machine_arch
from beemesh.node.local import LocalNode
from beemesh.podconfig.holding import SecretCopies
from beemesh.scheduling.driver import AuctionDriver
from beemesh.workloads.messages import CORDON, DRAIN
from beemesh.workloads.store import StoredWorkload

MAX_EVENTS_WAIT_S = 30.0


class AgentApi:
    def __init__(self, server: ApiServer, *, machine: str, mesh: MeshHost, view: MachineView,
                 membership: Membership, lateness: Lateness, node: LocalNode,
                 persister: Persister, admission: Admission,
                 driver: AuctionDriver, requests: OperatorRequests, pods: Pods,
                 link: WorkPlaneLink | None, pod_access: PodAccess, events: EventLog,
                 metrics: Metrics, secrets: SecretCopies) -> None:
        self.machine = machine
        self.mesh = mesh
        self.view = view
        self.membership = membership
        self.lateness = lateness
        self.node = node
        self.persister = persister
        self.admission = admission
        self.driver = driver
        self.requests = requests
        self.pods = pods
        self.link = link
        self.pod_access = pod_access
        self.events = events
        self.metrics = metrics
        self.secrets = secrets
        for method, path, handler in (
                ("GET", "/v1/nodes", self._nodes), ("GET", "/v1/status", self._status),
                ("GET", "/v1/metrics", self._metrics_json), ("GET", "/metrics", self._metrics),
                ("POST", "/v1/apply", self._apply), ("POST", "/v1/delete", self._delete),
                ("POST", "/v1/cordon", self._cordon), ("POST", "/v1/drain", self._drain),
                ("POST", "/v1/revoke", self._revoke),
                ("GET", "/v1/endpoints", self._endpoints), ("GET", "/v1/tasks", self._tasks),
                ("GET", "/v1/pods", self._pods), ("GET", "/v1/events", self._events),
                ("POST", "/v1/logs", self._pod_request),
                ("POST", "/v1/exec", self._pod_request), ("GET", "/v1/workloads", self._workloads),
                ("GET", "/v1/workloads/manifest", self._manifest),
                ("GET", "/v1/workloads/history", self._history),
                ("GET", "/v1/services", self._services), ("GET", "/v1/objects", self._objects),
                ("GET", "/v1/secret-wants", self._secret_wants),
                ("POST", "/v1/secret-copies", self._secret_copies)):
            server.route(method, path, handler)

    async def _workloads(self, _req: Request) -> Response:
        progress = {p["workload"]: p for p in (self.link.rollouts if self.link else ())
                    if isinstance(p.get("workload"), str)}
        return Response(200, workload_rows(self.driver.store.workloads(), self.pods.rows(),
                                           progress, time.time()))

    async def _services(self, _req: Request) -> Response:
        store = self.driver.store
        records = self.link.endpoints(None) if self.link else []
        return Response(200, service_rows(store.services(), store.workloads(), records,
                                          time.time()))

    async def _objects(self, _req: Request) -> Response:
        """ConfigMaps and Secrets this machine keeps (a Secret: its keys, never values)."""
        now = time.time()
        return Response(200, [{"object": o.object_id, "kind": o.spec.kind,
                               "namespace": o.spec.namespace, "name": o.spec.name,
                               "age_s": round(max(0.0, now - o.ts)), **o.spec.to_dict(),
                               "digest": o.spec.digest}
                              for o in self.driver.store.objects()
                              if o.spec.kind in ("ConfigMap", "Secret")])

    async def _secret_wants(self, req: Request) -> Response:
        """Machines waiting for a copy of these Secrets whose wants this machine verified:
        a sealing `apply` seals for them."""
        ids = {i for i in req.query.get("ids", "").split(",") if i}
        return Response(200, [{"machine": w.machine, "public_key": w.public_key.hex(),
                               "secret": w.secret, "digest": w.digest, "task_id": w.task_id}
                              for w in self.secrets.wants(ids)])

    async def _secret_copies(self, req: Request) -> Response:
        """Copies sealed by the operator's `apply`, each for a want verified here."""
        sent = 0
        for copy in (req.json() or {}).get("copies", []):
            if not isinstance(copy, dict):
                raise ApiError(400, "each copy is a mapping")
            want = self.secrets.want(str(copy.get("secret")), str(copy.get("digest")),
                                     str(copy.get("machine")))
            if want is None:
                continue  # answered or expired meanwhile; it asks again if it still waits
            await self.secrets.send(want, _b64(copy.get("box", "")))
            sent += 1
        return Response(200, {"sent": sent})

    async def _manifest(self, req: Request) -> Response:
        """The operator-signed Workload this machine keeps of one workload, or of one of its
        revisions (`?revision=N`): what `scale`, `rollout restart` and `rollout undo` change
        and sign again (the CLI checks the signature)."""
        wid, revs = self._revisions(req)
        number = req.query.get("revision") or str(len(revs))
        if not number.isdigit() or not 1 <= int(number) <= len(revs):
            raise ApiError(404, f"{wid} has revisions 1 to {len(revs)} here, not {number}; "
                           f"see `beemesh rollout history {wid}`")
        return Response(200, {"workload": base64.b64encode(revs[int(number) - 1].blob).decode()})

    async def _history(self, req: Request) -> Response:
        """`rollout history`: the workload's pod templates, oldest first, what each changed."""
        (_, revs), now = self._revisions(req), time.time()
        return Response(200, [
            {"revision": i + 1, "template": r.spec.template_hash, "generation": r.generation,
             "age_s": round(max(0.0, now - r.ts)), "current": i == len(revs) - 1,
             "change": "created" if i == 0 else template_changes(revs[i - 1].spec, r.spec)}
            for i, r in enumerate(revs)])

    def _revisions(self, req: Request) -> tuple[str, list[StoredWorkload]]:
        """The `?workload=` of a request and its revisions here, oldest first; 404 if none."""
        wid = req.query.get("workload") or ""
        revs = self.driver.store.revisions(wid)
        if not revs:
            raise ApiError(404, f"no workload {wid} known here; see `beemesh get workloads`")
        return wid, revs

    async def _nodes(self, _req: Request) -> Response:
        now = time.time()
        suspects = self.membership.liveness.suspects()
        return Response(200, [{**e.to_dict(now, self.machine), "suspect": e.peer_id in suspects}
                              for e in self.view.entries()])

    async def _status(self, _req: Request) -> Response:
        agent = footprint.measure(os.getpid())
        plane_proc = self.link.proc if self.link else None
        plane = footprint.measure(plane_proc.pid) if plane_proc and plane_proc.returncode is None \
            else None
        joined = self.membership.joined_after_s
        return Response(200, {
            "peer_id": self.machine,
            "version": __version__,
            "arch": machine_arch(),
            "addrs": self.mesh.addrs(),
            "connected_peers": [p.to_base58() for p in self.mesh.connected()],
            "known_machines": len(self.view.entries()),
            "lateness_s": round(self.lateness.current(time.time()), 1),
            "joined": joined is not None,
            "joined_after_s": joined,
            "runtime": "ok" if self.node.runtime_ok else self.node.runtime_error,
            "disk": self.persister.status,
            "admission": self._admission(),
            "uptime_s": round(time.monotonic() - self.membership.started, 1),
            "footprint": {"agent": agent.to_dict() if agent else None,
                          "workplane": plane.to_dict() if plane else None},
        })

    def _admission(self) -> dict[str, Any]:
        """Whether the fleet requires admission, this machine's certificate, revocations."""
        cert = self.admission.cert(self.machine, time.time())
        return {"required": self.admission.required, "revoked": len(self.admission.revoked),
                "cert_expires": cert.expires if cert else None,
                "cert_signer": cert.signer if cert else None}

    async def _apply(self, req: Request) -> Response:
        blobs = [_b64(w) for w in (req.json() or {}).get("workloads", [])]
        if not blobs:
            raise ApiError(400, "no workloads in the request")
        return Response(200, await self.requests.apply(blobs))

    async def _delete(self, req: Request) -> Response:
        return Response(200, await self.requests.delete(_b64((req.json() or {}).get(
            "request", ""))))

    async def _cordon(self, req: Request) -> Response:
        env = await self.requests.forward(_b64((req.json() or {}).get("request", "")))
        if env.kind != CORDON.name:
            raise ApiError(400, "expected a signed Cordon request")
        return Response(200, {"machine": env.body["machine"], "cordoned": env.body["cordoned"]})

    async def _revoke(self, req: Request) -> Response:
        env = await self.requests.forward(_b64((req.json() or {}).get("request", "")))
        if env.kind != REVOKE.name:
            raise ApiError(400, "expected a signed Revoke request")
        return Response(200, {"machine": env.body["peer_id"]})

    async def _drain(self, req: Request) -> Response:
        env = await self.requests.forward(_b64((req.json() or {}).get("request", "")))
        if env.kind != DRAIN.name:
            raise ApiError(400, "expected a signed Drain request")
        machine = env.body["machine"]
        replicas = [r for r in self.pods.rows() if r["machine"] == machine]
        return Response(200, {"machine": machine, "replicas": len(replicas)})

    async def _endpoints(self, req: Request) -> Response:
        if self.link is None:
            raise ApiError(409, "this agent runs without a work plane (workplane = false)")
        return Response(200, self.link.endpoints(req.query.get("workload") or None))

    async def _tasks(self, req: Request) -> Response:
        ids = [i for i in req.query.get("ids", "").split(",") if i]
        return Response(200, self.driver.task_statuses(ids))

    async def _pods(self, _req: Request) -> Response:
        return Response(200, self.pods.rows())

    async def _events(self, req: Request) -> Response:
        after = int(req.query.get("after", "0"))
        wait = min(MAX_EVENTS_WAIT_S, float(req.query.get("wait", "0")))
        with trio.move_on_after(wait):
            while not self.events.since(after) and wait > 0:
                await trio.sleep(0.2)
        return Response(200, {"last": self.events.last_seq,
                              "events": [e.to_dict() for e in self.events.since(after)]})

    async def _pod_request(self, req: Request) -> Response:
        """`logs` and `exec`: the signed request says which (the pod access checks it)."""
        blob = _b64((req.json() or {}).get("request", ""))
        return Response(200, stream=self.pod_access.answer(blob, forwarded=False),
                        content_type="application/x-ndjson")

    async def _metrics_json(self, _req: Request) -> Response:
        return Response(200, self.metrics.as_dict())

    async def _metrics(self, _req: Request) -> Response:
        return Response(200, self.metrics.prometheus(), "text/plain; version=0.0.4")


def _b64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "expected base64-encoded signed bytes") from None
