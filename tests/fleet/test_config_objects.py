"""ConfigMaps and Secrets end to end (real agents and Podman, machines in their own network
namespaces).

One file holds a ConfigMap, a Secret and two Deployments: `web` (2 replicas) reads both as
variables and as files and asks to roll on a config change; `plain` reads the ConfigMap and
does not. The Secret's value must reach only the machines that run `web` pods, and never any
machine's state directory or the wire in clear; a machine that takes over a `web` replica after
the operator's `apply` has exited gets the value from a machine that holds it. Changing the
ConfigMap alone rolls `web` and leaves `plain` alone.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from healing_lib import kill_machine, machine_name
from podman_mesh import podman_mesh

from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for

pytestmark = pytest.mark.slow

BUSYBOX = "localhost/beemesh/busybox:latest"
SLEEP = "trap 'exit 0' TERM; sleep 100000 & wait"
PASSWORD = "pw-" + secrets.token_hex(12)
WEB = "deployment/default/web"
PLAIN = "deployment/default/plain"


def config_map(greeting: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config}}
data:
  GREETING: {greeting}
  app.ini: |
    [main]
    greeting = {greeting}
"""


SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: db}}
type: Opaque
data:
  password: {base64.b64encode(PASSWORD.encode()).decode()}
stringData:
  user: admin
"""

WORKLOADS = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{beemesh.io/roll-on-config-change: "true"}}
    spec:
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", "{SLEEP}"]
        env:
        - name: PW
          valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
        envFrom:
        - configMapRef: {{name: app-config}}
          prefix: CFG_
        volumeMounts:
        - {{name: conf, mountPath: /etc/app}}
        - {{name: sec, mountPath: /etc/sec}}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
      volumes:
      - name: conf
        configMap:
          name: app-config
          items: [{{key: app.ini, path: conf/app.ini}}]
      - name: sec
        secret: {{secretName: db, defaultMode: 0400}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: plain}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: plain}}}}
  template:
    metadata: {{labels: {{app: plain}}}}
    spec:
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["/bin/sh", "-c", "{SLEEP}"]
        env:
        - name: GREETING
          valueFrom: {{configMapKeyRef: {{name: app-config, key: GREETING}}}}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
"""


@pytest.fixture(scope="module")
def mesh(podman_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with podman_mesh("beemesh-config-", tmp_path_factory.mktemp("config-logs"),
                     {"m1": [], "m2": [], "m3": []}) as mesh:
        yield mesh


def apply(mesh: LocalMesh, tmp: Path, text: str, wait: float = 180) -> Any:
    path = tmp / f"{abs(hash(text))}.yaml"
    path.write_text(text)
    return mesh.operator(mesh.agents["m1"].api, "apply", "-f", str(path), "--wait",
                         "--timeout", str(wait), timeout=wait + 60)


def running(agent: AgentProc, workload: str) -> dict[str, dict[str, Any]]:
    return {p["pod"]: p for p in agent.get_json("get", "pods")
            if p["workload"] == workload and p["state"] == "running"}


def in_pod(mesh: LocalMesh, machine: str, pod: str, script: str) -> str:
    done = mesh.podman(machine).run("exec", f"{pod}-main", "/bin/sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout


def holds_bytes(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` that contain any of `needles`."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(str(path))
    return found


def test_config_maps_and_secrets_reach_only_the_pods_that_use_them(
        mesh: LocalMesh, tmp_path: Path) -> None:
    m1 = mesh.agents["m1"]
    done = apply(mesh, tmp_path, config_map("hello") + "---\n" + SECRET + "---\n" + WORKLOADS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sealed secret/default/db for" in done.stderr, done.stderr
    web = wait_for(lambda: len(p := running(m1, WEB)) == 2 and p, 90, "both web pods running")
    wait_for(lambda: len(running(m1, PLAIN)) == 1, 60, "the plain pod running")

    # values inside the pods: variables and files, a Secret file with its defaultMode
    for pod, row in web.items():
        machine = machine_name(mesh, row["machine"])
        out = in_pod(mesh, machine, pod, "echo $PW $CFG_GREETING; cat /etc/app/conf/app.ini; "
                     "cat /etc/sec/password; echo; cat /etc/sec/user; echo; "
                     "stat -c %a /etc/sec/password; touch /etc/sec/x 2>/dev/null || echo ro")
        assert out.split("\n") == [f"{PASSWORD} hello", "[main]", "greeting = hello",
                                   PASSWORD, "admin", "400", "ro", ""], out
    (plain,) = running(m1, PLAIN).items()
    assert in_pod(mesh, machine_name(mesh, plain[1]["machine"]), plain[0],
                  "echo $GREETING") == "hello\n"

    # the Secret in clear: in no machine's state (the operator's signed Secret, the audit
    # trail, sealed copies), and in pod files only where a web pod runs
    needles = [PASSWORD.encode(), base64.b64encode(PASSWORD.encode())]
    users = {machine_name(mesh, r["machine"]) for r in web.values()}
    for name, agent in mesh.agents.items():
        assert holds_bytes(agent.state_dir, needles) == [], name
        files = holds_bytes(mesh.pod_files / name, needles)
        assert bool(files) == (name in users), (name, files)
        copies = list((agent.state_dir / "secrets").glob("*.cbor"))
        assert bool(copies) == (name in users), (name, copies)
    rows = {r["name"]: r for r in m1.get_json("get", "secrets")}
    assert rows["db"]["keys"] == ["password", "user"] and "data" not in rows["db"]

    # a machine that takes over a web replica gets the value from a machine holding it (the
    # operator's apply has exited): the other web machine is cordoned, one web machine dies
    victim, keeper = sorted(users)
    (newcomer,) = set(mesh.agents) - users
    done = mesh.operator(m1.api, "cordon", mesh.agents[keeper].peer_id)
    assert done.returncode == 0, done.stdout + done.stderr
    kill_machine(mesh, victim)
    moved = wait_for(lambda: [(pod, r) for pod, r in running(mesh.agents[keeper], WEB).items()
                              if machine_name(mesh, r["machine"]) == newcomer], 120,
                     "a web replica running on the third machine")
    pod = moved[0][0]
    assert in_pod(mesh, newcomer, pod, "echo $PW; cat /etc/sec/password") == \
        f"{PASSWORD}\n{PASSWORD}"
    events = mesh.agents[keeper].get_json("events")
    assert any(e["kind"] == "SecretSealed" and mesh.agents[newcomer].peer_id in e["text"]
               for e in events), events

    # the ConfigMap changes alone: web (which asked to) rolls to the new value, plain does not
    done = mesh.operator(mesh.agents[keeper].api, "uncordon", mesh.agents[keeper].peer_id)
    assert done.returncode == 0, done.stdout + done.stderr
    via = mesh.agents[keeper]
    before_plain = {p: r["task"] for p, r in running(via, PLAIN).items()}
    path = tmp_path / "cm2.yaml"
    path.write_text(config_map("bonjour"))
    done = mesh.operator(via.api, "apply", "-f", str(path), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{WEB} rolls" in done.stderr and PLAIN not in done.stderr, done.stderr

    def rolled() -> bool:
        pods = running(via, WEB)
        return len(pods) == 2 and all(
            in_pod(mesh, machine_name(mesh, r["machine"]), p, "echo $CFG_GREETING")
            == "bonjour\n" for p, r in pods.items())

    wait_for(rolled, 180, "both web pods to run with the new ConfigMap")
    assert {p: r["task"] for p, r in running(via, PLAIN).items()} == before_plain
    assert [r["name"] for r in via.get_json("get", "configmaps")] == ["app-config"]
