"""Helpers for the self-healing tests: what every Podman really runs, dead machines, samplers.

The tests judge the system by what the machines' Podmans run and what answers on the network,
not only by what an agent believes; `real_pods` reads every Podman directly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beemesh.lab.localmesh import LocalMesh, wait_for

BUSYBOX = "localhost/beemesh/busybox:latest"
PORT = 18080
# busybox httpd on PORT serving "<pod> <ordinal>"; sh as PID 1 exits on SIGTERM only when it
# traps it (otherwise every stop waits out its grace period).
HTTPD = ('mkdir -p /www && echo "$BEEMESH_POD" > /www/index.html && '
         "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")


def manifest(kind: str, name: str, replicas: int, *, host_port: int | None = PORT,
             readiness: bool = True) -> str:
    """A Deployment or StatefulSet of busybox httpd, ready when it serves its page."""
    port = f"\n        ports: [{{containerPort: 8080, hostPort: {host_port}}}]" if host_port else ""
    probe = ("\n        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1, "
             "failureThreshold: 2}") if readiness else ""
    extra = f"\n  serviceName: {name}" if kind == "StatefulSet" else ""
    return f"""\
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
  replicas: {replicas}{extra}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", {json.dumps(HTTPD)}]{port}{probe}
        resources: {{requests: {{cpu: 50m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
"""


def apply(mesh: LocalMesh, tmp: Path, via: str, text: str, timeout: float = 120) -> None:
    path = tmp / f"m{abs(hash(text))}.yaml"
    path.write_text(text)
    done = mesh.operator(mesh.agents[via].api, "apply", "-f", str(path), "--wait",
                         "--timeout", str(timeout), timeout=timeout + 30)
    assert done.returncode == 0, done.stdout + done.stderr


def start_machines(root: Path, names: tuple[str, ...]) -> LocalMesh:
    """A mesh of podman machines (the first is everyone's bootstrap peer), all joined."""
    mesh = LocalMesh.create(root)
    try:
        mesh.prepare_podmans(names)
        seed = mesh.start(names[0], podman=True)
        for name in names[1:]:
            mesh.start(name, podman=True, bootstrap=[seed.addr])
        wait_sees(mesh, names)
    except BaseException:
        mesh.close()
        raise
    return mesh


def wait_sees(mesh: LocalMesh, group: tuple[str, ...] | list[str], timeout: float = 90) -> None:
    """Every machine of `group` sees exactly the machines of `group`, with a working runtime."""
    ids = {mesh.agents[n].peer_id for n in group}
    for name in group:
        a = mesh.agents[name]
        wait_for(lambda a=a: a.node_ids() == ids and a.status()["runtime"] == "ok", timeout,
                 f"{name} to see exactly {sorted(group)}")


def real_pods(mesh: LocalMesh, workload: str | None = None,
              running_only: bool = False) -> list[tuple[str, str]]:
    """(machine name, pod name) of every beemesh pod every live Podman runs."""
    out = []
    for name, service in mesh.podmans.items():
        res = service.run("pod", "ps", "--format", "json", "--filter", "label=beemesh.workload")
        for pod in json.loads(res.stdout or "[]"):
            labels = pod.get("Labels") or {}
            if workload is not None and labels.get("beemesh.workload") != workload:
                continue
            if running_only and str(pod.get("Status", "")).lower() != "running":
                continue
            out.append((name, pod["Name"]))
    return sorted(out)


def machine_name(mesh: LocalMesh, peer: str) -> str:
    return next(n for n, a in mesh.agents.items() if a.peer_id == peer)


def kill_machine(mesh: LocalMesh, name: str) -> None:
    """A machine that dies: agent and work plane killed at once, its containers gone."""
    mesh.stop(name, signal.SIGKILL)
    mesh.podmans[name].run("pod", "rm", "--force", "--all", "--time", "0", timeout=120)


def restart_machine(mesh: LocalMesh, name: str, seed: str) -> None:
    mesh.start(name, podman=True, bootstrap=[mesh.agents[seed].addr])


def ready_records(mesh: LocalMesh, via: str, workload: str) -> list[dict[str, Any]]:
    rows = mesh.agents[via].get_json("get", "endpoints", workload)
    return [r for r in rows if r["ready"]]


def wait_settled(mesh: LocalMesh, via: str, workload: str, replicas: int,
                 timeout: float = 120) -> list[tuple[str, str]]:
    """Until exactly `replicas` pods of `workload` run across all Podmans, one per ordinal,
    each with a ready service record."""
    def settled() -> list[tuple[str, str]] | None:
        pods = real_pods(mesh, workload, running_only=True)
        ready = ready_records(mesh, via, workload)
        names = [p for _, p in pods]
        if len(pods) == replicas and len(set(names)) == replicas and \
                {r["pod"] for r in ready} == set(names) and len(ready) == replicas:
            return pods
        return None

    return wait_for(settled, timeout, f"{replicas} ready replicas of {workload}", interval=1)


class Sampler(threading.Thread):
    """Samples something in the background (e.g. how many replicas answer HTTP) until stop()."""

    def __init__(self, probe: Callable[[], Any], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic(), self.probe()))
            time.sleep(self.interval)

    def stop(self) -> list[tuple[float, Any]]:
        self._stop_event.set()
        self.join(10)
        return self.samples


def answering(mesh: LocalMesh, port: int = PORT) -> list[str]:
    """The pods that answer HTTP on `port` at each machine's address right now."""
    got = []
    for service in mesh.podmans.values():
        try:
            with urllib.request.urlopen(f"http://{service.address}:{port}/", timeout=1) as r:
                got.append(r.read().decode().strip())
        except (urllib.error.URLError, OSError):
            continue
    return got


def wait_gone(mesh: LocalMesh, workload: str, timeout: float = 60) -> None:
    wait_for(lambda: not real_pods(mesh, workload), timeout, f"every pod of {workload} gone")
