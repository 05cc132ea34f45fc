"""Every pod in the fleet as this machine reports it: its own, fresh from Podman and its
probes, and the others' from their machine records (`beemesh get pods`, and the pods of this
machine's own record)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from beemesh.machine.workplane_link import CertifiedKeys
from beemesh.membership.records import PodSummary
from beemesh.membership.view import MachineView
from beemesh.node.evictions import Evictions
from beemesh.node.kubelet import Kubelet
from beemesh.node.local import LocalNode
from beemesh.runtime import PodInfo


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
                          self.evictions.retiring(pod.name), self.certified.peer_of(pod.name))

    def here(self) -> tuple[PodSummary, ...]:
        """This machine's pods, for its record."""
        return tuple(self.summary(p) for p in sorted(self.node.pods.values(),
                                                     key=lambda p: p.name))

    def rows(self) -> list[dict[str, Any]]:
        """Rows of `beemesh get pods`: every pod in the mesh, sorted by workload and replica."""
        now = time.time()
        rows: list[dict[str, Any]] = []
        for entry in self.view.entries(now):
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
