"""Pod volumes on a real Podman: emptyDir (disk and tmpfs) shared by a pod's containers and
gone with the pod, hostPath read-only and never through a link, a claim's data kept across
pod removal and redeploys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beemesh.lab.busybox import BUSYBOX_IMAGE
from beemesh.manifest import WorkloadSpec, parse_manifests
from beemesh.runtime import RuntimeFailure
from beemesh.runtime.podman import PodmanRuntime
from beemesh.runtime.podman_volumes import volume_name

SLEEP = "trap 'exit 0' TERM; sleep 100000 & wait"


def workload(kind: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]],
             claims: list[dict[str, Any]] | None = None, name: str = "vol") -> WorkloadSpec:
    ctr = {"image": BUSYBOX_IMAGE, "command": ["/bin/sh", "-c", SLEEP], "volumeMounts": mounts}
    spec: dict[str, Any] = {
        "replicas": 1, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "volumes": volumes, "containers": [{"name": "a", **ctr}, {"name": "b", **ctr}]}}}
    if claims is not None:
        spec.update(serviceName=name, volumeClaimTemplates=claims)
    doc = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    (parsed,) = parse_manifests(json.dumps(doc))
    assert isinstance(parsed, WorkloadSpec)
    return parsed


def sh(runtime: PodmanRuntime, pod: str, container: str, script: str) -> str:
    code, out = runtime.exec_in(pod, container, ["/bin/sh", "-c", script], timeout_s=30)
    assert code == 0, out
    return out


def volumes_of(runtime: PodmanRuntime) -> set[str]:
    resp = runtime._client.api.get("/volumes/json")
    resp.raise_for_status()
    return {v["Name"] for v in resp.json()}


def test_empty_dirs_are_the_pods_own_and_go_with_it(runtime: PodmanRuntime) -> None:
    spec = workload("Deployment", [
        {"name": "scratch", "emptyDir": {}},
        {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}],
        [{"name": "scratch", "mountPath": "/scratch"}, {"name": "fast", "mountPath": "/fast"}])
    info = runtime.deploy(spec, 0, "t1")
    try:
        sh(runtime, info.name, "a", "echo shared > /scratch/x && echo mem > /fast/y")
        assert sh(runtime, info.name, "b", "cat /scratch/x /fast/y") == "shared\nmem\n"
        mounts = sh(runtime, info.name, "a", "grep ' /fast ' /proc/mounts")
        assert mounts.startswith("tmpfs /fast tmpfs") and "size=8192k" in mounts, mounts
        # another replica's emptyDir of the same name is another volume
        names = {volume_name(spec, o, v) for o in (0, 1) for v in spec.volumes}
        assert len(names) == 4
        redeployed = runtime.deploy(spec, 0, "t2")  # a new pod of the replica: empty again
        assert sh(runtime, redeployed.name, "a", "ls /scratch /fast") == "/fast:\n\n/scratch:\n"
    finally:
        runtime.remove("vol-0", grace_s=0)
    assert not {volume_name(spec, 0, v) for v in spec.volumes} & volumes_of(runtime)


def test_a_claim_keeps_its_data_when_the_pod_goes(runtime: PodmanRuntime) -> None:
    claim = [{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}}]
    spec = workload("StatefulSet", [], [{"name": "data", "mountPath": "/data"}], claim, "db")
    info = runtime.deploy(spec, 0, "t1")
    try:
        assert not info.afresh  # a first start is not a replacement
        sh(runtime, info.name, "a", "echo kept >> /data/log")
        runtime.remove(info.name, grace_s=0)
        assert volume_name(spec, 0, spec.volumes[0]) in volumes_of(runtime)
        again = runtime.deploy(spec, 0, "t2", replacing=True)
        assert sh(runtime, again.name, "b", "cat /data/log") == "kept\n"
        assert not again.afresh  # it found its volume
        other = runtime.deploy(spec, 1, "t3", replacing=True)  # ordinal 1 has its own
        assert sh(runtime, other.name, "a", "ls /data") == ""
        assert other.afresh  # a replacement that found no volume here starts empty
        assert runtime.claims() >= {("statefulset/default/db", 0), ("statefulset/default/db", 1)}
        runtime.remove("db-1", grace_s=0)
        assert runtime.remove_claims("statefulset/default/db", 1) == 1
        assert ("statefulset/default/db", 1) not in runtime.claims()
        assert ("statefulset/default/db", 0) in runtime.claims()
        disk = runtime.disk()
        assert disk is not None and 0 < disk[0] <= disk[1]
    finally:
        for pod in ("db-0", "db-1"):
            runtime.remove(pod, grace_s=0)
        runtime.remove_claims("statefulset/default/db")


def test_host_paths_are_mounted_as_asked_and_never_through_a_link(
        runtime: PodmanRuntime, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("from the machine\n")
    spec = workload("Deployment", [{"name": "h", "hostPath": {"path": str(real),
                                                               "type": "Directory"}}],
                    [{"name": "h", "mountPath": "/h", "readOnly": True}], name="hp")
    info = runtime.deploy(spec, 0, "t1")
    try:
        assert sh(runtime, info.name, "a", "cat /h/f") == "from the machine\n"
        code, _ = runtime.exec_in(info.name, "a", ["/bin/sh", "-c", "echo x > /h/g"], 30)
        assert code != 0 and not (real / "g").exists()  # read-only
    finally:
        runtime.remove(info.name, grace_s=0)
    (tmp_path / "link").symlink_to(real)
    linked = workload("Deployment", [{"name": "h", "hostPath": {
        "path": str(tmp_path / "link" / "sub")}}], [{"name": "h", "mountPath": "/h"}],
        name="hl")
    with pytest.raises(RuntimeFailure, match="is a symbolic link"):
        runtime.deploy(linked, 0, "t1")
    assert not (real / "sub").exists()
