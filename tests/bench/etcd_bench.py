"""A real Raft workload on Beemesh against the same containers on one Podman network.

Beemesh: three machines (agent, work plane, Podman, each in its own network namespace) run the
3-member etcd StatefulSet of the fleet test (`etcd_image.MANIFEST`: members reach each other
by `etcd-N.etcd` over workload streams). Measured: `apply` to every member healthy; a member's
pod removed (`podman pod rm -f`) to the cluster healthy again (it comes back on its machine,
with its data); and the latency of writes: WRITES sequential puts through member 0's HTTP
gateway on one kept-alive connection, from member 0's machine (so the client's own hop is a
local bridge), each committed by a majority over Beemesh's workload streams.

Baseline: the same image and command, three containers on one user-defined Podman network in
one namespace (names by --add-host), the same client against member 0. The ratio of the two
p50s is what Beemesh's workload networking costs a Raft group.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from etcd_image import CLUSTER, ETCD_IMAGE, MANIFEST, MEMBERS, RUN, ensure_etcd_image, healthy
from podman_mesh import podman_mesh
from scheduling_bench import percentile

WRITES = 300
SUBNET = "10.89.77"
CLIENT = """
import base64, http.client, json, sys, time
host, n = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, 2379, timeout=10)
def put(i):
    body = json.dumps({"key": base64.b64encode(b"bench/%d" % i).decode(),
                       "value": base64.b64encode(b"x" * 100).decode()})
    conn.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
for i in range(20):
    put(i)
out = []
for i in range(n):
    t = time.perf_counter(); put(i); out.append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"""


def write_latencies(netns: str, host: str) -> list[float]:
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, host,
                           str(WRITES)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"write client failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(ms), "p99": percentile(ms, 99)}


def pod_ip(mesh: LocalMesh, machine: str, pod: str) -> str:
    done = mesh.podman(machine).run("pod", "inspect", pod, "--format",
                                    "{{.InfraContainerID}}")
    infra = done.stdout.strip()
    done = mesh.podman(machine).run("inspect", infra, "--format",
                                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    return done.stdout.strip()


def on_beemesh(root: Path) -> dict[str, Any]:
    from etcd_image import placement

    room = root / "agent.toml"
    room.write_text(f"max_memory_bytes = {192 * 2**20}\n")  # one member per machine
    with podman_mesh("beemesh-bench-etcd-", root, {
            f"e{i}": ["--config", str(room)] for i in range(1, 4)}) as mesh:
        for name in mesh.agents:
            ensure_etcd_image(mesh.podmans[name])
        manifest = root / "etcd.yaml"
        manifest.write_text(MANIFEST)
        t0 = time.monotonic()
        done = mesh.operator(mesh.agents["e1"].api, "apply", "-f", str(manifest), timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"apply failed: {done.stderr}")
        wait_for(lambda: len(placement(mesh)) == 3 and healthy(mesh, *MEMBERS), 300,
                 "every member healthy")
        formed = time.monotonic() - t0
        where = placement(mesh)
        mesh.podman(where["etcd-1"]).run("pod", "rm", "--force", "--time", "0", "etcd-1")
        t1 = time.monotonic()
        wait_for(lambda: placement(mesh).get("etcd-1") == where["etcd-1"]
                 and healthy(mesh, *MEMBERS), 300, "member 1 healthy again")
        rejoined = time.monotonic() - t1
        machine = where["etcd-0"]
        latencies = write_latencies(mesh.netns(machine).name, pod_ip(mesh, machine, "etcd-0"))
    return {"apply_to_healthy_s": formed, "killed_to_healthy_s": rejoined,
            "write_ms": summary(latencies)}


def on_one_network(root: Path) -> dict[str, Any]:
    mesh = LocalMesh.create(root)
    try:
        podman = mesh.podman("base")
        ensure_etcd_image(podman)
        podman.run("network", "create", "--subnet", f"{SUBNET}.0/24", "bench-etcd")
        hosts = [f"--add-host={m}.etcd:{SUBNET}.{10 + i}" for i, m in enumerate(MEMBERS)]
        for i, member in enumerate(MEMBERS):
            done = podman.run("run", "-d", "--name", member, "--hostname", member,
                              "--network", "bench-etcd", "--ip", f"{SUBNET}.{10 + i}",
                              "-e", f"HOSTNAME={member}", *hosts, ETCD_IMAGE,
                              "/bin/sh", "-c", f"mkdir -p /var/lib/etcd && {RUN}")
            if done.returncode != 0:
                raise RuntimeError(f"podman run {member}: {done.stderr.strip()}")

        def ok() -> bool:
            return all(podman.run("exec", m, "etcdctl", "--endpoints=http://127.0.0.1:2379",
                                  "endpoint", "health").returncode == 0 for m in MEMBERS)

        wait_for(ok, 120, "the baseline cluster healthy")
        latencies = write_latencies(mesh.netns("base").name, f"{SUBNET}.10")
        return {"write_ms": summary(latencies), "cluster": CLUSTER}
    finally:
        mesh.close()


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as tmp:
        root = Path(tmp)
        (root / "beemesh").mkdir()
        (root / "base").mkdir()
        beemesh = on_beemesh(root / "beemesh")
        base = on_one_network(root / "base")
    return {"beemesh": beemesh, "one_network": base, "writes": WRITES,
            "write_p50_ratio": beemesh["write_ms"]["p50"] / base["write_ms"]["p50"]}
