"""`beemesh demo` (`make run`): a local mesh that schedules and runs a real workload.

Three machines, each a network namespace of its own with its own address, state dir, API
socket, agent, work plane and Podman (own storage, so each can publish the same hostPort). An
example Deployment with one replica fewer than machines, serving HTTP, is applied through the
normal operator path and shown running (and ready) on different machines, with the service
records the work plane keeps for each replica. It then rolls the Deployment to a changed
template (one surge replica at a time, on the spare machine first) and follows it with
`beemesh rollout status`. Then it watches: when a machine's agent dies it says so and shows
the replica coming back on the spare machine. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for
from beemesh.output import emit

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: {replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: localhost/beemesh/busybox:latest
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo \\"$GREETING from \
$(hostname)\\" > /www/index.html && httpd -f -p 8080 -h /www & wait"]
        env: [{name: GREETING, value: {greeting}}]
        ports: [{containerPort: 8080, hostPort: 18080}]
        resources:
          requests: {cpu: 100m, memory: 32Mi}
          limits: {cpu: 250m, memory: 64Mi}
"""


def step(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def run_demo(machines: int, workdir: Path | None, workload: bool = True) -> int:
    from beemesh.output import ENDPOINT_COLUMNS, NODE_COLUMNS, POD_COLUMNS

    root = workdir or Path(tempfile.mkdtemp(prefix="beemesh-demo-"))
    mesh = LocalMesh.create(root)
    step(f"state, logs and sockets under {root}")
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for i in range(1, machines + 1):
            name = f"machine-{i}"
            if workload:
                step(f"{name}: starting its Podman (own storage and network namespace) "
                     "and importing the busybox image ...")
            bootstrap = [mesh.agents["machine-1"].addr] if i > 1 else []
            a = mesh.start(name, bootstrap=bootstrap, podman=workload,
                           extra=["--labels", f"zone={'ba'[i % 2]}"])
            step(f"{name} up: {a.peer_id}")
        seed = mesh.agents["machine-1"]
        expected = {a.peer_id for a in mesh.agents.values()}
        step(f"waiting for all {machines} machines to see each other ...")
        wait_for(lambda: all(a.node_ids() == expected for a in mesh.agents.values()), 60,
                 "the machines to find each other")
        step(f"beemesh nodes --api {seed.api}")
        emit(seed.nodes(), NODE_COLUMNS, "table")
        replicas = max(1, machines - 1)  # a spare machine for a lost replica to come back on
        if workload:
            apply_example(mesh, root, replicas)
            pods = seed.get_json("get", "pods")
            emit(pods, POD_COLUMNS, "table")
            step("beemesh get endpoints web   (each replica's workload Peer ID, from the work "
                 "plane)")
            emit(wait_for(lambda: ready_endpoints(seed, replicas), 30,
                          f"{replicas} ready service records"), ENDPOINT_COLUMNS, "table")
            curl_each(mesh, pods)
            roll_example(mesh, root)
            curl_each(mesh, seed.get_json("get", "pods"))
        cli = Path(sys.executable).parent / "beemesh"
        step(f"try: BEEMESH_API={seed.api} BEEMESH_FLEET={mesh.fleet} "
             f"{cli} {'get pods' if workload else 'nodes'}")
        step("running; kill a machine's agent (`kill <pid>`: "
             + ", ".join(f"{n} {a.proc.pid}" for n, a in mesh.agents.items())
             + ") to watch its replica come back elsewhere; press Ctrl-C to stop")
        watch(mesh, workload, lambda: stop)
    finally:
        step("stopping agents and their Podman services ...")
        mesh.close()
        step("stopped")
    return 0


def watch(mesh: LocalMesh, workload: bool, stopped: Callable[[], bool]) -> None:
    """Until Ctrl-C or no agent is left: say when an agent dies, and show `get pods` (from a
    live agent) whenever where the replicas run changes."""
    from beemesh.output import POD_COLUMNS

    dead: set[str] = set()
    shown: set[tuple[str, str, bool]] = set()
    while not stopped():
        for name, agent in mesh.agents.items():
            if name not in dead and not agent.alive():
                dead.add(name)
                step(f"{name}'s agent is gone (exit {agent.proc.poll()}); its replica comes "
                     "back on a live machine once its records expire (~15-20 s)")
        live = [a for n, a in mesh.agents.items() if n not in dead]
        if not live:
            step("no agent left")
            return
        if workload and dead:
            try:
                pods = live[0].get_json("get", "pods")
            except Exception:  # the agent may be dying too: look again next round
                pods = []
            now = {(p["pod"], p["machine"], bool(p.get("ready"))) for p in pods}
            if pods and now != shown:
                shown = now
                step("beemesh get pods")
                emit(pods, POD_COLUMNS, "table")
        time.sleep(1)


def ready_endpoints(agent: AgentProc, count: int) -> list[dict[str, Any]] | None:
    rows = agent.get_json("get", "endpoints", "web")
    return rows if sum(r["ready"] for r in rows) == count else None


def curl_each(mesh: LocalMesh, pods: list[dict[str, Any]]) -> None:
    """Fetch each ready replica's page at its machine's address."""
    names = {a.peer_id: n for n, a in mesh.agents.items()}
    for pod in pods:
        if not pod.get("ready"):
            continue
        address = mesh.podman(names[pod["machine"]]).address
        with urllib.request.urlopen(f"http://{address}:18080/", timeout=5) as r:
            step(f"curl http://{address}:18080/ -> {r.read().decode().strip()}")


def manifest_for(root: Path, replicas: int, greeting: str) -> Path:
    path = root / "web.yaml"
    path.write_text(WEB.replace("{replicas}", str(replicas)).replace("{greeting}", greeting))
    return path


def roll_example(mesh: LocalMesh, root: Path) -> None:
    """A changed template (a new GREETING), applied and followed as an operator would."""
    seed = mesh.agents["machine-1"]
    replicas = next(r["desired"] for r in seed.get_json("get", "workloads")
                    if r["name"] == "web")
    manifest = manifest_for(root, replicas, "hello-v2")
    step("a rolling update: GREETING hello -> hello-v2 in web.yaml; beemesh apply -f web.yaml, "
         "then beemesh rollout status web   (one surge replica at a time, the old one goes "
         "once the new is ready)")
    done = mesh.operator(seed.api, "apply", "-f", str(manifest))
    if done.returncode != 0:
        raise RuntimeError(f"the changed Deployment was refused: {done.stderr.strip()}")
    started = time.monotonic()
    done = mesh.operator(seed.api, "rollout", "status", "web", "--timeout", "180", timeout=210)
    print(done.stderr + done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"the rolling update did not finish; see the agent logs under {root}")
    step(f"rolled out in {time.monotonic() - started:.0f} s; beemesh rollout history web")
    print(mesh.operator(seed.api, "rollout", "history", "web").stdout, end="", flush=True)
    wait_for(lambda: sum(p.get("ready", False) for p in seed.get_json("get", "pods")) ==
             replicas, 30, f"all {replicas} pods ready in `get pods`")


def apply_example(mesh: LocalMesh, root: Path, replicas: int) -> None:
    manifest = manifest_for(root, replicas, "hello")
    seed = mesh.agents["machine-1"]
    step(f"beemesh apply -f web.yaml --wait   (a Deployment: {replicas} replicas of a busybox "
         "httpd)")
    done = mesh.operator(seed.api, "apply", "-f", str(manifest), "--wait", "--timeout", "90")
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        raise RuntimeError("the example Deployment did not come up; see the agent logs under "
                           f"{root}")
    wait_for(lambda: sum(p.get("ready", False) for p in seed.get_json("get", "pods")) ==
             replicas, 30, f"all {replicas} pods ready in `get pods`")
