"""Workload networking end to end: Services reached by name over workload streams.

Four machines, each a whole network host (agent, work plane, Podman) in its own namespace, so
nothing but Beemesh connects their pods: m1 (pool=front) runs the callers, m2-m4 (pool=back)
the backends. Pods reach `backend:80` by name with no hostPort; a stream between machines is
opened with the mutual replica handshake on a libp2p stream between the replicas' work planes
(Noise), and its bytes cross on their own encrypted TCP channel (or on that libp2p stream when
the channel's port cannot be reached). Covered: names, env vars and hostname inside a pod, a
caller looping over `backend` while the machine of one backend replica dies, headless
StatefulSet names following their ordinal, refusals (another namespace, policy, a deleted
workload, a machine key and a PSK-only outsider at the work plane, a stranger at the channel
port), counts in `beemesh metrics`, no plaintext on the wire, and the libp2p fallback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from healing_lib import kill_machine, machine_name
from phased import Phased
from podman_mesh import podman_mesh

from beemesh.identity import KeyPair, load_key, save_key
from beemesh.lab.localmesh import WORKPLANE_PORT, AgentProc, LocalMesh, wait_for

pytestmark = pytest.mark.slow

BUSYBOX = "localhost/beemesh/busybox:latest"
CAPTURE = Path(__file__).parents[1] / "support" / "capture.py"
INTRUDER = Path(__file__).parents[1] / "support" / "workplane_intruder.py"
# On the Service's own port, bound to 0.0.0.0 (as nginx behind a Service on :80 would be):
# Beemesh's listeners in the pod must not take it.
HTTPD = ("mkdir -p /www && echo \"hello from $HOSTNAME\" > /www/index.html && "
         "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait")
# One request a second to $TARGET:80 with nc; each answer or failure is one log line.
CALLER = ("trap 'exit 0' TERM; while true; do "
          "r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $TARGET 80 | tail -n 1); "
          "echo \"$(date +%s) ${r:-FAILED}\"; sleep 1; done & wait")


def backend(name: str = "backend", namespace: str = "default", replicas: int = 2,
            kind: str = "Deployment", pool: str = "back") -> str:
    extra = f"\n  serviceName: {name}" if kind == "StatefulSet" else ""
    return f"""\
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}{extra}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{pool: {pool}}}
      containers:
      - name: web
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", {json.dumps(HTTPD)}]
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 20m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
"""


def service(name: str = "backend", namespace: str = "default", headless: bool = False,
            allow: str = "") -> str:
    annotations = f"\n  annotations: {{beemesh.io/allow-from: \"{allow}\"}}" if allow else ""
    cluster_ip = "\n  clusterIP: None" if headless else ""
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}{annotations}
spec:{cluster_ip}
  selector: {{app: {name}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"""


def caller(name: str, target: str, namespace: str = "default") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{pool: front}}
      containers:
      - name: c
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", {json.dumps(CALLER)}]
        env: [{{name: TARGET, value: "{target}"}}]
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
"""


def apply(mesh: LocalMesh, tmp: Path, *docs: str) -> None:
    path = tmp / f"{abs(hash(docs))}.yaml"
    path.write_text("---\n".join(docs))
    done = mesh.operator(mesh.agents["m1"].api, "apply", "-f", str(path), "--wait",
                         "--timeout", "180", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


def podman_exec(mesh: LocalMesh, machine: str, container: str, *argv: str
                ) -> subprocess.CompletedProcess[str]:
    return mesh.podman(machine).run("exec", container, *argv)


def answers(mesh: LocalMesh, pod: str) -> list[tuple[int, str]]:
    """(unix time, last line or FAILED) of each request a caller pod made."""
    out = mesh.operator(mesh.agents["m1"].api, "logs", pod).stdout
    lines = []
    for line in out.splitlines():
        t, _, rest = line.partition(" ")
        if t.isdigit():
            lines.append((int(t), rest.strip()))
    return lines


def pods_of(agent: AgentProc, workload: str) -> list[dict[str, Any]]:
    return [p for p in agent.get_json("get", "pods") if p["workload"] == workload]


def metric(agent: AgentProc, name: str) -> dict[str, float]:
    return {k: v for k, v in agent.metrics().get(name, {}).items()}


@pytest.fixture(scope="module")
def mesh(podman_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with podman_mesh("beemesh-streams-", tmp_path_factory.mktemp("streams-logs"), {
            "m1": ["--labels", "pool=front"], **{m: ["--labels", "pool=back"]
                                                  for m in ("m2", "m3", "m4")}}) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def app(mesh: LocalMesh, tmp_path_factory: pytest.TempPathFactory) -> str:
    """backend (2 replicas on pool=back, no hostPort), its Service and a caller on m1;
    returns the caller's pod name once it got an answer."""
    apply(mesh, tmp_path_factory.mktemp("app"), backend(), service(),
          caller("frontend", "backend"))
    pod = pods_of(mesh.agents["m1"], "deployment/default/frontend")[0]["pod"]
    wait_for(lambda: any(a.startswith("hello from") for _, a in answers(mesh, pod)), 90,
             "the frontend to get an answer from backend")
    return pod


def test_a_pod_reaches_a_service_by_name_across_machines(mesh: LocalMesh, app: str) -> None:
    m1 = mesh.agents["m1"]
    backends = pods_of(m1, "deployment/default/backend")
    assert {machine_name(mesh, p["machine"]) for p in backends} <= {"m2", "m3", "m4"}
    wait_for(lambda: len({a for _, a in answers(mesh, app) if a.startswith("hello")}) == 2,
             60, "answers from both backend replicas (connections spread)")
    hosts = podman_exec(mesh, "m1", f"{app}-c", "cat", "/etc/hosts").stdout
    assert "backend backend.default backend.default.svc backend.default.svc.cluster.local" \
        in hosts
    env = podman_exec(mesh, "m1", f"{app}-c", "env").stdout
    assert "BACKEND_SERVICE_PORT=80" in env and "BACKEND_SERVICE_HOST=127." in env
    assert f"HOSTNAME={app}" in env
    assert podman_exec(mesh, "m1", f"{app}-c", "hostname").stdout.strip() == app
    # counts reach the agent at the work plane's next sync
    wait_for(lambda: metric(m1, "workload_streams_opened").get("service/default/backend", 0)
             >= 2, 10, "m1 to count the streams its pod opened")
    wait_for(lambda: sum(metric(mesh.agents[m], "workload_streams_served").get(
        "service/default/backend", 0) for m in ("m2", "m3", "m4")) >= 2, 10,
        "the backends' machines to count the streams they served")

    def backend_row() -> dict[str, Any]:
        return next(r for r in m1.get_json("get", "services") if r["name"] == "backend")

    # a duplicate copy an auction made may show for a moment until its surplus is removed
    row = wait_for(lambda: (r := backend_row())["ready"] == 2 and r, 60,
                   "get services to list the 2 ready endpoints")
    assert row["address"].startswith("127.") and row["allow_from"] == ["default/*"]


def test_no_plaintext_crosses_between_machines(mesh: LocalMesh, app: str,
                                               tmp_path: Path) -> None:
    """Every frame on m1's link to the other machines for 6 s, while the frontend makes its
    requests: the streams are there (bytes), the HTTP request and answer are not."""
    ns = mesh.netns("m1")
    out = tmp_path / "frames"
    before = sum(metric(mesh.agents["m1"], "workload_stream_bytes_received").values())
    done = subprocess.run([*ns.exec_prefix(), sys.executable, str(CAPTURE), ns.ns_if, "6",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frames = out.read_bytes()
    after = sum(metric(mesh.agents["m1"], "workload_stream_bytes_received").values())
    assert after > before, "no stream traffic while capturing"
    assert len(frames) > 5000
    for plain in (b"hello from", b"GET / HTTP", b"backend-"):
        assert plain not in frames
    assert sum(metric(mesh.agents["m1"], "workload_streams_on_channel").values()) > 0


def test_streams_carry_on_libp2p_when_the_channel_port_is_blocked(mesh: LocalMesh,
                                                                  app: str) -> None:
    """The backends' machines drop every packet to their channel port: the caller waits a
    second for it once per machine, then says so on the libp2p stream, and the answers go on
    coming, none of them on a channel."""
    rule = ["INPUT", "-p", "tcp", "--dport", str(WORKPLANE_PORT + 1), "-j", "DROP"]
    backs = [m for m in ("m2", "m3", "m4") if mesh.agents[m].alive()]
    m1 = mesh.agents["m1"]

    def counts() -> tuple[int, int]:
        return (sum(metric(m1, "workload_streams_opened").values()),
                sum(metric(m1, "workload_streams_on_channel").values()))

    for m in backs:
        subprocess.run([*mesh.netns(m).exec_prefix(), "iptables", "-A", *rule], check=True)
    try:
        t0 = time.time()
        time.sleep(6)  # streams opened before, and the metrics that lag a sync behind
        opened, on_channel = counts()
        wait_for(lambda: counts()[0] >= opened + 3, 60, "three more streams opened")
        assert counts()[1] == on_channel, "a stream took the blocked channel"
        recent = [a for t, a in answers(mesh, app) if t >= t0 + 6]
        assert recent and all(a.startswith("hello") for a in recent[-3:]), recent
    finally:
        for m in backs:
            subprocess.run([*mesh.netns(m).exec_prefix(), "iptables", "-D", *rule])


def test_the_caller_keeps_its_answers_when_a_backend_machine_dies(mesh: LocalMesh,
                                                                  app: str) -> None:
    m1 = mesh.agents["m1"]
    victim = machine_name(mesh, pods_of(m1, "deployment/default/backend")[0]["machine"])
    t0 = int(time.time())
    kill_machine(mesh, victim)
    survivors = [m for m in ("m2", "m3", "m4") if m != victim]
    wait_for(lambda: len([p for p in pods_of(m1, "deployment/default/backend")
                          if machine_name(mesh, p["machine"]) in survivors
                          and p["ready"]]) == 2, 120, "a replacement backend replica")
    time.sleep(5)
    after = [(t, a) for t, a in answers(mesh, app) if t >= t0]
    failed = [t for t, a in after if not a.startswith("hello")]
    assert len(failed) <= 5, after
    latest = {a for t, a in after[-8:]}
    assert all(a.startswith("hello") for a in latest), after[-8:]
    # the machine comes back (empty): the tests after this one may lose another
    mesh.start(victim, podman=True, bootstrap=[m1.addr], extra=["--labels", "pool=back"])
    ids = {a.peer_id for a in mesh.agents.values()}
    wait_for(lambda: all(a.node_ids() == ids for a in mesh.agents.values()), 120,
             f"every machine to see {victim} again")


def test_refusals_are_counted_and_named(mesh: LocalMesh, app: str,
                                        tmp_path: Path) -> None:
    m1 = mesh.agents["m1"]
    # another namespace reaches backend.default by name, and is refused by default policy
    apply(mesh, tmp_path, caller("outsider", "backend.default", namespace="other"))
    pod = pods_of(m1, "deployment/other/outsider")[0]["pod"]
    wait_for(lambda: len(answers(mesh, pod)) >= 3, 60, "the outsider to try")
    assert not [a for _, a in answers(mesh, pod) if a.startswith("hello")]

    def refused() -> int:
        return sum(metric(a, "workload_streams_refused").get("policy", 0)
                   for a in mesh.agents.values() if a.alive())

    wait_for(lambda: refused() >= 1, 30, "policy refusals counted")
    # widening the policy by annotation lets it in
    apply(mesh, tmp_path, service(allow="default/*, other/outsider"))
    wait_for(lambda: any(a.startswith("hello") for _, a in answers(mesh, pod)[-3:]), 60,
             "the outsider to be let in by the annotation")


def test_outsiders_and_forged_callers_are_refused(mesh: LocalMesh, app: str,
                                                  tmp_path: Path) -> None:
    """At a work plane serving a backend replica: a machine key and a PSK-only outsider never
    get a connection; a stolen (admitted) work-plane host key gets one, but its StreamOpen,
    signed by a key no machine certified, is refused as untrusted; so is a stranger at the
    channel port."""
    m1 = mesh.agents["m1"]
    row = next(r for r in m1.get_json("get", "endpoints", "deployment/default/backend")
               if r["ready"] and mesh.agents[machine_name(mesh, r["machine"])].alive())
    server = mesh.agents[machine_name(mesh, row["machine"])]
    host = load_key(server.state_dir / "workplane" / "host.key", "host key", "")
    target = f"/ip4/{server.ip}/tcp/{WORKPLANE_PORT}/p2p/{host.peer_id}"
    outsider = tmp_path / "outsider.key"
    save_key(outsider, KeyPair.generate())
    cases = {"machine key": m1.state_dir / "machine.key", "outsider": outsider,
             "stolen host key": m1.state_dir / "workplane" / "host.key"}
    reports = {}
    for name, key in cases.items():
        intruder = Phased(INTRUDER, "stream-open", str(mesh.fleet), str(key), target,
                          "service/default/backend", row["peer_id"])
        try:
            reports[name] = intruder.phase(60)
        finally:
            intruder.close()
    for name in ("machine key", "outsider"):
        assert not reports[name]["connected"] and reports[name]["answer"] is None, reports
    assert reports["stolen host key"]["connected"], reports
    assert reports["stolen host key"]["answer"] == "untrusted", reports
    # a stranger at the channel port, with a token no StreamAccept issued: closed, counted
    probe = (f"import os, socket; c = socket.create_connection(('{server.ip}', "
             f"{WORKPLANE_PORT + 1}), 5); c.sendall(os.urandom(16)); c.settimeout(5); "
             "print(repr(c.recv(10)))")
    done = subprocess.run([*mesh.netns("m1").exec_prefix(), sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "b''", done.stdout + done.stderr
    wait_for(lambda: metric(server, "workload_streams_refused").get("untrusted", 0) >= 2, 10,
             "both refusals counted")
    wait_for(lambda: metric(server, "workplane_connections_refused").get("peer", 0) >= 2, 10,
             "the refused connections counted")


def test_a_deleted_workload_is_refused(mesh: LocalMesh, app: str, tmp_path: Path) -> None:
    """A caller whose workload is deleted, still running out its stop grace (it ignores
    SIGTERM), gets no answer from the moment its machine has the Delete: its machine withdraws
    the replica's identity (a call then is refused as deleted and counted) and closes its
    listeners once the pod stops running. A serving machine refuses a caller of a deleted
    workload whose own machine did not stop it (`handshake.check_caller`, unit-tested)."""
    m1 = mesh.agents["m1"]
    stubborn = caller("leaver", "backend").replace("trap 'exit 0' TERM", "trap '' TERM")
    apply(mesh, tmp_path, stubborn)
    pod = pods_of(m1, "deployment/default/leaver")[0]["pod"]
    wait_for(lambda: any(a.startswith("hello") for _, a in answers(mesh, pod)), 60,
             "the leaver to get answers")
    done = mesh.operator(m1.api, "delete", "deployment", "leaver")
    assert done.returncode == 0, done.stdout + done.stderr
    deleted_at = time.time()
    seen: list[tuple[int, str]] = []

    def stopped_answering() -> bool:
        got = answers(mesh, pod)
        seen[:] = got or seen
        return not got or [a for t, a in got if t > deleted_at + 2][-2:] == ["FAILED"] * 2

    wait_for(stopped_answering, 30, "the deleted leaver's calls to fail")
    assert not [a for t, a in seen if t > deleted_at + 2 and a.startswith("hello")], seen


def test_headless_names_follow_their_ordinal(mesh: LocalMesh, app: str,
                                            tmp_path: Path) -> None:
    m1 = mesh.agents["m1"]
    apply(mesh, tmp_path, backend("db", kind="StatefulSet"), service("db", headless=True),
          caller("dbcaller", "db-1.db"))
    pod = pods_of(m1, "deployment/default/dbcaller")[0]["pod"]
    wait_for(lambda: [a for _, a in answers(mesh, pod)][-1:] == ["hello from db-1"], 90,
             "db-1.db to answer as db-1")
    zero = podman_exec(mesh, "m1", f"{pod}-c", "sh", "-c",
                       "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 db-0.db.default 80")
    assert zero.stdout.strip().endswith("hello from db-0"), zero.stdout + zero.stderr
    db1 = next(p for p in pods_of(m1, "statefulset/default/db") if p["replica"] == 1)
    victim = machine_name(mesh, db1["machine"])
    t0 = int(time.time())
    kill_machine(mesh, victim)
    wait_for(lambda: [p for p in pods_of(m1, "statefulset/default/db")
                      if p["replica"] == 1 and p["ready"]
                      and machine_name(mesh, p["machine"]) != victim], 120,
             "db-1 to run again on another machine")
    wait_for(lambda: [a for t, a in answers(mesh, pod) if t > t0][-1:] == ["hello from db-1"],
             60, "db-1.db to reach db-1 where it runs now")
    assert not [a for t, a in answers(mesh, pod) if a.startswith("hello from db-0")]
