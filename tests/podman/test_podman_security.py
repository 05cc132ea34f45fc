"""Containers on a real Podman are confined: what the kernel says inside them, and what fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from podman_testlib import container, deployment

from beemesh.manifest.security import CAPABILITIES, DEFAULT_CAPABILITIES
from beemesh.runtime.podman import PodmanRuntime

# Prints what the kernel holds for the container's first process, then tries what a
# confined container must not be able to do.
REPORT = (
    "grep -E '^(Cap(Bnd|Eff|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; echo uid=$(id -u); "
    "mknod /tmp/null c 1 3 2>/dev/null && echo mknod=yes || echo mknod=no; "
    "touch /rootfs-probe 2>/dev/null && echo rootfs=rw || echo rootfs=ro; "
    "httpd -p 80 -h /tmp 2>/dev/null && echo port80=yes || echo port80=no; "
    "echo done; trap 'exit 0' TERM; sleep 1000 & wait"
)


def mask(*names: str) -> int:
    return sum(1 << CAPABILITIES.index(n) for n in names)


@contextmanager
def report(runtime: PodmanRuntime, name: str, security: dict[str, Any] | None = None
           ) -> Iterator[dict[str, str]]:
    """What REPORT printed in a one-replica Deployment; its pod is removed on leaving."""
    c = container("c", REPORT)
    if security is not None:
        c["securityContext"] = security
    runtime.deploy(deployment(name, c, replicas=1), 0, f"task-{name}")
    try:
        deadline = time.monotonic() + 30
        while "done" not in (lines := list(runtime.logs(f"{name}-0"))):
            assert time.monotonic() < deadline, lines
            time.sleep(0.2)
        yield dict(line.split(":\t", 1) if ":\t" in line else line.split("=", 1)
                   for line in lines if line != "done")
    finally:
        runtime.remove(f"{name}-0", grace_s=0)


@pytest.fixture(scope="module")
def default(runtime: PodmanRuntime) -> Iterator[dict[str, str]]:
    with report(runtime, "plain") as seen:
        yield seen


def test_no_new_privileges_and_the_default_seccomp_filter(default: dict[str, str]) -> None:
    assert default["NoNewPrivs"] == "1"  # setuid programs and file capabilities grant nothing
    assert default["Seccomp"] == "2"  # filter mode: Podman's default profile


def test_root_keeps_only_the_default_capabilities(default: dict[str, str]) -> None:
    assert int(default["CapBnd"], 16) == mask(*DEFAULT_CAPABILITIES)
    assert default["uid"] == "0"
    assert default["mknod"] == "no"  # MKNOD dropped: no device nodes
    assert (default["rootfs"], default["port80"]) == ("rw", "yes")


def test_a_non_root_read_only_container_with_one_capability(runtime: PodmanRuntime) -> None:
    with report(runtime, "tight", {
        "runAsUser": 1000, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}) as seen:
        pass
    assert seen["uid"] == "1000"
    assert seen["rootfs"] == "ro"
    # Added capabilities are effective for a non-root user: it may listen on port 80.
    assert int(seen["CapEff"], 16) == int(seen["CapBnd"], 16) == mask("NET_BIND_SERVICE")
    assert seen["port80"] == "yes"


def test_a_non_root_container_without_add_holds_nothing(runtime: PodmanRuntime) -> None:
    with report(runtime, "user", {"runAsUser": 1000}) as seen:
        pass
    assert int(seen["CapEff"], 16) == 0 and int(seen["CapAmb"], 16) == 0
    assert seen["port80"] == "no"


def test_an_added_default_capability_comes_back(runtime: PodmanRuntime) -> None:
    with report(runtime, "raw", {"capabilities": {"add": ["NET_RAW", "MKNOD"],
                                                  "drop": ["SETUID"]}}) as seen:
        pass
    assert int(seen["CapBnd"], 16) == mask(
        *(set(DEFAULT_CAPABILITIES) - {"SETUID"}), "NET_RAW", "MKNOD")
    assert seen["mknod"] == "yes"
