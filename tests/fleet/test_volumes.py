"""Volumes end to end (real agents and Podman, each machine in its own network namespace).

A StatefulSet with a claim template: each ordinal writes a line to its volume when it starts.
A rolling restart replaces every pod, and each ordinal goes back to the machine that holds its
volume and finds its data (data gravity); when that machine dies the ordinal starts elsewhere
with an empty volume. A hostPath runs only on a machine whose agent.toml allows its directory;
the others say why they do not bid.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from healing_lib import kill_machine, machine_name
from podman_mesh import podman_mesh

from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for

pytestmark = pytest.mark.slow

BUSYBOX = "localhost/beemesh/busybox:latest"
WRITE = "echo \"start $HOSTNAME\" >> /data/log; trap 'exit 0' TERM; sleep 100000 & wait"
ALLOWED = "/tmp/beemesh-fleet-hostpath"


def statefulset(restarted: str = "") -> str:
    annotations = (f"\n      annotations: {{kubectl.kubernetes.io/restartedAt: \"{restarted}\"}}"
                   if restarted else "")
    return f"""\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  replicas: 2
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata:
      labels: {{app: db}}{annotations}
    spec:
      containers:
      - name: db
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", {json.dumps(WRITE)}]
        volumeMounts: [{{name: data, mountPath: /data}}]
        readinessProbe: {{exec: {{command: [test, -f, /data/log]}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 16Mi}}}}
"""


HOST_PATH = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reader}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: reader}}}}
  template:
    metadata: {{labels: {{app: reader}}}}
    spec:
      volumes: [{{name: h, hostPath: {{path: {ALLOWED}/site, type: DirectoryOrCreate}}}}]
      containers:
      - name: r
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
        volumeMounts: [{{name: h, mountPath: /site, readOnly: true}}]
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
"""


@pytest.fixture(scope="module")
def mesh(podman_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    allowing = tmp_path_factory.mktemp("m3-config") / "agent.toml"
    allowing.write_text(f'host_path_roots = ["{ALLOWED}"]\n')
    try:
        with podman_mesh("beemesh-volumes-", tmp_path_factory.mktemp("volumes-logs"), {
                "m1": [], "m2": [], "m3": ["--config", str(allowing)]}) as mesh:
            yield mesh
    finally:
        shutil.rmtree(ALLOWED, ignore_errors=True)


def apply(mesh: LocalMesh, tmp: Path, text: str, wait: float = 180) -> Any:
    path = tmp / f"{abs(hash(text))}.yaml"
    path.write_text(text)
    return mesh.operator(mesh.agents["m1"].api, "apply", "-f", str(path), "--wait",
                         "--timeout", str(wait), timeout=wait + 60)


def placement(agent: AgentProc, workload: str) -> dict[str, str]:
    """pod -> machine of the ready, running pods of `workload`."""
    return {p["pod"]: p["machine"] for p in agent.get_json("get", "pods")
            if p["workload"] == workload and p["state"] == "running" and p["ready"]}


def data(mesh: LocalMesh, machine: str, pod: str) -> list[str]:
    done = mesh.podman(machine).run("exec", f"{pod}-db", "cat", "/data/log")
    return done.stdout.split("\n")[:-1] if done.returncode == 0 else [f"ERROR {done.stderr}"]


def test_a_host_path_runs_only_where_agent_toml_allows_it(mesh: LocalMesh,
                                                          tmp_path: Path) -> None:
    done = apply(mesh, tmp_path, HOST_PATH, wait=120)
    assert done.returncode == 0, done.stdout + done.stderr
    pods = [p for p in mesh.agents["m3"].get_json("get", "pods")
            if p["workload"] == "deployment/default/reader"]
    assert [machine_name(mesh, p["machine"]) for p in pods] == ["m3"]
    # a path no machine allows: nowhere, and apply says why of every machine
    stray = HOST_PATH.replace("name: reader", "name: stray").replace(
        f"{ALLOWED}/site", "/tmp/beemesh-fleet-elsewhere")
    done = apply(mesh, tmp_path, stray, wait=15)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "hostPath /tmp/beemesh-fleet-elsewhere is not under this machine's host_path_roots " \
        "(none)" in said, said
    assert f"host_path_roots ({ALLOWED})" in said, said
    for name in ("stray", "reader"):  # reader cannot move: a drain of m3 would wait for it
        deleted = mesh.operator(mesh.agents["m1"].api, "delete", "deployment", name)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr


def claimed(mesh: LocalMesh, workload: str) -> set[int]:
    """Ordinals of `workload` whose claim volumes some machine's record lists."""
    return {v["ordinal"] for a in mesh.agents.values() if a.alive()
            for row in a.get_json("nodes") for v in row.get("volumes", [])
            if v["workload_id"] == workload}


def ordered(name: str, replicas: int, retention: str = "") -> str:
    """A StatefulSet (OrderedReady, the default) whose pods get ready 2 s after they start."""
    return statefulset().replace("name: db}", f"name: {name}}}").replace(
        "app: db", f"app: {name}").replace("serviceName: db", f"serviceName: {name}").replace(
        "replicas: 2", f"replicas: {replicas}" + retention).replace(
        json.dumps(WRITE), json.dumps("sleep 2; " + WRITE))


def test_ordinals_start_in_order_and_their_volumes_go_as_the_policy_says(
        mesh: LocalMesh, tmp_path: Path) -> None:
    m1, wid = mesh.agents["m1"], "statefulset/default/ord"
    done = apply(mesh, tmp_path, ordered("ord", 3, "\n  persistentVolumeClaimRetentionPolicy: "
                                         "{whenScaled: Delete}"))
    assert done.returncode == 0, done.stdout + done.stderr
    pods = wait_for(lambda: len(p := {r["replica"]: r for r in m1.get_json("get", "pods")
                                      if r["workload"] == wid and r["ready"]}) == 3 and p, 90,
                    "the three ordinals ready")
    created = [pods[k]["created"] for k in range(3)]
    # each ordinal was created only once the one before was ready (>= 2 s after it started)
    assert created[1] - created[0] >= 2 and created[2] - created[1] >= 2, created
    wait_for(lambda: claimed(mesh, wid) == {0, 1, 2}, 60, "the records to list the claims")

    # scaled down: ordinals 1 and 2 go, and so do their volumes (whenScaled: Delete)
    done = mesh.operator(m1.api, "scale", "statefulset/ord", "--replicas", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: claimed(mesh, wid) == {0}, 90, "the volumes of ordinals 1 and 2 removed")

    # deleted: the volume stays unless asked (Kubernetes keeps PVCs)
    done = mesh.operator(m1.api, "delete", "statefulset", "ord", "--delete-volumes")
    assert done.returncode == 0 and "its claim volumes too" in done.stderr + done.stdout, \
        done.stdout + done.stderr
    wait_for(lambda: claimed(mesh, wid) == set(), 90, "ordinal 0's volume removed")


def test_drain_keeps_data_when_asked_and_describe_says_when_an_ordinal_started_afresh(
        mesh: LocalMesh, tmp_path: Path) -> None:
    m1, wid = mesh.agents["m1"], "statefulset/default/kd"
    done = apply(mesh, tmp_path, ordered("kd", 1))
    assert done.returncode == 0, done.stdout + done.stderr
    home = wait_for(lambda: placement(m1, wid).get("kd-0"), 60, "kd-0 ready")
    name = machine_name(mesh, home)
    done = mesh.operator(m1.api, "drain", home, "--keep-data", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    time.sleep(8)  # long enough for a replacement to have started elsewhere: none does
    assert placement(m1, wid) == {}
    other = next(a for a in mesh.agents.values() if a.peer_id != home)
    wait_for(lambda: "(data gravity)" in mesh.operator(other.api, "describe",
                                                       "statefulset/kd").stdout, 60,
             "describe to say the ordinal waits for the machine that holds its data")
    done = mesh.operator(m1.api, "uncordon", home)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: placement(m1, wid).get("kd-0") == home and data(mesh, name, "kd-0") == [
        "start kd-0", "start kd-0"], 90, "kd-0 back on its machine, beside its data")

    # a plain drain moves it, and it starts afresh elsewhere; describe says so
    done = mesh.operator(m1.api, "drain", home, "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    moved = wait_for(lambda: (m := placement(m1, wid).get("kd-0")) and m != home and m, 90,
                     "kd-0 on another machine")
    wait_for(lambda: data(mesh, machine_name(mesh, moved), "kd-0") == ["start kd-0"], 30,
             "kd-0 to start with an empty volume")
    described = mesh.operator(m1.api, "describe", "statefulset/kd").stdout
    assert f"Replica 0:   started afresh on {moved}" in described, described
    assert mesh.operator(m1.api, "uncordon", home).returncode == 0
    assert mesh.operator(m1.api, "delete", "statefulset", "kd").returncode == 0


def test_each_ordinal_goes_back_to_its_volume_and_starts_afresh_when_it_is_gone(
        mesh: LocalMesh, tmp_path: Path) -> None:
    m1 = mesh.agents["m1"]
    done = apply(mesh, tmp_path, statefulset())
    assert done.returncode == 0, done.stdout + done.stderr
    before = wait_for(lambda: len(p := placement(m1, "statefulset/default/db")) == 2 and p, 60,
                      "both ordinals ready")
    for pod, machine in before.items():
        assert data(mesh, machine_name(mesh, machine), pod) == [f"start {pod}"]
    # the records say where the data is
    wait_for(lambda: {(v["workload_id"], v["ordinal"]) for a in mesh.agents.values()
                      for row in a.get_json("nodes") for v in row.get("volumes", [])}
             >= {("statefulset/default/db", 0), ("statefulset/default/db", 1)}, 60,
             "the machine records to list both claim volumes")

    # every pod replaced: each ordinal back on its volume's machine, its data there
    done = apply(mesh, tmp_path, statefulset(restarted=str(time.time())))
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: placement(m1, "statefulset/default/db") == before and all(
        len(data(mesh, machine_name(mesh, m), pod)) == 2 for pod, m in before.items()), 180,
        "both ordinals restarted where their volumes are, with their data")

    # the machine holding ordinal 1's volume dies: it starts elsewhere, with an empty volume
    victim = machine_name(mesh, before["db-1"])
    kill_machine(mesh, victim)
    survivors = [m for m in mesh.agents if m != victim]
    moved = wait_for(lambda: (m := placement(mesh.agents[survivors[0]],
                                             "statefulset/default/db").get("db-1"))
                     and machine_name(mesh, m) != victim and m, 120,
                     "ordinal 1 to run on another machine")
    assert data(mesh, machine_name(mesh, moved), "db-1") == ["start db-1"]
