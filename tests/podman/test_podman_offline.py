"""The runtime's behaviour that needs no running Podman: errors, the Pod manifest, config."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
from podman_testlib import container, deployment, web

from beemesh.errors import UserError
from beemesh.lab.podman_service import containers_conf
from beemesh.manifest.security import CAPABILITIES, DEFAULT_CAPABILITIES
from beemesh.runtime import (
    LABEL_CPU,
    LABEL_GRACE,
    LABEL_MEMORY,
    LABEL_REPLICA,
    LABEL_TASK,
    LABEL_TEMPLATE,
    LABEL_WORKLOAD,
    PodInfo,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
)
from beemesh.runtime.podman import PodmanRuntime, default_socket_url
from beemesh.runtime.podman_pod import (
    _parse_time,
    kernel_capabilities,
    pod_manifest,
    security_context,
)

REPO = Path(__file__).resolve().parents[2]


def test_missing_socket_is_one_line_with_the_fix(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/podman.sock"
    runtime = PodmanRuntime(url)
    for call in (runtime.ping, runtime.list_pods):
        with pytest.raises(RuntimeUnavailable) as err:
            call()
        msg = str(err.value)
        assert url in msg and "no socket file" in msg
        assert "systemctl start podman.socket" in msg and "podman system service" in msg
        assert "\n" not in msg
        assert isinstance(err.value, RuntimeFailure | UserError | RuntimeError)


def test_dead_socket_is_one_line_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "podman.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file exists, nothing listens: a crashed service
    runtime = PodmanRuntime(f"unix://{path}", timeout_s=2)
    for call in (runtime.ping, lambda: runtime.deploy(web(), 0, "t"),
                 lambda: runtime.remove("web-0")):
        with pytest.raises(RuntimeUnavailable) as err:
            call()
        msg = str(err.value)
        assert str(path) in msg and "systemctl start podman.socket" in msg and "\n" not in msg


def test_runtime_protocol() -> None:
    assert isinstance(PodmanRuntime("unix:///nonexistent.sock"), Runtime)


def test_default_socket_url() -> None:
    url = default_socket_url()
    assert url.startswith("unix:///") and url.endswith("/podman/podman.sock")


def test_pod_manifest_for_one_replica() -> None:
    spec = deployment(
        "api",
        container("app", "serve", env={"A": "1"}, host_port=8080,
                  limits={"cpu": "500m", "memory": "128Mi"}),
        container("side", "watch"),
    )
    doc = pod_manifest(spec, 2, "task-9")
    assert doc["kind"] == "Pod" and doc["metadata"]["name"] == "api-2"
    assert doc["metadata"]["labels"] == {
        "app": "api",
        LABEL_WORKLOAD: "deployment/default/api",
        LABEL_REPLICA: "2",
        LABEL_TASK: "task-9",
        LABEL_CPU: "500",  # requests default to limits, as in Kubernetes
        LABEL_MEMORY: str(128 * 2**20),
        LABEL_TEMPLATE: spec.template_hash,  # which revision it runs (rollouts)
        LABEL_GRACE: "10",  # how long it gets to stop (terminationGracePeriodSeconds)
    }
    app, side = doc["spec"]["containers"]
    assert app["command"] == ["/bin/sh", "-c"] and app["args"] == ["serve"]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["A"] == "1"
    assert (env["BEEMESH_WORKLOAD"], env["BEEMESH_ORDINAL"]) == (spec.workload_id, "2")
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 8080}]
    assert app["resources"]["limits"] == {"cpu": "500m", "memory": str(128 * 2**20)}
    assert app["imagePullPolicy"] == "Never"  # pulls are the runtime's job, not kube play's
    assert "resources" not in side and "ports" not in side
    assert doc["spec"]["restartPolicy"] == "Always"


def test_beemesh_labels_win_over_workload_labels() -> None:
    spec = deployment("x", container("c", "true"))
    spec = dataclasses.replace(spec, labels=((LABEL_TASK, "forged"),))
    assert pod_manifest(spec, 0, "real")["metadata"]["labels"][LABEL_TASK] == "real"


def test_podman_timestamps() -> None:
    assert _parse_time("2026-11-24T10:09:20.906315663Z") == pytest.approx(1795514960.906315)
    assert _parse_time("2026-11-24T10:09:20+01:00") == pytest.approx(1795511360.0)
    assert _parse_time("") == 0.0 and _parse_time("garbage") == 0.0


def test_pod_info_to_dict() -> None:
    info = PodInfo("web-0", "deployment/default/web", 0, "t", "running", 1.5, ("httpd",),
                   (18080,))
    assert info.to_dict() == {
        "name": "web-0", "workload_id": "deployment/default/web", "ordinal": 0,
        "task_id": "t", "state": "running", "created": 1.5, "containers": ["httpd"],
        "host_ports": [18080], "cpu_milli": 0, "memory_bytes": 0, "template": "", "afresh": False,
    }


def test_machine_config_contains_the_packaged_one(tmp_path: Path) -> None:
    """packaging/containers.conf (for real machines) and the test machines must not drift."""
    packaged = (REPO / "packaging" / "containers.conf").read_text()
    generated = containers_conf(tmp_path)
    settings = [line.strip() for line in packaged.splitlines()
                if "=" in line and not line.lstrip().startswith("#")]
    assert settings, "packaging/containers.conf has no settings"
    for line in settings:
        assert line in generated, f"{line!r} missing from the generated containers.conf"


def test_every_container_is_confined() -> None:
    """No-new-privileges, never privileged, and every capability it does not keep dropped by
    name; only capabilities.add is sent as added (Podman makes those ambient for non-root)."""
    spec = deployment("c", container("a", "true"))
    (ctx,) = (c["securityContext"] for c in pod_manifest(spec, 0, "t")["spec"]["containers"])
    assert ctx["privileged"] is False and ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is False
    assert ctx["capabilities"]["add"] == []
    dropped = set(ctx["capabilities"]["drop"])
    assert dropped == set(CAPABILITIES) - set(DEFAULT_CAPABILITIES)
    assert {"NET_RAW", "SYS_ADMIN", "MKNOD", "SETFCAP"} <= dropped
    assert "runAsUser" not in ctx and "runAsGroup" not in ctx


def test_a_security_context_reaches_kube_play() -> None:
    c = container("a", "true")
    c["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    ctx = security_context(deployment("c", c).containers[0].security, CAPABILITIES[:38])
    assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["readOnlyRootFilesystem"]) == (1000, 1000,
                                                                                   True)
    assert ctx["capabilities"] == {"add": ["NET_BIND_SERVICE"],
                                   "drop": [n for n in CAPABILITIES[:38]
                                            if n != "NET_BIND_SERVICE"]}


def test_only_capabilities_the_kernel_knows_are_named(tmp_path: Path) -> None:
    last = tmp_path / "cap_last_cap"
    last.write_text("37\n")  # an older kernel: no PERFMON, BPF, CHECKPOINT_RESTORE
    assert kernel_capabilities(last) == CAPABILITIES[:38]
    last.write_text("garbage")
    assert kernel_capabilities(last) == CAPABILITIES
    assert kernel_capabilities(tmp_path / "missing") == CAPABILITIES


def test_pod_manifest_names_each_replicas_own_volumes() -> None:
    from beemesh.manifest.volumes import Mount, Volume
    from beemesh.runtime.podman_volumes import volume_name

    app = dataclasses.replace(container_spec := deployment("db", container("c", "x"))
                              .containers[0], mounts=(Mount("data", "/data"),
                                                      Mount("logs", "/logs", True)))
    spec = dataclasses.replace(deployment("db", container("c", "x")), kind="StatefulSet",
                               containers=(app,), volumes=(
                                   Volume("data", "claim", size_bytes=1),
                                   Volume("logs", "hostPath", path="/var/log/db",
                                          path_type="Directory")))
    assert container_spec.mounts == ()
    doc = pod_manifest(spec, 3, "t")
    assert doc["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": volume_name(spec, 3,
                                                                            spec.volumes[0])}},
        {"name": "logs", "hostPath": {"path": "/var/log/db", "type": "Directory"}}]
    (c,) = doc["spec"]["containers"]
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": False},
                                 {"name": "logs", "mountPath": "/logs", "readOnly": True}]
    assert volume_name(spec, 3, spec.volumes[0]).endswith("-data-3")
    assert volume_name(spec, 3, spec.volumes[0]) != volume_name(spec, 4, spec.volumes[0])
