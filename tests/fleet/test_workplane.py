"""The work plane end to end: real agents, their work-plane children, real Podman, real libp2p.

One module-scoped mesh of three machines (labels pool=main), each a whole network host with
its agent, work plane and Podman in its own namespace; a fourth machine (pool=nobody) runs its
work plane as uid 65534. Covered: every replica's own workload identity and key file, the
separate work-plane process and user, discovery files inside the pods, readiness and liveness
probes as records and restarts see them, and the trust boundaries between the two planes,
attacked by a real libp2p host in a separate process (workplane_intruder.py) that holds real
keys of this mesh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phased import Phased

from beemesh.identity import load_key
from beemesh.lab.localmesh import WORKPLANE_PORT, AgentProc, LocalMesh, wait_for

pytestmark = pytest.mark.slow

BUSYBOX = "localhost/beemesh/busybox:latest"
INTRUDER = Path(__file__).parents[1] / "support" / "workplane_intruder.py"
NOBODY = 65534
# busybox httpd serving /www on $PORT; sh as PID 1 exits on SIGTERM only when it traps it.
HTTPD = ("mkdir -p /www && echo \"$BEEMESH_POD\" > /www/index.html && touch /tmp/alive && "
         "trap 'exit 0' TERM; httpd -f -p $PORT -h /www & wait")


# ---- helpers ---------------------------------------------------------------------------------


def manifest(name: str, replicas: int, *, pool: str = "main", probes: str = "",
             port: int = 8080, declare_port: bool = False) -> str:
    """A Deployment of busybox httpd on `port`, pinned to machines labelled pool=<pool>.

    The port is declared (containerPort) only when asked, and only for single-replica
    workloads: Podman 4.3's kube play publishes a containerPort without hostPort on the
    machine, so two replicas declaring the same port cannot share a machine, and the
    scheduler, which only knows hostPorts, may put them together."""
    ports = (f"\n        ports: [{{name: http, containerPort: {port}}}]" if declare_port
             else "")
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{pool: {pool}}}
      containers:
      - name: web
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", {json.dumps(HTTPD)}]
        env: [{{name: PORT, value: "{port}"}}]{ports}{probes}
        resources: {{requests: {{cpu: 20m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
"""


def apply(mesh: LocalMesh, tmp: Path, text: str, via: str = "m1") -> None:
    path = tmp / f"{abs(hash(text))}.yaml"
    path.write_text(text)
    done = mesh.operator(mesh.agents[via].api, "apply", "-f", str(path), "--wait",
                         "--timeout", "180", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


def delete(mesh: LocalMesh, name: str, via: str = "m1") -> None:
    done = mesh.operator(mesh.agents[via].api, "delete", "deployment", name)
    assert done.returncode == 0, done.stdout + done.stderr
    for machine in mesh.podmans:
        wait_for(lambda m=machine: not [p for p in podman_pods(mesh, m)
                                        if p["Name"].startswith(f"{name}-")],
                 120, f"{machine} to remove the pods of {name}")


def wid(name: str) -> str:
    return f"deployment/default/{name}"


def endpoints(agent: AgentProc, name: str | None = None) -> list[dict[str, Any]]:
    return agent.get_json("get", "endpoints", *([name] if name else []))


def pods(agent: AgentProc, name: str) -> list[dict[str, Any]]:
    return [p for p in agent.get_json("get", "pods") if p["workload"] == wid(name)]


def podman_pods(mesh: LocalMesh, machine: str) -> list[dict[str, Any]]:
    out = mesh.podman(machine).run("pod", "ps", "--format", "json", "--filter",
                                   "label=beemesh.workload")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "[]")


def machine_name(mesh: LocalMesh, peer: str) -> str:
    return next(n for n, a in mesh.agents.items() if a.peer_id == peer)


def where(mesh: LocalMesh, pod: dict[str, Any]) -> str:
    """Name of the machine that runs a `get pods` row."""
    return machine_name(mesh, pod["machine"])


def ctr_exec(mesh: LocalMesh, machine: str, pod: str, *argv: str
             ) -> subprocess.CompletedProcess[str]:
    """Run argv in the pod's `web` container (Podman names it <pod>-<container>)."""
    return mesh.podman(machine).run("exec", f"{pod}-web", *argv)


def read_in_pod(mesh: LocalMesh, machine: str, pod: str, path: str) -> Any:
    done = ctr_exec(mesh, machine, pod, "cat", path)
    assert done.returncode == 0, f"cat {path} in {pod}: {done.stderr}"
    return json.loads(done.stdout)


def ready_everywhere(mesh: LocalMesh, name: str, replicas: int,
                     ready: bool = True) -> list[dict[str, Any]]:
    """Every machine's `get endpoints NAME` shows `replicas` records, all with this ready
    flag; returns m1's records, sorted by ordinal."""
    got: list[dict[str, Any]] = []
    for agent in mesh.agents.values():
        if not agent.alive():
            continue
        rows = endpoints(agent, name)
        assert len(rows) == replicas and all(r["ready"] is ready for r in rows), (
            agent.name, [(r["pod"], r["ready"], r["machine"][-6:]) for r in rows])
        if agent.name == "m1":
            got = sorted(rows, key=lambda r: r["ordinal"])
    return got


def workplane_pid(agent: AgentProc) -> int | None:
    """The agent's child whose command line runs `beemesh workplane`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent.proc.pid and b"workplane" in cmdline:
            return int(entry.name)
    return None


def proc_ids(pid: int, field: str) -> list[int]:
    """Real, effective, saved and filesystem uid (field "Uid") or gid ("Gid") of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def host_peer(agent: AgentProc) -> str:
    """The Peer ID of the agent's work-plane host (its own key, in the work plane's dir)."""
    return load_key(agent.state_dir / "workplane" / "host.key", "work-plane host key",
                    "").peer_id


def workplane_addr(mesh: LocalMesh, name: str) -> str:
    agent = mesh.agents[name]
    return f"/ip4/{agent.ip}/tcp/{WORKPLANE_PORT}/p2p/{host_peer(agent)}"


def events(agent: AgentProc) -> list[dict[str, Any]]:
    return agent.get_json("events")


def copy_private(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    return dst


# ---- the mesh ----------------------------------------------------------------------------------

# machine name -> (pid of its first work plane, when it was seen)
FIRST_WORKPLANE: dict[str, tuple[int | None, float]] = {}



@pytest.fixture(scope="module")
def mesh(podman_tools: None, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[LocalMesh]:
    """Three machines labelled pool=main, each with its work plane.

    The mesh lives outside pytest's /tmp/pytest-of-root: any pytest session on this host
    resets that to 0700, and m4's work plane (another uid) must pass through to its state dir.
    The machines' logs are copied to pytest's tmp dir at the end."""
    root = Path(tempfile.mkdtemp(prefix="beemesh-workplane-"))
    os.chmod(root, 0o711)
    logs = tmp_path_factory.mktemp("wp-logs")
    mesh = LocalMesh.create(root)
    try:
        mesh.prepare_podmans(["m1", "m2", "m3"])
        # Slow verdicts: a test here pauses m4's agent for minutes, and the mesh must keep
        # admitting its work-plane host meanwhile (`test_stolen_workplane_host...`).
        slow = root / "slow-verdicts.toml"
        slow.write_text("dead_after_s = 300\n")
        main = ["--labels", "pool=main", "--config", str(slow)]
        seed = mesh.start("m1", podman=True, extra=main)
        for name in ("m2", "m3"):
            mesh.start(name, podman=True, bootstrap=[seed.addr], extra=main)
        ids = {a.peer_id for a in mesh.agents.values()}
        for a in mesh.agents.values():
            wait_for(lambda a=a: a.node_ids() == ids and a.status()["runtime"] == "ok", 120,
                     f"{a.name} to see all machines with a working runtime")
            wait_for(lambda a=a: (a.state_dir / "workplane" / "host.key").exists(), 60,
                     f"{a.name}'s work plane to make its host key")
            FIRST_WORKPLANE[a.name] = (workplane_pid(a), time.monotonic())
        yield mesh
    finally:
        mesh.close()
        for log in root.glob("*.log"):
            shutil.copyfile(log, logs / log.name)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ident(mesh: LocalMesh, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """A 3-replica Deployment, every replica ready on every machine's `get endpoints`."""
    apply(mesh, tmp_path_factory.mktemp("ident"), manifest("ident", 3))
    return wait_for(lambda: ready_everywhere(mesh, "ident", 3), 120,
                    "3 ready records of ident on every machine")


@pytest.fixture(scope="module")
def nobody(mesh: LocalMesh) -> AgentProc:
    """A fourth machine (pool=nobody) whose work plane runs as uid 65534.

    Its work-plane network key is a copy owned by 65534: the fleet's own workplane.key is
    root's, 0600, and the work plane reads it itself (see the report in the module's tests).
    The fleet here declares a silent machine dead only after 300 s (`dead_after_s`), so the
    attack that borrows its work-plane identity can pause its agent without the mesh
    forgetting the machine.
    """
    keydir = mesh.root / "m4-wpkey"
    keydir.mkdir(mode=0o711)
    key = copy_private(mesh.fleet / "workplane.key", keydir / "workplane.key")
    os.chown(key, NOBODY, NOBODY)
    config = mesh.root / "m4.toml"
    config.write_text(f'workplane_key = "{key}"\ndead_after_s = 300\n')
    agent = mesh.start("m4", podman=True, bootstrap=[mesh.agents["m1"].addr],
                       extra=["--labels", "pool=nobody", "--workplane-user", str(NOBODY),
                              "--config", str(config)])
    ids = {a.peer_id for a in mesh.agents.values()}
    for a in mesh.agents.values():
        wait_for(lambda a=a: a.node_ids() == ids, 120, f"{a.name} to see m4")
    wait_for(lambda: (agent.state_dir / "workplane" / "host.key").exists(), 60,
             "m4's work plane to make its host key")
    FIRST_WORKPLANE["m4"] = (workplane_pid(agent), time.monotonic())
    return agent


# ---- 1. identity -------------------------------------------------------------------------------


def test_every_replica_has_its_own_workload_key_on_its_machine_only(
        mesh: LocalMesh, ident: list[dict[str, Any]]) -> None:
    records = ident
    assert [r["ordinal"] for r in records] == [0, 1, 2]
    workload_peers = [r["peer_id"] for r in records]
    assert len(set(workload_peers)) == 3, "replicas share a workload Peer ID"
    machines = mesh.agents["m1"].node_ids()
    hosts = {host_peer(a) for a in mesh.agents.values()}
    assert len(hosts) == len(mesh.agents), "work planes share a host key"
    assert not set(workload_peers) & machines, "a workload Peer ID is a machine's"
    assert not set(workload_peers) & hosts, "a workload Peer ID is a work-plane host's"
    assert not machines & hosts, "a work-plane host uses a machine key"

    rows = {p["pod"]: p for p in pods(mesh.agents["m1"], "ident")}
    assert sorted(rows) == ["ident-0", "ident-1", "ident-2"]
    for rec in records:
        row = rows[rec["pod"]]
        assert row["peer"] == rec["peer_id"], "get pods and get endpoints disagree"
        assert rec["machine"] == row["machine"]
        runs_on = where(mesh, row)
        key = mesh.agents[runs_on].state_dir / "workplane" / "keys" / \
            f"{rec['pod']}.{row['task']}.key"
        assert key.is_file(), f"{rec['pod']}'s key is not at {key}"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)
        assert load_key(key, "workload key", "").peer_id == rec["peer_id"], \
            "the key file is not the key the record is signed with"
        for name, other in mesh.agents.items():
            if name != runs_on:
                found = list((other.state_dir / "workplane" / "keys").glob(
                    f"{rec['pod']}.*.key"))
                assert not found, f"{rec['pod']}'s key also lies on {name}: {found}"

    for name, agent in mesh.agents.items():
        pid = wait_for(lambda agent=agent: workplane_pid(agent), 60,
                       f"{name}'s work plane process")
        assert pid != agent.proc.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"workplane" in argv and b"agent" not in argv, argv
        assert b"agent" in Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().split(b"\0")


def test_work_plane_runs_as_another_user_that_cannot_read_machine_secrets(
        mesh: LocalMesh, nobody: AgentProc, tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv not found; install util-linux (apt-get install util-linux)",
                    pytrace=False)
    pid = wait_for(lambda: workplane_pid(nobody), 60, "m4's work plane process")
    assert proc_ids(pid, "Uid") == [NOBODY] * 4
    assert proc_ids(pid, "Gid") == [NOBODY] * 4
    assert proc_ids(nobody.proc.pid, "Uid")[1] == 0, "the agent itself runs as root"
    wp_dir = nobody.state_dir / "workplane"
    assert wp_dir.stat().st_uid == NOBODY and stat.S_IMODE(wp_dir.stat().st_mode) == 0o700

    apply(mesh, tmp_path, manifest("solo", 1, pool="nobody"))
    (rec,) = wait_for(lambda: ready_everywhere(mesh, "solo", 1), 150,
                      "solo's record, from m4's work plane, ready on every machine")
    assert rec["machine"] == nobody.peer_id
    (row,) = pods(nobody, "solo")
    key = wp_dir / "keys" / f"solo-0.{row['task']}.key"
    st = key.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o600)

    def as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                               "--clear-groups", "cat", str(path)],
                              capture_output=True, text=True, timeout=10)

    own = as_nobody(key)  # the control: the same command works on what the user owns
    assert own.returncode == 0 and own.stdout == key.read_text(), own.stderr
    for secret in (nobody.state_dir / "machine.key", mesh.fleet / "swarm.key",
                   mesh.fleet / "operator.key"):
        denied = as_nobody(secret)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, \
            f"uid {NOBODY} can read {secret}: {denied}"

    delete(mesh, "solo")  # m4 runs nothing from here on
    wait_for(lambda: not endpoints(mesh.agents["m1"], "solo"), 60, "solo's record withdrawn")


# ---- 2. discovery ----------------------------------------------------------------------------


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a CLI table (columns are separated by two or more spaces)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(head, re.split(r"\s{2,}", ln.strip()), strict=False)) for ln in lines[1:]]


def test_discovery_files_list_the_ready_replicas_of_their_own_workload(
        mesh: LocalMesh, ident: list[dict[str, Any]], tmp_path: Path) -> None:
    apply(mesh, tmp_path, manifest("other", 1, port=8082, declare_port=True))
    wait_for(lambda: ready_everywhere(mesh, "other", 1), 120, "the ready record of other")

    def check_files() -> bool:
        for name in ("ident", "other"):
            records = endpoints(mesh.agents["m1"], name)
            expected = sorted((r["ordinal"], r["pod"], r["peer_id"]) for r in records
                              if r["ready"])
            for row in pods(mesh.agents["m1"], name):
                machine = where(mesh, row)
                me = read_in_pod(mesh, machine, row["pod"], "/run/beemesh/self.json")
                peers = read_in_pod(mesh, machine, row["pod"], "/run/beemesh/peers.json")
                mine = next(r for r in records if r["pod"] == row["pod"])
                assert (me["workload"], me["ordinal"], me["pod"], me["peer_id"]) == (
                    wid(name), row["replica"], row["pod"], mine["peer_id"]), me
                assert peers["workload"] == wid(name)
                listed = sorted((p["ordinal"], p["pod"], p["peer_id"]) for p in peers["peers"])
                assert listed == expected, (row["pod"], listed, expected)
                assert [p["peer_id"] for p in peers["peers"] if p["self"]] == [me["peer_id"]]
        return True

    wait_for(check_files, 60, "every pod's discovery files to match get endpoints")

    for row in pods(mesh.agents["m1"], "ident") + pods(mesh.agents["m1"], "other"):
        machine, pod = where(mesh, row), row["pod"]
        done = ctr_exec(mesh, machine, pod, "env")
        env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        assert env["BEEMESH_WORKLOAD"] == row["workload"]
        assert env["BEEMESH_ORDINAL"] == str(row["replica"])
        assert env["BEEMESH_POD"] == pod
        assert env["BEEMESH_DISCOVERY_DIR"] == "/run/beemesh"
        write = ctr_exec(mesh, machine, pod, "sh", "-c", "echo x > /run/beemesh/peers.json")
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write
        mounts = ctr_exec(mesh, machine, pod, "cat", "/proc/mounts").stdout
        (line,) = [ln for ln in mounts.splitlines() if ln.split()[1] == "/run/beemesh"]
        assert "ro" in line.split()[3].split(","), line

    # The table and -o json show the same records (on a machine that is not m1).
    m2 = mesh.agents["m2"]
    table = parse_table(m2.cli("get", "endpoints").stdout)
    records = endpoints(m2)
    assert sorted((r["WORKLOAD"], r["REPLICA"], r["POD"], r["PEER ID"], r["READY"])
                  for r in table) == sorted(
        (r["workload"], str(r["ordinal"]), r["pod"], r["peer_id"], "yes" if r["ready"] else "no")
        for r in records)
    named = parse_table(m2.cli("get", "endpoints", "other").stdout)
    assert {r["WORKLOAD"] for r in named} == {wid("other")} and len(named) == 1
    assert {r["ADDRESSES"] for r in named} <= {a.ip for a in mesh.agents.values()}
    assert {r["PORTS"] for r in named} == {"8082/TCP"}

    delete(mesh, "other")
    wait_for(lambda: not endpoints(mesh.agents["m2"], "other"), 60, "other's records withdrawn")


# ---- 3. probes ---------------------------------------------------------------------------------

READINESS = """
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
          periodSeconds: 1
          failureThreshold: 1"""


def test_readiness_probe_gates_records_and_discovery(mesh: LocalMesh, tmp_path: Path) -> None:
    apply(mesh, tmp_path, manifest("gated", 2, probes=READINESS))
    rows = wait_for(lambda: (got := {p["pod"]: p for p in pods(mesh.agents["m1"], "gated")})
                    and set(got) == {"gated-0", "gated-1"} and got, 60, "gated's pods")
    on = {pod: where(mesh, row) for pod, row in rows.items()}

    def discovery(pod: str) -> list[str]:
        return sorted(p["pod"] for p in read_in_pod(mesh, on[pod], pod,
                                                    "/run/beemesh/peers.json")["peers"])

    # Records exist (keys certified, published) but say not ready; nobody lists them. (On a
    # very busy host a replica may be healed while its first copy still deploys; two copies
    # that are not ready both stay until one is: the one made ready below.)
    def none_ready() -> bool:
        for agent in mesh.agents.values():
            rows = endpoints(agent, "gated")
            assert {r["ordinal"] for r in rows} == {0, 1} and not any(
                r["ready"] for r in rows), (agent.name, rows)
        return all(discovery(pod) == [] for pod in on)

    wait_for(none_ready, 120, "not-ready records of both replicas of gated on every machine")
    ctr_exec(mesh, on["gated-0"], "gated-0", "touch", "/www/ready")

    def only_first_ready() -> bool:
        for agent in mesh.agents.values():
            if {r["pod"]: r["ready"] for r in endpoints(agent, "gated")} != {
                    "gated-0": True, "gated-1": False}:
                return False
        return all(discovery(pod) == ["gated-0"] for pod in on)

    wait_for(only_first_ready, 120, "gated-0 ready, gated-1 not, everywhere")
    # The probe of gated-1 ran all along (gated-0's made it ready): it keeps saying no.
    for agent in mesh.agents.values():
        table = parse_table(agent.cli("get", "pods").stdout)
        ready = {r["POD"]: r["READY"] for r in table if r["WORKLOAD"] == wid("gated")}
        assert ready == {"gated-0": "yes", "gated-1": "no"}, (agent.name, ready)
        assert {p["pod"]: p["ready"] for p in pods(agent, "gated")} == {
            "gated-0": True, "gated-1": False}

    ctr_exec(mesh, on["gated-1"], "gated-1", "touch", "/www/ready")
    wait_for(lambda: ready_everywhere(mesh, "gated", 2) and all(
        discovery(pod) == ["gated-0", "gated-1"] for pod in on), 120,
        "both replicas ready in every endpoints list and both pods' peers.json")
    assert all(p["ready"] for a in mesh.agents.values() for p in pods(a, "gated"))

    # And back: a replica whose probe fails again leaves its peers' discovery files.
    ctr_exec(mesh, on["gated-0"], "gated-0", "rm", "/www/ready")
    wait_for(lambda: all(discovery(pod) == ["gated-1"] for pod in on) and all(
        {r["pod"]: r["ready"] for r in endpoints(a, "gated")} == {
            "gated-0": False, "gated-1": True} for a in mesh.agents.values()), 120,
        "gated-0 out of every list once its probe fails")
    delete(mesh, "gated")


LIVENESS = """
        livenessProbe:
          exec: {command: [test, -f, /tmp/alive]}
          periodSeconds: 1
          failureThreshold: 2
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1"""


def test_failing_liveness_probe_restarts_the_pod(mesh: LocalMesh, tmp_path: Path) -> None:
    apply(mesh, tmp_path, manifest("lively", 1, probes=LIVENESS))
    (before,) = wait_for(lambda: ready_everywhere(mesh, "lively", 1), 120,
                         "lively ready everywhere")
    machine = machine_name(mesh, before["machine"])
    agent = mesh.agents[machine]

    def started_at() -> str:
        done = mesh.podman(machine).run("inspect", "lively-0-web", "--format",
                                        "{{.State.StartedAt}}")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = started_at()
    assert not [e for e in events(agent) if e["kind"] == "Restarting"
                and "lively-0" in e["text"]]
    ctr_exec(mesh, machine, "lively-0", "rm", "/tmp/alive")
    restart = wait_for(lambda: [e for e in events(agent) if e["kind"] == "Restarting"
                                and "lively-0" in e["text"]], 120,
                       "a Restarting event for lively-0")
    assert "liveness" in restart[0]["text"], restart
    wait_for(lambda: started_at() != first, 120, "the container to be started again")
    # The script made /tmp/alive again: the same replica (same machine, same workload key)
    # is back and ready.
    again = wait_for(lambda: ready_everywhere(mesh, "lively", 1), 120,
                     "lively ready again everywhere")
    assert (again[0]["pod"], again[0]["machine"], again[0]["peer_id"]) == (
        "lively-0", before["machine"], before["peer_id"])
    assert ctr_exec(mesh, machine, "lively-0", "test", "-f", "/tmp/alive").returncode == 0
    assert [p["ready"] for p in pods(agent, "lively")] == [True]
    delete(mesh, "lively")


# ---- 4. trust boundaries -------------------------------------------------------------------------


def test_machine_key_is_refused_on_the_work_plane(
        mesh: LocalMesh, ident: list[dict[str, Any]], tmp_path: Path) -> None:
    """A copy of m2's machine key with the fleet's work-plane network key dials m1's work
    plane: the peer gate closes every connection before a subscription is exchanged, and the
    ServiceRecord it would publish never appears anywhere."""
    m1, m2 = mesh.agents["m1"], mesh.agents["m2"]
    key = copy_private(m2.state_dir / "machine.key", tmp_path / "machine.key")
    wp1 = workplane_pid(m1)
    intruder = Phased(INTRUDER, "machine-key-on-workplane", str(mesh.fleet), str(key),
                      workplane_addr(mesh, "m1"), wid("ident"), "--seconds", "12")
    try:
        report = intruder.phase(90)
    finally:
        intruder.close()
    assert report["peer_id"] == m2.peer_id
    assert report["dials"] >= 3, report
    assert report["still_connected_after_2s"] == 0, report
    assert not report["saw_subscription"] and report["published"] == 0, report
    for agent in mesh.agents.values():
        rows = endpoints(agent)
        assert not [r for r in rows if r["peer_id"] == m2.peer_id or r["pod"] == "forged-0"]
    assert workplane_pid(m1) == wp1, "m1's work plane did not survive the refused dials"
    wait_for(lambda: m1.metrics().get("workplane_connections_refused", {}).get("peer", 0) >= 1,
             30, "m1's metrics to count the refused connections")
    assert not [e for e in events(m1) if e["kind"] == "WorkPlaneExited"]


def test_workload_key_is_refused_on_the_machine_plane(
        mesh: LocalMesh, ident: list[dict[str, Any]], tmp_path: Path) -> None:
    """A replica's workload key with the fleet's swarm key joins the machine plane at m2 and
    speaks as a machine (MachineRecord on pub/sub and in the Machine DHT, a Bid): every
    agent refuses it as wrong_plane and never lists it as a machine."""
    row = next(p for p in pods(mesh.agents["m1"], "ident") if where(mesh, p) == "m1")
    victim = mesh.agents["m1"].state_dir / "workplane" / "keys" / f"{row['pod']}.{row['task']}.key"
    key = copy_private(victim, tmp_path / "workload.key")
    m2 = mesh.agents["m2"]
    before = m2.metrics().get("messages_dropped", {}).get("wrong_plane", 0)
    intruder = Phased(INTRUDER, "workload-key-on-machine-plane", str(mesh.fleet), str(key),
                      m2.addr)
    try:
        report = intruder.phase(90)
        assert report["peer_id"] == row["peer"]
        sent = sum(report["sent"].values())
        wait_for(lambda: m2.metrics().get("messages_dropped", {}).get("wrong_plane", 0) - before
                 >= sent, 60, f"m2 to drop the {sent} messages as wrong_plane")
        # While it stays connected, m2 fetches the records of connected peers it does not
        # know from the Machine DHT (once a second): watch several rounds of that.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for agent in mesh.agents.values():
                assert report["peer_id"] not in agent.node_ids(), \
                    f"{agent.name} lists a workload key as a machine"
            time.sleep(0.5)
        intruder.next()
        assert intruder.phase(30)["phase"] == "done"
    finally:
        intruder.close()
    assert "intruder" not in json.dumps([a.nodes() for a in mesh.agents.values()])


def test_work_planes_run_on_without_restarts(mesh: LocalMesh, nobody: AgentProc) -> None:
    """Each machine's work plane is still the process the agent started first, well past the
    10 s after which trio retires the worker thread that spawned it (PR_SET_PDEATHSIG tied
    to that thread used to SIGTERM the work plane then)."""
    for name, agent in mesh.agents.items():
        first, started = FIRST_WORKPLANE[name]
        assert time.monotonic() - started > 20, "the module ran too briefly to tell"
        assert workplane_pid(agent) == first, f"{name}'s work plane was restarted"
        exits = [e for e in events(agent) if e["kind"] == "WorkPlaneExited"]
        assert not exits, (name, exits)


WP_REASONS = ("replayed", "malformed", "untrusted", "oversized", "stale", "unknown_kind")


def test_bad_input_from_an_admitted_work_plane_host_is_dropped(
        mesh: LocalMesh, ident: list[dict[str, Any]], nobody: AgentProc, tmp_path: Path
) -> None:
    """A host with m4's work-plane host key (which every work plane admits) and m4's machine
    key sends m1's work plane a well-signed record for a pod m4 does not hold (the control),
    then garbage, forged and mismatched certificates, a replay, an oversized and a stale
    record, a forged withdrawal of a real replica, a wrong kind, and another record for a pod
    m4 does not hold (the sentinel): none ever shows in `get endpoints` (m4's certificate
    counts only for pods its record lists: `not_held`), every drop is logged once, and the
    work plane runs on."""
    m1 = mesh.agents["m1"]
    host_key = copy_private(nobody.state_dir / "workplane" / "host.key", tmp_path / "host.key")
    machine_key = copy_private(nobody.state_dir / "machine.key", tmp_path / "m4.key")
    stolen = host_peer(nobody)
    real = next(r for r in ident if r["machine"] != nobody.peer_id)
    baseline = sorted((r["ordinal"], r["peer_id"]) for r in endpoints(m1, "ident"))
    wp1 = workplane_pid(m1)
    agent_pid, wp4 = nobody.proc.pid, workplane_pid(nobody)
    assert wp1 is not None and wp4 is not None
    log_start = len(m1.log_text())
    # Free m4's work-plane identity: pause its agent (a silent machine is dead here only after
    # 300 s, so the mesh keeps admitting its work-plane host) and kill its work plane, whose
    # connections the other work planes then drop.
    os.kill(agent_pid, signal.SIGSTOP)
    intruder = None
    try:
        os.kill(wp4, signal.SIGKILL)
        intruder = Phased(INTRUDER, "stolen-workplane-host", str(mesh.fleet), str(host_key),
                          str(machine_key), workplane_addr(mesh, "m1"), wid("ghost"),
                          f"{real['workload']}:{real['ordinal']}:{real['peer_id']}")
        control = intruder.phase(90)
        assert control["peer_id"] == stolen

        def ghosts(agent: AgentProc) -> list[int]:
            return sorted(r["ordinal"] for r in endpoints(agent, "ghost"))

        # The control record reaches m1's work plane and is refused once its grace is over:
        # m4's record does not list that pod.
        wait_for(lambda: "not_held" in m1.metrics().get("workplane_messages_dropped", {}), 60,
                 "m1 to refuse the control record (not_held)")
        intruder.next()
        bad = intruder.phase(60)
        assert {c["reason"] for c in bad["sent"]} == set(WP_REASONS)
        # The sentinel left after every bad message, on the same stream: once m1 has refused
        # it too, m1's work plane has judged them all. (Refused DHT values count as not_held
        # too, so the count alone does not say the sentinel was judged: the log lines below
        # are waited for as well.)
        wait_for(lambda: m1.metrics().get("workplane_messages_dropped", {}).get(
            "not_held", 0) >= 2, 60, "m1 to refuse the sentinel record (not_held)")

        def logged(reason: str) -> list[str]:
            return [ln for ln in m1.log_text()[log_start:].splitlines()
                    if f"dropped work-plane message from {stolen}: {reason}:" in ln]

        for reason in (*WP_REASONS, "not_held"):
            wait_for(lambda reason=reason: logged(reason), 30,
                     f"m1 to log its drop of {reason} from the stolen host")
        for name in ("m1", "m2", "m3"):
            agent = mesh.agents[name]
            assert ghosts(agent) == [], f"{name} lists a record for a pod m4 does not hold"
            assert sorted((r["ordinal"], r["peer_id"]) for r in endpoints(agent, "ident")
                          ) == baseline, f"{name}'s records of ident changed"
        for reason in (*WP_REASONS, "not_held"):  # once per peer and reason
            assert len(logged(reason)) == 1, (reason, logged(reason))
        # The operator sees the work plane's drops in the agent's metrics.
        wait_for(lambda: set(WP_REASONS) <= set(
            m1.metrics().get("workplane_messages_dropped", {})), 30,
                 "m1's metrics to count the work plane's drops by reason")
        intruder.next()
        assert intruder.phase(30)["phase"] == "withdrawn"
        for name in ("m1", "m2", "m3"):
            agent = mesh.agents[name]
            wait_for(lambda agent=agent: ghosts(agent) == [], 60,
                     f"{name} to forget the withdrawn records")
    finally:
        if intruder is not None:
            intruder.close()
        os.kill(agent_pid, signal.SIGCONT)
    assert workplane_pid(m1) == wp1, "m1's work plane restarted"
    assert not [e for e in events(m1) if e["kind"] == "WorkPlaneExited"]
    assert "Traceback" not in m1.log_text()[log_start:]
    # m4's agent starts its work plane again, with the same host identity.
    new = wait_for(lambda: (pid := workplane_pid(nobody)) not in (None, wp4) and pid, 120,
                   "m4's agent to start its work plane again")
    assert proc_ids(new, "Uid")[1] == NOBODY


def test_work_plane_stops_when_its_agent_dies(mesh: LocalMesh, nobody: AgentProc) -> None:
    """SIGKILL to m4's agent alone (not its process group): its work plane, now an orphan,
    stops by itself instead of publishing for replicas nobody supervises."""
    pid = wait_for(lambda: workplane_pid(nobody), 120, "m4's work plane")
    os.kill(nobody.proc.pid, signal.SIGKILL)
    nobody.proc.wait(10)

    def gone() -> bool:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return True
        assert fields[0] == "Z", f"pid {pid} state {fields[0]}, parent {fields[1]}"
        return True

    wait_for(gone, 30, "m4's orphaned work plane to exit")
    assert "agent (pid" in nobody.log_text() and "is gone; stopping the work plane" in \
        nobody.log_text()
