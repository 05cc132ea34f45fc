"""Helpers shared by the Podman tests: workload specs, HTTP with retry, kernel cgroup limits."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from beemesh.errors import UserError
from beemesh.lab.busybox import BUSYBOX_IMAGE, ensure_busybox_image
from beemesh.lab.host_tools import BUSYBOX_PATH
from beemesh.lab.podman_service import PodmanService
from beemesh.manifest import WorkloadSpec, parse_manifests

NETNS_PREFIX = "bmt"  # + "<pid>-<n>": netns.delete_stale removes those of dead test runs
_counter = itertools.count(1)


def netns_name() -> str:
    """A namespace name unique to this process (xdist workers run modules in parallel)."""
    return f"{NETNS_PREFIX}{os.getpid()}-{next(_counter)}"


def start_machine(tmp_path_factory: pytest.TempPathFactory, netns: bool = True) -> PodmanService:
    """A started machine with the busybox image imported (~0.3 s)."""
    root = tmp_path_factory.mktemp("machine")
    try:
        svc = PodmanService(root, netns=netns_name() if netns else None)
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        ensure_busybox_image(svc)
    except BaseException:
        svc.stop()
        raise
    return svc


# sh as PID 1 ignores SIGTERM unless it traps it: with the trap, stopping takes milliseconds.
SERVE = (
    'echo "starting $GREETING"; echo "hello from $GREETING" > /tmp/index.html; '
    "trap 'exit 0' TERM; httpd -f -p 80 -h /tmp & wait"
)


def container(name: str, script: str, *, env: dict[str, str] | None = None,
              host_port: int | None = None, limits: dict[str, str] | None = None,
              image: str = BUSYBOX_IMAGE) -> dict[str, Any]:
    """One container of a Kubernetes manifest running ``sh -c script``."""
    c: dict[str, Any] = {"name": name, "image": image, "command": ["/bin/sh", "-c"],
                         "args": [script]}
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if host_port is not None:
        c["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    if limits:
        c["resources"] = {"limits": limits}
    return c


def deployment(name: str, *containers: dict[str, Any], namespace: str = "default",
               replicas: int = 3) -> WorkloadSpec:
    """A Deployment parsed by beemesh.manifest, exactly as the agent receives it."""
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": list(containers)},
            },
        },
    }
    (spec,) = parse_manifests(yaml.safe_dump(doc), source=f"<test {name}>")
    return spec


def web(name: str = "web", *, greeting: str = "bees", host_port: int | None = 18080,
        namespace: str = "default") -> WorkloadSpec:
    """busybox httpd serving "hello from <greeting>", cpu 250m / memory 64Mi limits."""
    return deployment(
        name,
        container("httpd", SERVE, env={"GREETING": greeting}, host_port=host_port,
                  limits={"cpu": "250m", "memory": "64Mi"}),
        namespace=namespace,
    )


def http_get(url: str, timeout_s: float = 10.0) -> str:
    """GET with retries while the server starts; the body as text."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def kernel_limits(cgroup_path: str) -> tuple[int, int]:
    """(memory bytes, cpu milli) the kernel enforces for a container cgroup, v1 or v2."""
    root = Path("/sys/fs/cgroup")
    rel = cgroup_path.lstrip("/")
    if (root / "memory").is_dir():  # cgroup v1 (or hybrid)
        memory = int((root / "memory" / rel / "memory.limit_in_bytes").read_text())
        quota = int((root / "cpu" / rel / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / rel / "cpu.cfs_period_us").read_text())
    else:
        memory = int((root / rel / "memory.max").read_text())
        quota_s, period_s = (root / rel / "cpu.max").read_text().split()
        quota, period = int(quota_s), int(period_s)
    return memory, quota * 1000 // period


def machine_http_get(machine: PodmanService, url: str, timeout_s: float = 10.0) -> str:
    """GET from inside the machine's network namespace (where the agent's probes run), with
    retries while the server starts. busybox wget, as no host client joins a netns; its -T
    flag crashes Debian's static busybox, so the subprocess timeout bounds each try."""
    if machine.netns is None:
        return http_get(url, timeout_s)
    argv = [*machine.netns.exec_prefix(), str(BUSYBOX_PATH), "wget", "-qO-", url]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            error = "no answer within 5 s"
        else:
            if done.returncode == 0:
                return done.stdout
            error = f"exit {done.returncode}: {done.stderr.strip()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {url} in {machine.netns.name} failed ({error})")
        time.sleep(0.1)
