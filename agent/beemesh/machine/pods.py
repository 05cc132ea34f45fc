"""Every pod in the fleet as this machine reports it: its own, fresh from Podman and its
probes, and the others' from their machine records (`beemesh get pods`, and the pods of this
machine's own record)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from beemesh.machine.workplane_link import CertifiedKeys
from beemesh.manifest.config import object_id
from beemesh.membership.records import PodSummary
from beemesh.membership.view import MachineView
from beemesh.node.evictions import Evictions
from beemesh.node.kubelet import Kubelet
from beemesh.node.local import LocalNode
from beemesh.runtime import PodInfo
from beemesh.workloads.store import StoredObject, StoredWorkload
from beemesh.workplane.names import address


class Pods:
    def __init__(self, *, machine: str, node: LocalNode, kubelet: Kubelet,
                 evictions: Evictions, view: MachineView, certified: CertifiedKeys,
                 believed: Callable[[str, PodSummary], bool]) -> None:
        """`believed(machine, pod)`: whether a pod another machine's record lists counts
        (`scheduling.bounds.Claims`)."""
        self.machine = machine
        self.node = node
        self.kubelet = kubelet
        self.evictions = evictions
        self.view = view
        self.certified = certified
        self.believed = believed

    def summary(self, pod: PodInfo) -> PodSummary:
        return PodSummary(pod.workload_id, pod.ordinal, pod.task_id, pod.name, pod.state,
                          float(pod.created), self.kubelet.ready(pod),
                          self.evictions.retiring(pod.name), self.certified.peer_of(pod.name),
                          pod.template, pod.afresh)

    def here(self) -> tuple[PodSummary, ...]:
        """This machine's pods, for its record."""
        return tuple(self.summary(p) for p in sorted(self.node.pods.values(),
                                                     key=lambda p: p.name))

    def rows(self) -> list[dict[str, Any]]:
        """Rows of `beemesh get pods`: every pod in the mesh, sorted by workload and replica."""
        now = time.time()
        rows: list[dict[str, Any]] = []
        for entry in self.view.entries():
            pods = self.here() if entry.peer_id == self.machine else tuple(
                p for p in entry.record.pods if self.believed(entry.peer_id, p))
            for p in pods:
                rows.append({**p.to_body(), "machine": entry.peer_id,
                             "age_s": round(now - p.created)})
        return sorted(rows, key=lambda r: (r["workload"], r["replica"], r["machine"]))

    def machines_running(self, pod: str) -> list[str]:
        """The other machines whose records list a pod of that name."""
        return [r["machine"] for r in self.rows()
                if r["pod"] == pod and r["machine"] != self.machine]


def workload_rows(workloads: Iterable[StoredWorkload], pods: list[dict[str, Any]],
                  progress: Mapping[str, Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """Rows of `beemesh get workloads` (like `kubectl get deploy`): desired, current, ready
    and up-to-date replicas of each workload this machine has a manifest of, from every
    machine's pods (`Pods.rows`), and its rollout as a work plane sees it (`progress`:
    `workplane.rollout.Progress` by workload, when this machine's work plane reported one)."""
    rows = []
    for w in workloads:
        spec = w.spec
        mine = [p for p in pods if p["workload"] == w.workload_id
                and 0 <= p["replica"] < spec.replicas]
        up_to_date = [p for p in mine if p.get("template") == spec.template_hash]
        ready = [p for p in mine if p.get("ready")]
        seen = progress.get(w.workload_id, {})
        if seen.get("template") != spec.template_hash:
            seen = {}  # a report of an earlier template (its work plane has not stepped yet)
        # A StatefulSet's partition keeps the ordinals below it on their template: its
        # rollout is done once the ones from the partition up are (`rollout status` as
        # kubectl's "partitioned roll out complete").
        floor = spec.strategy.partition if spec.kind == "StatefulSet" else 0
        settled = (len(mine) == spec.replicas
                   and len({p["replica"] for p in up_to_date if p["replica"] >= floor})
                   == max(0, spec.replicas - floor)
                   and len({p["replica"] for p in ready}) == spec.replicas)
        rows.append({
            "workload": w.workload_id, "kind": spec.kind, "namespace": spec.namespace,
            "name": spec.name, "desired": spec.replicas, "current": len(mine),
            "ready": len({p["replica"] for p in ready}), "up_to_date": len(up_to_date),
            "template": spec.template_hash, "generation": w.generation,
            "uses": sorted(object_id(src, spec.namespace, n) for src, n in spec.config_refs()),
            "strategy": spec.strategy.type,
            "state": "complete" if settled else (
                seen["state"] if seen.get("state") in ("stalled", "paused") else "progressing"),
            "reason": "" if settled else seen.get("reason", ""),
            "age_s": round(max(0.0, now - w.ts)),
        })
    return sorted(rows, key=lambda r: r["workload"])


def service_rows(services: Iterable[StoredObject], workloads: Iterable[StoredWorkload],
                 endpoints: Iterable[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """Rows of `beemesh get services` (like `kubectl get svc` with its endpoints): each
    Service this machine keeps, the workloads its selector picks (pod template labels, same
    namespace) and the service records of their replicas (`endpoints`: the work plane's view,
    as `get endpoints` lists them)."""
    workloads, endpoints = list(workloads), list(endpoints)
    rows = []
    for svc in services:
        spec = svc.spec
        picked = [w.workload_id for w in spec.picks(w.spec for w in workloads)]
        mine = [dict(r) for r in endpoints if r.get("workload") in picked]
        rows.append({
            "service": spec.service_id, "namespace": spec.namespace, "name": spec.name,
            "headless": spec.headless, "selector": dict(spec.selector),
            "ports": [p.to_dict() for p in spec.ports], "workloads": picked,
            "endpoints": sorted(mine, key=lambda r: (r["workload"], r["ordinal"], r["pod"])),
            "address": address(spec.namespace, spec.name),
            "allow_from": list(spec.allow_from) or [f"{spec.namespace}/*"],
            "ready": sum(bool(r.get("ready")) for r in mine),
            "age_s": round(max(0.0, now - svc.ts)),
        })
    return rows
