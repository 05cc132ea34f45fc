"""PodmanRuntime against a real Podman: limits, labels, ports, re-adoption, logs, removal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from podman_testlib import SERVE, container, deployment, http_get, kernel_limits, web

from beemesh.lab.busybox import BUSYBOX_IMAGE
from beemesh.lab.podman_service import PodmanService
from beemesh.runtime import LABEL_REPLICA, LABEL_TASK, LABEL_WORKLOAD, PodInfo, RuntimeFailure
from beemesh.runtime.podman import PodmanRuntime

MiB = 1024 * 1024


def rest(runtime: PodmanRuntime, path: str) -> Any:
    """Raw inspect through the same socket, to check what Podman really applied."""
    resp = runtime._client.api.get(path)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture(scope="module")
def web_pod(runtime: PodmanRuntime) -> Iterator[PodInfo]:
    """Replica 0 of the web Deployment, deployed once for the tests that only look at it."""
    info = runtime.deploy(web(), 0, "task-web-0")
    yield info
    runtime.remove(info.name, grace_s=0)


def test_deploy_reports_the_replica(web_pod: PodInfo) -> None:
    assert web_pod.name == "web-0"
    assert web_pod.workload_id == "deployment/default/web"
    assert (web_pod.ordinal, web_pod.task_id, web_pod.state) == (0, "task-web-0", "running")
    assert web_pod.containers == ("httpd",)
    assert web_pod.host_ports == (18080,)
    assert (web_pod.cpu_milli, web_pod.memory_bytes) == (250, 64 * MiB)  # requests = limits
    assert abs(web_pod.created - time.time()) < 120
    assert web_pod.to_dict()["host_ports"] == [18080]


def test_limits_are_enforced(runtime: PodmanRuntime, web_pod: PodInfo) -> None:
    ctr = rest(runtime, "/containers/web-0-httpd/json")
    host = ctr["HostConfig"]
    assert host["Memory"] == 64 * MiB
    assert host["NanoCpus"] == 250_000_000 or host["CpuQuota"] * 1000 // host["CpuPeriod"] == 250
    # And the kernel agrees: the limits are in the container's cgroup, not only in Podman's DB.
    assert kernel_limits(ctr["State"]["CgroupPath"]) == (64 * MiB, 250)


def test_labels_on_pod_and_every_container(runtime: PodmanRuntime, web_pod: PodInfo) -> None:
    want = {LABEL_WORKLOAD: "deployment/default/web", LABEL_REPLICA: "0",
            LABEL_TASK: "task-web-0", "app": "web"}
    pod = rest(runtime, "/pods/web-0/json")
    assert want.items() <= pod["Labels"].items()
    app = [c for c in pod["Containers"] if c["Id"] != pod["InfraContainerID"]]
    assert len(app) == 1
    for c in app:
        labels = rest(runtime, f"/containers/{c['Id']}/json")["Config"]["Labels"]
        assert want.items() <= labels.items()


def test_command_env_and_host_port(machine: PodmanService, runtime: PodmanRuntime,
                                   web_pod: PodInfo) -> None:
    ctr = rest(runtime, "/containers/web-0-httpd/json")
    assert "GREETING=bees" in ctr["Config"]["Env"]
    assert [ctr["Path"], *ctr["Args"]] == ["/bin/sh", "-c", SERVE]  # command + args
    assert http_get(f"http://{machine.address}:18080/index.html") == "hello from bees\n"


def test_a_restarted_agent_readopts_the_pod(machine: PodmanService, web_pod: PodInfo) -> None:
    fresh = PodmanRuntime(machine.url)  # nothing carried over from the runtime that deployed
    fresh.ping()
    pods = {p.name: p for p in fresh.list_pods()}
    assert pods["web-0"] == web_pod
    assert fresh.status("web-0") == web_pod
    assert fresh.status("web-1") is None


def test_logs_of_one_container(runtime: PodmanRuntime, web_pod: PodInfo) -> None:
    assert "starting bees" in list(runtime.logs("web-0"))
    follow = runtime.logs("web-0", follow=True)
    assert next(follow) == "starting bees"
    follow.close()  # stops following at once


def test_logs_of_two_containers_are_prefixed(runtime: PodmanRuntime) -> None:
    spec = deployment(
        "duo",
        container("a", "echo alpha; trap 'exit 0' TERM; sleep 1000 & wait"),
        container("b", "echo beta; trap 'exit 0' TERM; sleep 1000 & wait"),
    )
    info = runtime.deploy(spec, 1, "task-duo-1")
    try:
        assert info.containers == ("a", "b")
        deadline = time.monotonic() + 10
        while sorted(runtime.logs("duo-1")) != ["a: alpha", "b: beta"]:
            assert time.monotonic() < deadline, list(runtime.logs("duo-1"))
            time.sleep(0.1)
        follow = runtime.logs("duo-1", follow=True)
        assert sorted([next(follow), next(follow)]) == ["a: alpha", "b: beta"]
        started = time.monotonic()
        follow.close()  # the readers are blocked on silent containers: must not hang
        assert time.monotonic() - started < 2
    finally:
        runtime.remove("duo-1", grace_s=0)
    with pytest.raises(RuntimeFailure, match="no beemesh pod named duo-1"):
        runtime.logs("duo-1")


def test_deploy_is_idempotent_and_a_newer_task_replaces(runtime: PodmanRuntime) -> None:
    spec = web("again", host_port=None)
    first = runtime.deploy(spec, 2, "task-a")
    try:
        assert runtime.deploy(spec, 2, "task-a") == first  # duplicate Deployed: same pod
        second = runtime.deploy(spec, 2, "task-b")
        assert second.task_id == "task-b"
        assert second.created > first.created
        assert [p.task_id for p in runtime.list_pods() if p.name == "again-2"] == ["task-b"]
    finally:
        runtime.remove("again-2", grace_s=0)


def test_deploy_refuses_a_name_taken_by_another_workload(runtime: PodmanRuntime,
                                                          web_pod: PodInfo) -> None:
    other = web(namespace="prod")  # pod name web-0 as well
    with pytest.raises(RuntimeFailure, match="already runs workload deployment/default/web"):
        runtime.deploy(other, 0, "task-other")
    assert runtime.status("web-0") == web_pod


def test_remove_is_idempotent(runtime: PodmanRuntime) -> None:
    runtime.deploy(web("gone", host_port=None), 0, "task-gone")
    started = time.monotonic()
    assert runtime.remove("gone-0") is True  # sh traps SIGTERM: no 10 s grace wait
    # (Podman 4.3 on cgroup v1 sometimes needs ~3 s to delete the emptied pod cgroup.)
    assert time.monotonic() - started < 8
    assert runtime.remove("gone-0") is False
    assert runtime.status("gone-0") is None


def test_missing_image_is_one_clear_line(runtime: PodmanRuntime, machine: PodmanService) -> None:
    missing = deployment("ghost", container("c", "true", image="localhost/beemesh/ghost:1"))
    with pytest.raises(RuntimeFailure) as err:
        runtime.deploy(missing, 0, "task-ghost")
    msg = str(err.value)
    assert "image localhost/beemesh/ghost:1 is not in this machine's Podman storage" in msg
    assert "podman load" in msg and "\n" not in msg
    # Registry images are not pulled when pulling is off (air-gapped machines).
    offline = PodmanRuntime(machine.url, pull_missing=False)
    remote = deployment("ghost", container("c", "true", image="registry.invalid/ghost:1"))
    with pytest.raises(RuntimeFailure, match=re.escape("registry.invalid/ghost:1 is not in")):
        offline.deploy(remote, 0, "task-ghost")
    assert runtime.status("ghost-0") is None  # nothing half-made left behind


def test_foreign_pods_are_left_alone(runtime: PodmanRuntime, machine: PodmanService) -> None:
    done = machine.run("pod", "create", "--name", "foreign-0")
    assert done.returncode == 0, done.stderr
    assert "foreign-0" not in [p.name for p in runtime.list_pods()]
    assert runtime.status("foreign-0") is None
    with pytest.raises(RuntimeFailure, match="not started by beemesh"):
        runtime.remove("foreign-0")
    with pytest.raises(RuntimeFailure, match="not started by beemesh"):
        runtime.deploy(web("foreign", host_port=None), 0, "task-f")
    assert machine.run("pod", "exists", "foreign-0").returncode == 0


def test_busybox_image_is_imported_once(machine: PodmanService) -> None:
    from beemesh.lab.busybox import ensure_busybox_image

    started = time.monotonic()
    assert ensure_busybox_image(machine) == BUSYBOX_IMAGE
    assert time.monotonic() - started < 1


def test_a_host_port_in_use_is_a_clear_failure(runtime: PodmanRuntime, web_pod: PodInfo) -> None:
    clash = web("clash")  # also wants hostPort 18080, which web-0 holds on this machine
    with pytest.raises(RuntimeFailure) as err:
        runtime.deploy(clash, 0, "task-clash")
    assert "hostPort 18080/TCP is already used on this machine by pod web-0" in str(err.value)
    assert runtime.status("clash-0") is None
    assert runtime.status("web-0") == web_pod


def test_zero_grace_is_a_kill(runtime: PodmanRuntime) -> None:
    """Podman 4.3 reads a stop timeout of 0 as its default 10 s; grace 0 must not wait."""
    info = runtime.deploy(deployment("stubborn", container("c", "sleep 1000")), 0, "task-s")
    try:  # sleep as PID 1 ignores SIGTERM: only SIGKILL stops it
        started = time.monotonic()
        assert runtime.restart(info.name, grace_s=0).state == "running"
        assert time.monotonic() - started < 8  # settle 1 s + stays up 2 s (+ slow cgroups)
    finally:
        started = time.monotonic()
        assert runtime.remove(info.name, grace_s=0) is True
        assert time.monotonic() - started < 6


def test_images_lists_stored_images_as_references_name_them(runtime: PodmanRuntime) -> None:
    """What the scorer checks a task's images against (`runtime.image_name` spelling)."""
    from beemesh.lab.busybox import BUSYBOX_IMAGE
    from beemesh.runtime import image_name

    stored = runtime.images()
    assert image_name(BUSYBOX_IMAGE) in stored
    assert image_name("localhost/beemesh/ghost:1") not in stored
