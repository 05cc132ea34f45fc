"""Workload streams against direct TCP, on a real 2-machine mesh (agent, work plane and Podman
per machine, each machine in its own network namespace).

A Service `echo` selects one replica on w2; a `client` pod runs on w1. The same echo server
(`echo.py serve`, the host's Python) runs twice on w2: inside the echo pod's network namespace
(what the Service reaches) and in w2's own namespace (the direct baseline). The same client
(`echo.py measure`) runs inside the client pod's namespace against the Service's address (pod
-> listener -> w1's work plane -> libp2p stream -> w2's work plane -> pod) and in w1's own
namespace straight to w2 (one TCP hop). Measured: round trips of 64-byte messages on one
connection (p50/p99), connection set-up (connect + first echo: the handshake is in it), and
one connection's throughput, both directions at once; and, as the ceiling under it, one bare
py-libp2p stream between two hosts set up as the work planes' are, one way. Then the work
plane's RSS on w1 with 1 and 5 client replicas (each with its Service listener), as the slope
per extra replica.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beemesh.lab.localmesh import LocalMesh, wait_for
from beemesh.workplane.names import address

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from healing_bench import rss_mb, start, wait_joined
from healing_lib import apply
from scheduling_bench import percentile

MACHINES = ("w1", "w2")
ECHO = Path(__file__).resolve().parent / "echo.py"
TPUT = Path(__file__).resolve().parent / "libp2p_tput.py"
TPUT_PORT = 9002
PORT, DIRECT_PORT = 9000, 9001
SECONDS = 5.0
ROUNDS = 3  # throughput runs of each, taking turns; the median is reported
CLIENTS = (1, 5)
BUSYBOX = "localhost/beemesh/busybox:latest"


def deployment(name: str, machine: str, port: str = "") -> str:
    ports = f"\n        ports: [{{name: echo, containerPort: {PORT}}}]" if port else ""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{machine: {machine}}}
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]{ports}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
"""


SERVICE = f"""\
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{port: {PORT}, targetPort: echo}}]
"""


def netns_of(mesh: LocalMesh, machine: str, pod: str) -> list[str]:
    """The command prefix that runs a host program inside a pod's network namespace."""
    podman = mesh.podman(machine)
    infra = podman.run("pod", "inspect", pod, "--format", "{{.InfraContainerID}}")
    pid = podman.run("inspect", infra.stdout.strip(), "--format", "{{.State.Pid}}")
    return ["nsenter", f"--net=/proc/{pid.stdout.strip()}/ns/net", "--"]


def measure(prefix: list[str], host: str, port: int) -> dict[str, Any]:
    done = subprocess.run([*prefix, sys.executable, str(ECHO), "measure", host, str(port),
                           str(SECONDS)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"echo client: {done.stderr.strip()[-400:]}")
    raw = json.loads(done.stdout)
    ms = [t * 1000 for t in raw["rtt_s"]]
    setup = [t * 1000 for t in raw["setup_s"]]
    return {"rtt_ms": {"p50": round(statistics.median(ms), 3), "p99": round(percentile(ms, 0.99),
                                                                             3)},
            "setup_ms": {"p50": round(statistics.median(setup), 2),
                         "p99": round(percentile(setup, 0.99), 2)},
            "throughput_mb_s": round(raw["echoed_bytes"] / raw["seconds"] / 2**20, 2)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput, with every run's throughput beside it."""
    ranked = sorted(runs, key=lambda r: r["throughput_mb_s"])
    return {**ranked[len(ranked) // 2],
            "throughput_mb_s_runs": [r["throughput_mb_s"] for r in runs]}


def libp2p_ceiling(mesh: LocalMesh) -> float:
    """One bare py-libp2p stream from w1's namespace to w2's, one way (`libp2p_tput.py`)."""
    server = subprocess.Popen([*mesh.netns("w2").exec_prefix(), sys.executable, str(TPUT),
                               "serve", str(TPUT_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        addr = server.stdout.readline().strip().replace("0.0.0.0", mesh.netns("w2").ip)
        done = subprocess.run([*mesh.netns("w1").exec_prefix(), sys.executable, str(TPUT),
                               "send", addr, str(SECONDS)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"libp2p_tput: {done.stderr.strip()[-400:]}")
        return float(json.loads(done.stdout.splitlines()[-1])["mb_s"])
    finally:
        server.kill()


def run() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="beemesh-bench-streams-"))
    mesh = LocalMesh.create(root)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        start(mesh, MACHINES[0], None)
        start(mesh, MACHINES[1], MACHINES[0])
        wait_joined(mesh, MACHINES)
        apply(mesh, root, "w1", "---\n".join([deployment("echo", "w2", port="echo"), SERVICE,
                                               deployment("client", "w1")]))
        echo_ns, client_ns = netns_of(mesh, "w2", "echo-0"), netns_of(mesh, "w1", "client-0")
        w2 = mesh.netns("w2")
        for prefix, port in ((echo_ns, PORT), (w2.exec_prefix(), DIRECT_PORT)):
            servers.append(subprocess.Popen([*prefix, sys.executable, str(ECHO), "serve",
                                             str(port)]))
        target = address("default", "echo")
        wait_for(lambda: subprocess.run(
            [*client_ns, sys.executable, "-c", f"import socket; c = socket.create_connection("
             f"('{target}', {PORT}), 3); c.sendall(b'x'); assert c.recv(1) == b'x'"],
            capture_output=True, timeout=30).returncode == 0, 90,
            "the client pod to reach echo through its Service", interval=1)
        runs: dict[str, list[dict[str, Any]]] = {"stream": [], "direct": []}
        for _ in range(ROUNDS):  # taking turns: the host's load drifts between runs
            runs["stream"].append(measure(client_ns, target, PORT))
            print(f"[bench] workload stream: {runs['stream'][-1]}", flush=True)
            runs["direct"].append(measure(mesh.netns("w1").exec_prefix(), w2.ip, DIRECT_PORT))
            print(f"[bench] direct TCP: {runs['direct'][-1]}", flush=True)
        stream, direct = (median_run(runs[k]) for k in ("stream", "direct"))
        ceiling = libp2p_ceiling(mesh)
        print(f"[bench] bare py-libp2p stream, one way: {ceiling} MB/s", flush=True)
        rss: dict[int, float] = {}
        for count in CLIENTS:
            if count > 1:  # one Deployment each, as the healing group's memory figure
                apply(mesh, root, "w1", "---\n".join(
                    deployment(f"client{i}", "w1") for i in range(1, count)), timeout=300)
            time.sleep(8)  # certified, listeners handed over, records published
            rss[count] = rss_mb(mesh, ["w1"])["w1"][1]
            print(f"[bench] work plane RSS on w1 with {count} client replicas: "
                  f"{rss[count]:.1f} MB", flush=True)
        lo, hi = CLIENTS
        return {
            "stream": stream, "direct": direct, "libp2p_one_way_mb_s": ceiling,
            "throughput_ratio": round(stream["throughput_mb_s"] / direct["throughput_mb_s"], 3),
            "added_rtt_ms_p50": round(stream["rtt_ms"]["p50"] - direct["rtt_ms"]["p50"], 3),
            "added_rtt_ms_p99": round(stream["rtt_ms"]["p99"] - direct["rtt_ms"]["p99"], 3),
            "workplane_rss_mb_by_clients": {str(k): round(v, 1) for k, v in rss.items()},
            "workplane_rss_mb_per_extra_replica": round((rss[hi] - rss[lo]) / (hi - lo), 2),
        }
    finally:
        for s in servers:
            s.kill()
        mesh.close()
