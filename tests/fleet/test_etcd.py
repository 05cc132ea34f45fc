"""A real Raft workload: a 3-member etcd StatefulSet (Debian's etcd 3.4 in a local image) on
Beemesh, its members finding each other by their stable names (`etcd-0.etcd`, ...) over
workload streams, its data on claim volumes.

Four machines, each in its own network namespace, each offering room for one member. The
cluster forms across three of them; a key written through one member is read through another;
a member whose pod is killed comes back on the same machine with its data and rejoins; when a
member's machine dies the other two keep serving reads and writes, and the cluster never lists
two members with one name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_image import MANIFEST, MEMBERS, ensure_etcd_image, etcdctl, healthy, members, placement
from healing_lib import kill_machine
from podman_mesh import podman_mesh

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def mesh(podman_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    room = tmp_path_factory.mktemp("etcd-config") / "agent.toml"
    room.write_text(f"max_memory_bytes = {192 * 2**20}\n")  # one member per machine
    with podman_mesh("beemesh-etcd-", tmp_path_factory.mktemp("etcd-logs"), {
            f"m{i}": ["--config", str(room)] for i in range(1, 5)}) as mesh:
        for name in mesh.agents:
            ensure_etcd_image(mesh.podmans[name])
        yield mesh


def test_a_three_member_etcd_forms_serves_and_keeps_its_data(mesh: LocalMesh,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "etcd.yaml"
    path.write_text(MANIFEST)
    t0 = time.monotonic()
    done = mesh.operator(mesh.agents["m1"].api, "apply", "-f", str(path), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    # 1. the cluster forms across three machines: 3 started members, one leader
    listed = wait_for(lambda: (ms := members(mesh, "etcd-0")) and len(ms) == 3 and all(
        m.get("name") for m in ms) and ms, 240, "3 started members")
    assert sorted(m["name"] for m in listed) == list(MEMBERS)
    wait_for(lambda: healthy(mesh, *MEMBERS), 120, "every member healthy")
    where = placement(mesh)
    assert len(set(where.values())) == 3, where
    status = [json.loads(etcdctl(mesh, m, "endpoint", "status", "-w", "json"))[0]["Status"]
              for m in MEMBERS]
    assert len({s["leader"] for s in status}) == 1
    print(f"[etcd] healthy 3-member cluster {time.monotonic() - t0:.1f} s after apply")
    # each member knows its stable name and its group's (/run/beemesh)
    files = {name: json.loads(mesh.podman(where["etcd-0"]).run(
        "exec", "etcd-0-etcd", "cat", f"/run/beemesh/{name}").stdout)
        for name in ("self.json", "peers.json")}
    assert files["self.json"]["name"] == "etcd-0.etcd"
    assert sorted(m["name"] for m in files["peers.json"]["members"]) == [
        f"{m}.etcd" for m in MEMBERS]

    # 2. written through member 0, read through member 2
    assert etcdctl(mesh, "etcd-0", "put", "beemesh", "raft") is not None
    assert etcdctl(mesh, "etcd-2", "get", "beemesh", "--print-value-only") == "raft\n"

    # 3. the pod of member 1 is killed: back on the same machine, with its data, rejoined
    machine = where["etcd-1"]
    revision = json.loads(etcdctl(mesh, "etcd-1", "endpoint", "status", "-w", "json"))[0]
    mesh.podman(machine).run("pod", "rm", "--force", "--time", "0", "etcd-1")
    t1 = time.monotonic()
    wait_for(lambda: placement(mesh).get("etcd-1") == machine and healthy(mesh, *MEMBERS),
             180, "member 1 back on its machine and the cluster healthy")
    print(f"[etcd] killed member healthy again after {time.monotonic() - t1:.1f} s")
    assert etcdctl(mesh, "etcd-1", "get", "beemesh", "--print-value-only",
                   "--consistency=s") == "raft\n"
    after = json.loads(etcdctl(mesh, "etcd-1", "endpoint", "status", "-w", "json"))[0]
    assert after["Status"]["header"]["member_id"] == revision["Status"]["header"]["member_id"]

    # 4. the machine of member 2 dies: members 0 and 1 keep serving reads and writes
    kill_machine(mesh, where["etcd-2"])
    wait_for(lambda: etcdctl(mesh, "etcd-0", "put", "after", "death") is not None, 60,
             "a write through member 0 after member 2's machine died")
    assert etcdctl(mesh, "etcd-1", "get", "after", "--print-value-only") == "death\n"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # whatever the replacement does, names stay unique
        listed = members(mesh, "etcd-0") or []
        names = [m.get("name") for m in listed if m.get("name")]
        assert len(names) == len(set(names)) and len(listed) == 3, listed
        time.sleep(3)
