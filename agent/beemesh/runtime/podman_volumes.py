"""A replica's volumes as Podman sees them (`manifest.volumes` says what a manifest may ask).

- emptyDir -> a named volume of the pod's own (`bm-e-<replica>-<name>`), made empty when the
  pod is deployed and removed with it; ``medium: Memory`` makes it a tmpfs of ``sizeLimit``.
  Why not Podman's own emptyDir: Podman 4.3's kube play makes it a named volume called after
  the manifest's volume name, shared by every pod that uses the same name and never removed.
- a claim -> a named volume per (workload, ordinal, claim) (`bm-c-<workload>-<name>-<ordinal>`),
  made when first needed and kept when the pod goes (pod restarts, agent restarts, a
  replacement on the same machine); labelled with its workload, ordinal and claim.
- configMap, secret -> the directory the agent wrote their files into (`podconfig.writing`,
  on a tmpfs), mounted read-only.
- hostPath -> mounted as named, after checking that no part of the path is a symbolic link
  (root never follows a link someone else may have planted); whether the machine allows the
  path at all was decided before it bid (`scheduling.scoring`).

The pod manifest refers to both kinds of named volume as a persistentVolumeClaim.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beemesh.manifest import WorkloadSpec
from beemesh.manifest.volumes import Volume
from beemesh.runtime import LABEL_REPLICA, LABEL_WORKLOAD, RuntimeFailure

LABEL_VOLUME = "beemesh.volume"  # emptyDir | claim
LABEL_CLAIM = "beemesh.claim"
_Request = Callable[..., Any]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def volume_name(spec: WorkloadSpec, ordinal: int, volume: Volume) -> str:
    """The Podman named volume behind an emptyDir or a claim of one replica."""
    if volume.source == "claim":
        return f"bm-c-{_digest(spec.workload_id)}-{volume.name}-{ordinal}"
    return f"bm-e-{_digest(f'{spec.workload_id}/{ordinal}')}-{volume.name}"


def manifest_volume(spec: WorkloadSpec, ordinal: int, volume: Volume,
                    files: Path | None = None) -> dict[str, Any]:
    """The volume as the Pod manifest kube play runs names it (`files`: the directory written
    for a configMap or secret volume)."""
    if volume.files is not None:
        if files is None:
            raise RuntimeFailure(f"volume {volume.name}: its {volume.source} files were not "
                                 "written (deploy it through the agent)")
        return {"name": volume.name, "hostPath": {"path": str(files), "type": "Directory"}}
    if volume.source == "hostPath":
        return {"name": volume.name, "hostPath": {"path": volume.path,
                                                  **({"type": volume.path_type}
                                                     if volume.path_type else {})}}
    return {"name": volume.name,
            "persistentVolumeClaim": {"claimName": volume_name(spec, ordinal, volume)}}


def check_host_path(path: str) -> None:
    """Refuse a path any existing part of which is a symbolic link."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # the rest does not exist yet (DirectoryOrCreate, FileOrCreate)
        except OSError as e:
            raise RuntimeFailure(f"hostPath {path}: cannot check {current}: "
                                 f"{e.strerror or e}") from None
        if stat.S_ISLNK(mode):
            raise RuntimeFailure(f"hostPath {path}: {current} is a symbolic link; Beemesh "
                                 "mounts no path through a link (name the real directory)")


class PodmanVolumes:
    """Volumes over Podman's REST API (`request`: `PodmanRuntime._request`)."""

    def __init__(self, request: _Request) -> None:
        self.request = request

    def prepare(self, spec: WorkloadSpec, ordinal: int, action: str) -> bool:
        """Before the pod is played: fresh emptyDirs, existing or new claims, checked paths.
        True if a claim volume had to be made (it starts empty)."""
        created = False
        for v in spec.volumes:
            if v.files is not None:
                continue  # written by the agent (`podconfig.writing`)
            if v.source == "hostPath":
                check_host_path(v.path)
                continue
            name = volume_name(spec, ordinal, v)
            if v.source == "emptyDir":
                self.request("delete", f"/volumes/{name}", action, ok404=True,
                             params={"force": "true"})
            elif self.request("get", f"/volumes/{name}/json", action, ok404=True) is not None:
                continue  # a claim keeps its data
            else:
                created = True
            options = {}
            if v.medium == "Memory":
                options = {"type": "tmpfs", "device": "tmpfs"}
                if v.size_bytes:  # in pages: Podman 4.3 refuses `size` (it reads a quota)
                    page = os.sysconf("SC_PAGE_SIZE")
                    options["o"] = f"nr_blocks={-(-v.size_bytes // page)}"
            self.request("post", "/volumes/create", action, data=json.dumps({
                "Name": name, "Driver": "local", "Options": options, "Labels": {
                    LABEL_WORKLOAD: spec.workload_id, LABEL_REPLICA: str(ordinal),
                    LABEL_VOLUME: v.source, **({LABEL_CLAIM: v.name}
                                               if v.source == "claim" else {})}}),
                headers={"Content-Type": "application/json"})
        return created

    def release(self, workload_id: str, ordinal: str, action: str) -> None:
        """After the pod is removed: its emptyDirs go (claims stay)."""
        for volume in self._listed(action, {"label": [f"{LABEL_VOLUME}=emptyDir"]}):
            labels = volume.get("Labels") or {}
            if (labels.get(LABEL_WORKLOAD), labels.get(LABEL_REPLICA)) != (workload_id, ordinal):
                continue  # (Podman ORs several label filters)
            self.request("delete", f"/volumes/{volume['Name']}", action, ok404=True,
                         params={"force": "true"})

    def remove_claims(self, workload_id: str, ordinal: int | None, action: str) -> int:
        """Remove a workload's claim volumes here (of one ordinal, or all of them)."""
        removed = 0
        for volume in self._listed(action, {"label": [f"{LABEL_VOLUME}=claim"]}):
            labels = volume.get("Labels") or {}
            if labels.get(LABEL_WORKLOAD) != workload_id or (
                    ordinal is not None and labels.get(LABEL_REPLICA) != str(ordinal)):
                continue
            self.request("delete", f"/volumes/{volume['Name']}", action, ok404=True,
                         params={"force": "true"})
            removed += 1
        return removed

    def claims(self, action: str) -> frozenset[tuple[str, int]]:
        """(workload id, ordinal) of the claim volumes here."""
        held = set()
        for volume in self._listed(action, {"label": [f"{LABEL_VOLUME}=claim"]}):
            labels = volume.get("Labels") or {}
            ordinal = labels.get(LABEL_REPLICA, "")
            if isinstance(labels.get(LABEL_WORKLOAD), str) and ordinal.isdigit() \
                    and len(ordinal) < 7:
                held.add((labels[LABEL_WORKLOAD], int(ordinal)))
        return frozenset(held)

    def _listed(self, action: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = self.request("get", "/volumes/json", action,
                             params={"filters": json.dumps(filters)})
        return [v for v in found or [] if isinstance(v, dict) and isinstance(v.get("Name"), str)]
