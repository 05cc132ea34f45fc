"""How a pod starts and stops on a real Podman: postStart and preStop exec hooks, and its own
terminationGracePeriodSeconds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from beemesh.lab.busybox import BUSYBOX_IMAGE
from beemesh.manifest import WorkloadSpec, parse_manifests
from beemesh.runtime import RuntimeFailure
from beemesh.runtime.podman import PodmanRuntime

STUBBORN = "trap '' TERM; while true; do sleep 1; done"  # ignores SIGTERM: only a kill ends it


def workload(name: str, shared: Path, grace: int | None, lifecycle: dict[str, Any]
             ) -> WorkloadSpec:
    pod: dict[str, Any] = {
        "volumes": [{"name": "out", "hostPath": {"path": str(shared), "type": "Directory"}}],
        "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["/bin/sh", "-c",
                                                                            STUBBORN],
                        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                        "lifecycle": lifecycle}]}
    if grace is not None:
        pod["terminationGracePeriodSeconds"] = grace
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}
    (spec,) = parse_manifests(json.dumps(doc))
    assert isinstance(spec, WorkloadSpec)
    return spec


def hook(script: str) -> dict[str, Any]:
    return {"exec": {"command": ["/bin/sh", "-c", script]}}


def test_hooks_run_and_the_pods_own_grace_ends_a_stubborn_stop(runtime: PodmanRuntime,
                                                                tmp_path: Path) -> None:
    spec = workload("hooked", tmp_path, 3, {"postStart": hook("echo started > /out/post"),
                                            "preStop": hook("echo leaving > /out/pre")})
    info = runtime.deploy(spec, 0, "t1")
    assert (tmp_path / "post").read_text() == "started\n"  # done when deploy returns
    assert not (tmp_path / "pre").exists()
    t0 = time.monotonic()
    assert runtime.remove(info.name)  # its own grace: 3 s, not the default 10
    took = time.monotonic() - t0
    assert (tmp_path / "pre").read_text() == "leaving\n"
    assert 2.5 < took < 9, took
    assert runtime.status(info.name) is None


def test_a_failing_post_start_fails_the_deploy_and_leaves_nothing(runtime: PodmanRuntime,
                                                                  tmp_path: Path) -> None:
    spec = workload("badstart", tmp_path, 0, {"postStart": hook("echo no such thing; exit 3")})
    with pytest.raises(RuntimeFailure, match=r"postStart hook of container c failed \(exit 3"):
        runtime.deploy(spec, 0, "t1")
    assert runtime.status("badstart-0") is None
