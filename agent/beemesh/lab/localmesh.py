"""Several agents on one machine, each its own process, state dir, port and API socket.

Used by `beemesh demo` (the quick start), by the multi-process tests and by the benchmarks,
so all three exercise the same real processes an operator would run.

A machine started with `podman=True` is a separate network host: its agent (and whatever the
agent spawns) and its Podman run in its own network namespace (see beemesh.lab.netns),
reached at 10.77.<i>.2; the host routes between machines, so tests can cut links between
them (`LocalMesh.partition`) and restore them (`LocalMesh.rejoin`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from beemesh.config import DEFAULT_LISTEN, DEFAULT_WORKPLANE_LISTEN
from beemesh.errors import UserError
from beemesh.lab.netns import (
    Netns,
    delete_stale,
    delete_stale_rules,
    drop_between,
    enable_forwarding,
    remove_rules,
)

T = TypeVar("T")
BEEMESH = [sys.executable, "-m", "beemesh"]
NETNS_PREFIX = "bm"  # + "<pid>-<mesh>-<machine>"; netns.delete_stale* clean up after dead runs
AGENT_PORT = int(DEFAULT_LISTEN.rsplit("/", 1)[1])  # a machine's own namespace: its own ports
WORKPLANE_PORT = int(DEFAULT_WORKPLANE_LISTEN.rsplit("/", 1)[1])
_meshes = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def beemesh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process."""
    proc = subprocess.run([*BEEMESH, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"beemesh {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def labels_in(args: list[str]) -> dict[str, str]:
    """The labels an agent's arguments give it (the last --labels wins, as argparse does)."""
    from beemesh.config import parse_labels

    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--labels"]
    return parse_labels(values[-1]) if values else {}


def admit_machine(fleet: Path, peer: str, labels: dict[str, str], out: Path,
                  days: float = 30) -> None:
    """What `beemesh fleet admit` writes, without a process per machine."""
    from beemesh.files import write_atomic
    from beemesh.fleet import Fleet
    from beemesh.membership.certs import DAY_S, issue_machine_cert

    now = time.time()
    data = issue_machine_cert(Fleet.load(fleet).operator_key(), peer, labels,
                              now + days * DAY_S, now)
    write_atomic(out, data, 0o644)


class AgentExited(Exception):
    """An agent process of the mesh ended when it should run."""


def _side_by_side(calls: list[Callable[[], object]]) -> None:
    """Run `calls` in threads at once (each mostly waits on a process); re-raise the first
    error."""
    with ThreadPoolExecutor(max(1, len(calls))) as pool:
        for done in [pool.submit(call) for call in calls]:
            done.result()


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.3) -> T:
    """Poll until `predicate()` is truthy; TimeoutError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (AssertionError, RuntimeError, ValueError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@dataclass
class AgentProc:
    name: str
    state_dir: Path
    api: Path
    port: int
    peer_id: str
    proc: subprocess.Popen
    log: Path
    ip: str = "127.0.0.1"

    @property
    def addr(self) -> str:
        """Where other machines dial this agent."""
        return f"/ip4/{self.ip}/tcp/{self.port}/p2p/{self.peer_id}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return beemesh(*args, "--api", str(self.api), check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json").stdout)

    def nodes(self) -> list[dict[str, Any]]:
        return self.get_json("nodes")

    def node_ids(self) -> set[str]:
        return {n["peer_id"] for n in self.nodes()}

    def status(self) -> dict[str, Any]:
        return self.get_json("status")

    def metrics(self) -> dict[str, Any]:
        return self.get_json("metrics")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ensure_alive(self) -> None:
        """Raise AgentExited with its log if the agent exited (a wait on it would only time
        out; `wait_for` lets AgentExited through)."""
        if not self.alive():
            raise AgentExited(f"agent {self.name} exited:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class LocalMesh:
    """Agents sharing one fleet directory under `root`.

    With `podman=True` a machine gets its own network namespace, with its agent and its own
    Podman service (own storage, busybox image imported) inside, so several machines on one
    host can each publish the same hostPort and be partitioned, as separate machines would.
    `netns_prefix` names this mesh's namespaces and tags its partition rules.
    """

    root: Path
    fleet: Path
    agents: dict[str, AgentProc] = field(default_factory=dict)
    podmans: dict[str, Any] = field(default_factory=dict)
    namespaces: dict[str, Netns] = field(default_factory=dict)
    netns_prefix: str = field(
        default_factory=lambda: f"{NETNS_PREFIX}{os.getpid()}-{next(_meshes)}")

    def netns(self, name: str) -> Netns:
        """This machine's network namespace (made on first use, deleted by close())."""
        if name not in self.namespaces:
            if not self.namespaces:
                delete_stale(NETNS_PREFIX)
                delete_stale_rules(NETNS_PREFIX)
                enable_forwarding()
            self.namespaces[name] = Netns.create(
                f"{self.netns_prefix}-{len(self.namespaces)}")
        return self.namespaces[name]

    @property
    def pod_files(self) -> Path:
        """Where its machines write configMap and secret files: a tmpfs (/dev/shm), one
        directory per machine (removed by close())."""
        return Path("/dev/shm") / self.netns_prefix

    def podman(self, name: str) -> Any:
        """This machine's PodmanService in its namespace (started on first use)."""
        if name not in self.podmans:
            self.prepare_podmans([name])
        return self.podmans[name]

    def prepare_podmans(self, names: Iterable[str]) -> None:
        """Start the PodmanServices of `names` side by side (each with its busybox image):
        a machine's Podman takes seconds to start, most of it waiting."""
        from beemesh.lab.busybox import ensure_busybox_image
        from beemesh.lab.podman_service import PodmanService

        def prepare(name: str, netns: str) -> None:
            service = PodmanService(self.root / f"{name}-podman", netns=netns)
            self.podmans[name] = service
            ensure_busybox_image(service)

        todo = {n: self.netns(n).name for n in names if n not in self.podmans}
        _side_by_side([functools.partial(prepare, n, ns) for n, ns in todo.items()])

    @classmethod
    def create(cls, root: Path) -> LocalMesh:
        fleet = root / "fleet"
        if not (fleet / "swarm.key").exists():
            beemesh("fleet", "init", "--out", str(fleet))
        return cls(root, fleet)

    def start(self, name: str, *, bootstrap: list[str] | None = None, fleet: Path | None = None,
              extra: list[str] | None = None, env: dict[str, str] | None = None,
              podman: bool = False, workplane: bool | None = None,
              wait: bool = True, admit: bool = True) -> AgentProc:
        """Start (or restart) machine `name`. Its work plane runs when `workplane` (default:
        with Podman; machine-plane tests without Podman go without one). `admit`: the fleet's
        operator admits it first (with the --labels in `extra`), as `fleet admit` would."""
        state = self.root / name
        peer = beemesh("init", "--state-dir", str(state)).stdout.strip()
        if admit:
            admit_machine(fleet or self.fleet, peer, labels_in(extra or []),
                          state / "machine.cert")
        previous = self.agents.get(name)
        api = self.root / f"{name}.sock"
        log = self.root / f"{name}.log"
        prefix: list[str] = []
        ip, port = "127.0.0.1", previous.port if previous else free_port()
        wp_listen = "/ip4/127.0.0.1/tcp/0"
        if podman:  # the whole machine lives in its namespace: agent, children and Podman
            extra = ["--podman-socket", self.podman(name).url,
                     "--pod-files", str(self.pod_files / name), *(extra or [])]
            ns = self.netns(name)
            prefix, ip, port = ns.exec_prefix(), ns.ip, AGENT_PORT
            wp_listen = f"/ip4/{ns.ip}/tcp/{WORKPLANE_PORT}"
        if workplane if workplane is not None else podman:
            extra = ["--workplane-listen", wp_listen, *(extra or [])]
        else:
            extra = ["--no-workplane", *(extra or [])]
        args = [*prefix, *BEEMESH, "agent", "--state-dir", str(state),
                "--fleet", str(fleet or self.fleet), "--listen", f"/ip4/{ip}/tcp/{port}",
                "--api", str(api)]
        for b in bootstrap or []:
            args += ["--bootstrap", b]
        args += extra or []
        with log.open("a") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, **(env or {})})
        agent = AgentProc(name, state, api, port, peer, proc, log, ip)
        self.agents[name] = agent
        if wait:
            wait_for(lambda: api.exists() or not agent.alive(), 60, f"{name}'s API socket")
            agent.ensure_alive()
        return agent

    def revoke(self, api: Path, peer: str, reason: str = "test") -> subprocess.CompletedProcess:
        return self.operator(api, "revoke", peer, "--reason", reason)

    def operator(self, api: Path, *args: str, fleet: Path | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        """Run an operator command as a user would: fleet and agent from the environment."""
        env = {**os.environ, "BEEMESH_FLEET": str(fleet or self.fleet), "BEEMESH_API": str(api)}
        return subprocess.run([*BEEMESH, *args], capture_output=True, text=True, env=env,
                              timeout=timeout)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10) -> float:
        """Signal an agent and wait for it; returns how long it took to exit. SIGTERM is a
        clean shutdown (the agent stops its work plane); SIGKILL kills the agent and its work
        plane at once, as a machine that dies would."""
        agent = self.agents[name]
        t0 = time.monotonic()
        if agent.alive():
            if sig == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.proc.pid, signal.SIGKILL)
            else:
                agent.proc.send_signal(sig)
            agent.proc.wait(timeout)
        return time.monotonic() - t0

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between machines (by name) of different groups: their packets are
        dropped silently, as by a pulled cable. Machines in no group keep all their links;
        cuts add up until rejoin()."""
        sets = [set(g) for g in groups]
        names = [n for g in sets for n in g]
        if len(names) != len(set(names)):
            raise UserError(f"partition groups overlap: {sets}; name each machine once")
        for n in names:
            if n not in self.namespaces:
                raise UserError(f"machine {n} has no network namespace of its own; "
                                "start it with podman=True to partition it")
        for one, other in itertools.combinations(sets, 2):
            for a, b in itertools.product(one, other):
                drop_between(self.namespaces[a], self.namespaces[b], self.netns_prefix)

    def rejoin(self) -> None:
        """Restore every link partition() cut."""
        remove_rules(self.netns_prefix)

    def close(self) -> None:
        """SIGTERM everyone (clean shutdown), SIGKILL whoever is still there after 8 s; then
        stop the Podmans and remove the namespaces and partition rules."""
        live = [a for a in self.agents.values() if a.alive()]
        for a in live:
            a.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for a in live:
            try:
                a.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(a.proc.pid, signal.SIGKILL)
                a.proc.wait(10)
        for a in self.agents.values():  # a work plane that outlived its agent
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(a.proc.pid, signal.SIGKILL)
        _side_by_side([s.stop for s in self.podmans.values()])  # each waits for its pods
        if self.namespaces:
            self.rejoin()
        for ns in self.namespaces.values():
            ns.delete()
        shutil.rmtree(self.pod_files, ignore_errors=True)
