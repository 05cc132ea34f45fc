"""Scheduling end to end: real agents, real Podman (one service per machine), real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beemesh.lab.localmesh import BEEMESH, LocalMesh, wait_for
from beemesh.node.local import RUNTIME_POLL_S

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WEB = EXAMPLES / "web.yaml"


def pods(mesh: LocalMesh, name: str) -> list[dict[str, Any]]:
    return mesh.agents[name].get_json("get", "pods")


def podman_pods(mesh: LocalMesh, name: str) -> list[dict[str, Any]]:
    """What this machine's Podman really runs (not what any agent believes)."""
    out = mesh.podman(name).run("pod", "ps", "--format", "json", "--filter",
                                "label=beemesh.workload")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "[]")


def http_get(address: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """Three machines with labels zone=a/b/b; m3 offers at most 256 MiB to workloads."""
    root = tmp_path_factory.mktemp("m3")
    mesh = LocalMesh.create(root)
    small = root / "small.toml"
    small.write_text(f"max_memory_bytes = {256 * 2**20}\n")
    try:
        mesh.prepare_podmans(["m1", "m2", "m3"])
        seed = mesh.start("m1", podman=True, extra=["--labels", "zone=a"])
        mesh.start("m2", podman=True, bootstrap=[seed.addr], extra=["--labels", "zone=b"])
        mesh.start("m3", podman=True, bootstrap=[seed.addr],
                   extra=["--labels", "zone=b", "--config", str(small)])
        ids = {a.peer_id for a in mesh.agents.values()}
        for a in mesh.agents.values():
            wait_for(lambda a=a: a.node_ids() == ids and a.status()["runtime"] == "ok", 30,
                     f"{a.name} to see all machines with a working runtime")
        yield mesh
    finally:
        mesh.close()


def test_deployment_runs_one_replica_per_machine_with_limits_and_http(mesh3: LocalMesh) -> None:
    m1 = mesh3.agents["m1"]
    done = mesh3.operator(m1.api, "apply", "-f", str(WEB), "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 replicas deployed" in done.stderr

    rows = wait_for(lambda: len(pods(mesh3, "m1")) == 3 and pods(mesh3, "m1"), 15,
                    "3 pods in get pods")
    assert {r["workload"] for r in rows} == {"deployment/default/web"}
    assert sorted(r["replica"] for r in rows) == [0, 1, 2]
    assert len({r["machine"] for r in rows}) == 3, "replicas must be spread one per machine"
    assert all(r["state"] == "running" for r in rows)

    for name in ("m1", "m2", "m3"):
        real = podman_pods(mesh3, name)
        assert len(real) == 1, (name, real)
        ctr = [c for c in real[0]["Containers"] if not c["Names"].endswith("-infra")]
        assert len(ctr) == 1
        inspect = json.loads(mesh3.podman(name).run("inspect", ctr[0]["Id"]).stdout)[0]
        host = inspect["HostConfig"]
        assert host["Memory"] == 64 * 2**20
        cpu = host.get("NanoCpus") or host["CpuQuota"] * 1e9 / host["CpuPeriod"]
        assert cpu == pytest.approx(0.25e9)
        assert inspect["Config"]["Labels"]["beemesh.workload"]
        assert "hello from" in http_get(mesh3.podman(name).address, 18080)


def test_logs_come_from_whichever_machine_runs_the_pod(mesh3: LocalMesh) -> None:
    rows = pods(mesh3, "m1")
    by_machine = {r["machine"]: r["pod"] for r in rows}
    m1 = mesh3.agents["m1"]
    local, remote = by_machine[m1.peer_id], next(p for m, p in by_machine.items()
                                                 if m != m1.peer_id)
    for pod in (local, remote):
        # busybox httpd logs nothing by itself, so write a line to the container's stdout.
        host = next(m for m, p in by_machine.items() if p == pod)
        name = next(n for n, a in mesh3.agents.items() if a.peer_id == host)
        ctr = next(c for c in podman_pods(mesh3, name)[0]["Containers"]
                   if not c["Names"].endswith("-infra"))
        mesh3.podman(name).run("exec", ctr["Id"], "sh", "-c",
                               f"echo marker-{pod} > /proc/1/fd/1")
        done = mesh3.operator(m1.api, "logs", pod)
        assert done.returncode == 0, done.stderr
        assert f"marker-{pod}" in done.stdout
    # --follow keeps streaming: a line written after it started arrives.
    follower = follow(mesh3, m1.api, "logs", remote, "--follow")
    try:
        host = next(m for m, p in by_machine.items() if p == remote)
        name = next(n for n, a in mesh3.agents.items() if a.peer_id == host)
        ctr = next(c for c in podman_pods(mesh3, name)[0]["Containers"]
                   if not c["Names"].endswith("-infra"))
        time.sleep(1)
        mesh3.podman(name).run("exec", ctr["Id"], "sh", "-c", "echo later-line > /proc/1/fd/1")
        assert wait_line(follower, lambda line: "later-line" in line, 15)
    finally:
        follower.kill()
        follower.wait(5)
    missing = mesh3.operator(m1.api, "logs", "no-such-pod")
    assert missing.returncode == 1
    assert "no pod named no-such-pod" in missing.stderr


def follow(mesh: LocalMesh, api: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "BEEMESH_FLEET": str(mesh.fleet), "BEEMESH_API": str(api)}
    return subprocess.Popen([*BEEMESH, *args], stdout=subprocess.PIPE, text=True, env=env)


def wait_line(proc: subprocess.Popen, match: Any, timeout: float) -> str:
    """First stdout line of a still-running command that satisfies `match`."""
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if match(line):
                found.append(line)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    assert found, f"no matching line within {timeout:.0f} s"
    return found[0]



def test_exec_runs_where_the_pod_runs_and_returns_its_exit_code(mesh3: LocalMesh) -> None:
    """`beemesh exec POD -- CMD` from m1 for a pod on another machine: that machine checks
    the operator's signature, runs the command in the pod's container and keeps the command
    in its audit trail; the CLI prints the output and exits with the command's exit code."""
    m1 = mesh3.agents["m1"]
    rows = pods(mesh3, "m1")
    host, pod = next((r["machine"], r["pod"]) for r in rows if r["machine"] != m1.peer_id)
    there = next(a for a in mesh3.agents.values() if a.peer_id == host)
    done = mesh3.operator(m1.api, "exec", pod, "--", "cat", "/www/index.html")
    assert done.returncode == 0, done.stderr
    ctr = next(c for c in podman_pods(mesh3, there.name)[0]["Containers"]
               if not c["Names"].endswith("-infra"))
    direct = mesh3.podman(there.name).run("exec", ctr["Id"], "cat", "/www/index.html")
    # the pod's own file, read on its own machine
    assert done.stdout == direct.stdout and done.stdout.startswith("hello from"), done.stdout
    done = mesh3.operator(m1.api, "exec", pod, "-c", "web", "--", "sh", "-c", "echo out; exit 7")
    assert (done.returncode, done.stdout) == (7, "out\n"), (done.stdout, done.stderr)
    entry = f"pod={pod} container=web command=sh -c 'echo out; exit 7'"
    wait_for(lambda: entry in (there.state_dir / "audit.jsonl").read_text(), 10,
             "the exec in the audit trail on disk (written behind)")
    done = mesh3.operator(m1.api, "exec", pod, "-c", "nope", "--", "true")
    assert done.returncode == 1 and "has no container 'nope'" in done.stderr, done.stderr
    assert "its containers: web" in done.stderr
    done = mesh3.operator(m1.api, "exec", "no-such-pod", "--", "true")
    assert done.returncode == 1 and "no pod named no-such-pod" in done.stderr, done.stderr
    done = mesh3.operator(m1.api, "exec", pod)
    assert done.returncode == 1 and "give the command after `--`" in done.stderr, done.stderr
    # Signed by another fleet's operator: refused by the machine, before anything runs.
    other = there.state_dir.parent / "other-exec-fleet"
    subprocess.run([*BEEMESH, "fleet", "init", "--out", str(other)], check=True,
                   capture_output=True)
    done = mesh3.operator(m1.api, "exec", pod, "--", "true", fleet=other)
    assert done.returncode == 1 and "rejected (untrusted): ExecRequest" in done.stderr, \
        done.stderr


def test_events_watch_streams_new_events(mesh3: LocalMesh, tmp_path: Path) -> None:
    m2 = mesh3.agents["m2"]
    watcher = follow(mesh3, m2.api, "events", "--watch", "-o", "json")
    try:
        time.sleep(1.5)
        done = mesh3.operator(m2.api, "apply", "-f", str(write_pod(tmp_path, "watched")))
        assert done.returncode == 0, done.stderr
        line = wait_line(watcher, lambda s: "pod/default/watched" in s and "TaskSeen" in s, 15)
        assert json.loads(line)["kind"] == "TaskSeen"
    finally:
        watcher.kill()
        watcher.wait(5)
    mesh3.operator(m2.api, "delete", "pod", "watched")
    for name in mesh3.agents:  # later tests count pods per machine
        wait_for(lambda name=name: not [p for p in podman_pods(mesh3, name)
                                        if p["Name"] == "watched-0"], 30, "watched-0 removed")


def test_reapply_keeps_running_replicas(mesh3: LocalMesh) -> None:
    done = mesh3.operator(mesh3.agents["m2"].api, "apply", "-f", str(WEB), "-o", "json")
    assert done.returncode == 0, done.stderr
    assert {t["state"] for t in json.loads(done.stdout)} == {"exists"}
    time.sleep(2)
    assert sum(len(podman_pods(mesh3, n)) for n in ("m1", "m2", "m3")) == 3


def test_restarted_agent_readopts_its_pod(mesh3: LocalMesh) -> None:
    before = podman_pods(mesh3, "m2")
    assert len(before) == 1
    mesh3.stop("m2", signal.SIGTERM)
    m2 = mesh3.start("m2", podman=True, bootstrap=[mesh3.agents["m1"].addr],
                     extra=["--labels", "zone=b"])
    wait_for(lambda: m2.status()["runtime"] == "ok", 20, "m2's runtime after restart")
    mine = wait_for(lambda: [p for p in pods(mesh3, "m2") if p["machine"] == m2.peer_id], 15,
                    "m2 to list its re-adopted pod")
    assert [p["pod"] for p in mine] == [before[0]["Name"]]
    time.sleep(3)
    after = podman_pods(mesh3, "m2")
    assert [p["Id"] for p in after] == [before[0]["Id"]], "pod was replaced, not re-adopted"
    assert len(pods(mesh3, "m1")) == 3


def test_a_service_is_kept_by_every_machine_and_lists_its_endpoints(mesh3: LocalMesh,
                                                                    tmp_path: Path) -> None:
    """A v1 Service applied on m1 (together with the workload it selects, in one file) is
    kept by every machine: `get services` on m3 lists it with the web replicas' service
    records as endpoints; `delete service` removes it everywhere."""
    m1, m3 = mesh3.agents["m1"], mesh3.agents["m3"]
    path = tmp_path / "with-service.yaml"
    path.write_text(WEB.read_text() + """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
""")
    done = mesh3.operator(m1.api, "apply", "-f", str(path), "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["state"] for r in rows if r["workload"] == "service/default/web"] == ["applied"]

    def listed(agent: Any) -> dict[str, Any] | None:
        rows = [r for r in agent.get_json("get", "services") if r["name"] == "web"]
        return rows[0] if rows and rows[0]["ready"] == 3 else None

    for agent in mesh3.agents.values():
        row = wait_for(lambda agent=agent: listed(agent), 20,
                       f"{agent.name} to list the Service with 3 ready endpoints")
        assert row["workloads"] == ["deployment/default/web"]
        assert sorted(e["pod"] for e in row["endpoints"]) == ["web-0", "web-1", "web-2"]
    shown = mesh3.operator(m3.api, "describe", "service", "web")
    assert shown.returncode == 0, shown.stderr
    assert "http 80->http/TCP" in shown.stdout and "Endpoints:   3 ready of 3" in shown.stdout
    done = mesh3.operator(m3.api, "delete", "service", "web")
    assert done.returncode == 0 and "service/default/web deleted" in done.stdout, done.stderr
    for agent in mesh3.agents.values():
        wait_for(lambda agent=agent: not agent.get_json("get", "svc"), 20,
                 f"{agent.name} to drop the Service")
    assert len(pods(mesh3, "m1")) == 3  # the workload it selected runs on


def test_delete_removes_every_replica(mesh3: LocalMesh) -> None:
    done = mesh3.operator(mesh3.agents["m3"].api, "delete", "deployment", "web")
    assert done.returncode == 0, done.stderr
    for name in ("m1", "m2", "m3"):
        wait_for(lambda name=name: podman_pods(mesh3, name) == [], 30,
                 f"{name} to remove its web pod")
    wait_for(lambda: pods(mesh3, "m1") == [], 10, "get pods to be empty")

    # A later apply of the same workload lifts the Delete everywhere.
    done = mesh3.operator(mesh3.agents["m2"].api, "apply", "-f", str(WEB), "--wait",
                          "--timeout", "60")
    assert done.returncode == 0, done.stderr
    time.sleep(RUNTIME_POLL_S + 1)  # a machine still holding the Delete would remove its pod
    assert sum(len(podman_pods(mesh3, n)) for n in ("m1", "m2", "m3")) == 3
    assert mesh3.operator(mesh3.agents["m2"].api, "delete", "deployment", "web").returncode == 0
    for name in ("m1", "m2", "m3"):
        wait_for(lambda name=name: podman_pods(mesh3, name) == [], 30, f"{name} emptied again")


def write_pod(tmp: Path, name: str, *, selector: dict[str, str] | None = None,
              memory: str = "16Mi") -> Path:
    lines = ["apiVersion: v1", "kind: Pod", f"metadata: {{name: {name}}}", "spec:"]
    if selector:
        lines.append("  nodeSelector: {" + ", ".join(f'"{k}": "{v}"' for k, v in
                                                      selector.items()) + "}")
    lines += ["  containers:", "  - name: main", "    image: localhost/beemesh/busybox:latest",
              '    command: ["sleep", "3600"]',
              f"    resources: {{requests: {{cpu: 10m, memory: {memory}}}}}"]
    path = tmp / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bids_sent(agent: Any) -> int:
    return agent.metrics().get("bids", {}).get("sent", 0)


def test_cordoned_machines_get_no_new_replicas(mesh3: LocalMesh, tmp_path: Path) -> None:
    m1, m2, m3 = (mesh3.agents[n] for n in ("m1", "m2", "m3"))
    for node in (m1, m2):
        assert mesh3.operator(m3.api, "cordon", node.peer_id).returncode == 0
    wait_for(lambda: sum(n["cordoned"] for n in m3.nodes()) == 2, 10, "two machines cordoned")
    done = mesh3.operator(m1.api, "apply", "-f", str(write_pod(tmp_path, "uncordoned")),
                          "--wait", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    rows = [p for p in pods(mesh3, "m1") if p["workload"] == "pod/default/uncordoned"]
    assert [r["machine"] for r in rows] == [m3.peer_id]
    notes = [e["text"] for e in m1.get_json("events") if e["workload"] ==
             "pod/default/uncordoned"]
    assert any("machine is cordoned" in t for t in notes), notes
    for node in (m1, m2):
        assert mesh3.operator(m3.api, "uncordon", node.peer_id).returncode == 0
    mesh3.operator(m1.api, "delete", "pod", "uncordoned")
    wait_for(lambda: podman_pods(mesh3, "m3") == [], 30, "the pod removed from m3")


def test_node_selector_is_honoured(mesh3: LocalMesh, tmp_path: Path) -> None:
    m1 = mesh3.agents["m1"]
    done = mesh3.operator(mesh3.agents["m2"].api, "apply", "-f",
                    str(write_pod(tmp_path, "only-a", selector={"zone": "a"})), "--wait",
                    "--timeout", "30")
    assert done.returncode == 0, done.stderr
    rows = [p for p in pods(mesh3, "m2") if p["workload"] == "pod/default/only-a"]
    assert [r["machine"] for r in rows] == [m1.peer_id]
    mesh3.operator(m1.api, "delete", "pod", "only-a")


def test_machines_that_do_not_fit_never_bid(mesh3: LocalMesh, tmp_path: Path) -> None:
    m3 = mesh3.agents["m3"]
    before = {n: bids_sent(a) for n, a in mesh3.agents.items()}
    # 512 MiB fits m1 and m2 but not m3 (256 MiB offered).
    done = mesh3.operator(m3.api, "apply", "-f", str(write_pod(tmp_path, "big",
                                                                memory="512Mi")),
                    "--wait", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    assert bids_sent(m3) == before["m3"], "m3 bid for a pod it cannot hold"
    notes = [e["text"] for e in m3.get_json("events") if e["workload"] == "pod/default/big"]
    assert any("not bidding" in t and "memory" in t for t in notes), notes
    rows = [p for p in pods(mesh3, "m3") if p["workload"] == "pod/default/big"]
    assert len(rows) == 1 and rows[0]["machine"] != m3.peer_id
    mesh3.operator(m3.api, "delete", "pod", "big")

    # An arm64-only pod: nobody here bids, and --wait says why it gave up.
    before = {n: bids_sent(a) for n, a in mesh3.agents.items()}
    done = mesh3.operator(m3.api, "apply", "-f", str(write_pod(
        tmp_path, "armonly", selector={"kubernetes.io/arch": "arm64"})), "--wait",
        "--timeout", "6")
    assert done.returncode == 2, done.stderr  # nothing could be placed
    assert "could not be placed" in done.stderr and "no machine bid" in done.stderr
    # It says why fleet-wide: the constraint and how many machines it rules out.
    assert "of 2 other machine(s) in view 0 fit; 2 arch x86_64 != aarch64" in done.stderr, \
        done.stderr
    assert {n: bids_sent(a) for n, a in mesh3.agents.items()} == before
    for a in mesh3.agents.values():
        notes = [e["text"] for e in a.get_json("events") if e["workload"] ==
                 "pod/default/armonly"]
        assert any("arch x86_64 != aarch64" in t for t in notes), (a.name, notes)
    mesh3.operator(m3.api, "delete", "pod", "armonly")


def test_untrusted_and_invalid_applies_are_rejected(mesh3: LocalMesh, tmp_path: Path) -> None:
    m1 = mesh3.agents["m1"]
    other = tmp_path / "other-fleet"
    subprocess.run([*BEEMESH, "fleet", "init", "--out", str(other)], check=True,
                   capture_output=True)
    done = mesh3.operator(m1.api, "apply", "-f", str(write_pod(tmp_path, "rogue")),
                    fleet=other)
    assert done.returncode == 1
    assert "apply rejected (untrusted)" in done.stderr
    assert "Traceback" not in done.stderr

    # A raw, unsigned workload straight at the API.
    import base64

    import cbor2

    from beemesh.api.client import call
    from beemesh.errors import UserError

    unsigned = cbor2.dumps({"v": 1, "kind": "Workload", "sender": b"\0" * 32, "ts": 0,
                            "nonce": b"\0" * 16, "body": {"spec": {}}})
    with pytest.raises(UserError, match="unsigned"):
        call(m1.api, "POST", "/v1/apply", {"workloads": [base64.b64encode(unsigned).decode()]})

    bad = tmp_path / "bad.yaml"
    bad.write_text(WEB.read_text().replace("memory: 64Mi", "memory: lots"))
    done = mesh3.operator(m1.api, "apply", "-f", str(bad))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "memory" in done.stderr, done.stderr
    time.sleep(1)
    assert not [p for p in pods(mesh3, "m1") if p["workload"] == "pod/default/rogue"]


JSON_DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: jsonweb}
spec:
  replicas: 1
  selector: {matchLabels: {app: jsonweb}}
  template:
    metadata: {labels: {app: jsonweb}}
    spec:
      containers:
      - name: main
        image: localhost/beemesh/busybox:latest
        command: ["sleep", "3600"]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
"""


def test_every_verb_answers_in_json(mesh3: LocalMesh, tmp_path: Path) -> None:
    """Every command that takes -o prints one JSON document with -o json (a listing's rows,
    or what a change did), and YAML with -o yaml; -o wide adds columns to a listing."""
    m1, m3 = mesh3.agents["m1"], mesh3.agents["m3"]
    path = tmp_path / "jsonweb.yaml"
    path.write_text(JSON_DEPLOY)
    spare = tmp_path / "spare"
    subprocess.run([*BEEMESH, "init", "--state-dir", str(spare)], check=True, capture_output=True)
    spare_id = subprocess.run([*BEEMESH, "id", "--state-dir", str(spare)], check=True,
                              capture_output=True, text=True).stdout.strip()

    def as_json(*args: str, code: int = 0) -> Any:
        done = mesh3.operator(m1.api, *args, "-o", "json", timeout=150)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return json.loads(done.stdout)

    tasks = as_json("apply", "-f", str(path), "--wait", "--timeout", "60")
    assert [t["workload"] for t in tasks] == ["deployment/default/jsonweb"]
    wid = "deployment/default/jsonweb"
    wait_for(lambda: any(r["workload"] == wid and r["ready"]
                         for r in as_json("get", "pods")), 30, "jsonweb ready")
    assert {n["peer_id"] for n in as_json("nodes")} == {a.peer_id for a in mesh3.agents.values()}
    assert {n["peer_id"] for n in as_json("get", "nodes")} == \
        {a.peer_id for a in mesh3.agents.values()}
    assert as_json("status")["peer_id"] == m1.peer_id
    assert "bids" in as_json("metrics")
    assert isinstance(as_json("events"), list)
    assert isinstance(as_json("get", "endpoints", "jsonweb"), list)
    assert [r["workload"] for r in as_json("get", "deploy", "jsonweb")] == [wid]
    assert wid in [r["workload"] for r in as_json("get", "workloads")]
    assert as_json("describe", "deploy/jsonweb")["workload"]["workload"] == wid
    assert as_json("describe", "pod", "jsonweb-0")["pods"][0]["pod"] == "jsonweb-0"
    assert as_json("rollout", "status", "jsonweb")["state"] == "complete"
    assert as_json("scale", "jsonweb", "--replicas", "1") == {"workload": wid, "replicas": 1}
    assert as_json("rollout", "restart", "jsonweb")["workload"] == wid
    wait_for(lambda: len(as_json("rollout", "history", "jsonweb")) == 2, 30,
             "the restart in the history")
    assert as_json("rollout", "undo", "jsonweb")["revision"] == 1
    assert as_json("cordon", m3.peer_id) == {"machine": m3.peer_id, "cordoned": True}
    assert as_json("uncordon", m3.peer_id)["cordoned"] is False
    # (The module's last test: m3's web replica has nowhere to go, hostPort 18080 is taken
    # on the others, so the drain only starts.)
    assert as_json("drain", m3.peer_id, "--grace", "1")["machine"] == m3.peer_id
    assert as_json("revoke", spare_id)["peer_id"] == spare_id
    assert as_json("delete", "deployment", "jsonweb")["workload"] == wid
    # -o yaml and -o wide
    import yaml

    done = mesh3.operator(m1.api, "get", "pods", "-o", "yaml")
    assert isinstance(yaml.safe_load(done.stdout), list), done.stdout
    wide = mesh3.operator(m1.api, "get", "nodes", "-o", "wide").stdout.splitlines()[0]
    assert "FREE MEMORY" in wide and "ADDRESSES" in wide, wide
    wide = mesh3.operator(m1.api, "get", "pods", "-o", "wide").stdout.splitlines()[0]
    assert "TEMPLATE" in wide and "TASK" in wide, wide


def test_winner_killed_before_deploying_is_replaced(tmp_path: Path) -> None:
    mesh = LocalMesh.create(tmp_path)
    slow = tmp_path / "slow.toml"
    slow.write_text("deploy_delay_s = 5.0\n")
    try:
        seed = mesh.start("k1", podman=True, extra=["--config", str(slow)])
        for n in ("k2", "k3"):
            mesh.start(n, podman=True, bootstrap=[seed.addr], extra=["--config", str(slow)])
        ids = {a.peer_id for a in mesh.agents.values()}
        for a in mesh.agents.values():
            wait_for(lambda a=a: a.node_ids() == ids and a.status()["runtime"] == "ok", 30,
                     f"{a.name} ready")
        done = mesh.operator(seed.api, "apply", "-f", str(write_pod(tmp_path, "phoenix")))
        assert done.returncode == 0, done.stderr

        def winner() -> str | None:
            for a in mesh.agents.values():
                if any("won with score" in e["text"] for e in a.get_json("events")):
                    return a.name
            return None

        first = wait_for(winner, 10, "a machine to win the auction")
        os.killpg(mesh.agents[first].proc.pid, signal.SIGKILL)
        survivors = [a for n, a in mesh.agents.items() if n != first]

        def placed() -> list[dict[str, Any]]:
            return [p for p in survivors[0].get_json("get", "pods")
                    if p["workload"] == "pod/default/phoenix"]

        rows = wait_for(placed, 40, "the replica to be deployed by a survivor")
        assert rows[0]["machine"] in {a.peer_id for a in survivors}
        assert podman_pods(mesh, first) == [], "the dead winner must not have deployed"
    finally:
        mesh.close()
