"""The agent's part of Service names: each pod's /etc/hosts and its listeners.

`workplane.names` says what a pod should see; this keeps it so. Before a deploy the agent
writes the pod's hosts file (`STATE_DIR/names/<pod>.hosts`, root's directory, mounted
read-only at /etc/hosts) and gives its Service env vars (`network_for`). Every
`STEP_S` it rewrites changed hosts files in place (a bind-mounted file keeps its inode), opens
the listeners a running pod is missing inside the pod's network namespace, with the NAT rules
that lead each Service port to them (`pod_netns`: only root can), closes those of deleted
Services or gone pods, and hands each change to the work plane over the socket pair made when
the work plane starts (`workplane.handoff`). A pod whose network namespace changed (its infra
container restarted) gets all its listeners again.

Without root (or without a work plane) there are no listeners: it says so once, and pods get
neither names nor env vars.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

from beemesh.errors import UserError
from beemesh.machine import pod_netns
from beemesh.manifest import WorkloadSpec
from beemesh.metrics import Metrics
from beemesh.once import Once
from beemesh.runtime import PodInfo, PodNetwork, Runtime
from beemesh.workloads.store import WorkloadStore
from beemesh.workplane import handoff, names
from beemesh.workplane.names import Endpoints

log = logging.getLogger("beemesh.listeners")

STEP_S = 2.0


@dataclass
class _Pod:
    pid: int
    netns: int  # inode of its network namespace: a change means a new namespace
    address: str  # the pod's IP
    listeners: dict[str, pod_netns.Opened]
    rules: str = ""  # the NAT rules last applied in its namespace ("": none yet)


class Listeners:
    def __init__(self, *, runtime: Runtime, store: WorkloadStore, directory: Path,
                 running: Callable[[], Iterable[PodInfo]], deploying: Callable[[], set[str]],
                 metrics: Metrics) -> None:
        """`running`: the pods here (any state); `deploying`: names of pods being deployed
        (their hosts files are kept)."""
        self.runtime = runtime
        self.store = store
        self.directory = directory
        self.running = running
        self.deploying = deploying
        self.metrics = metrics
        self.enabled = os.geteuid() == 0
        self.pods: dict[str, _Pod] = {}
        self._channel: socket.socket | None = None
        self._sent: set[str] = set()  # listener keys the current work plane has
        self._collisions: set[str] = set()
        self._failed = False
        self._once = Once()
        metrics.describe("service_listeners", "Service listeners open in this machine's pods")
        if not self.enabled:
            log.warning("the agent is not root: pods get no Service names (opening a listener "
                        "in a pod's network namespace needs root)")

    # ---- what a deploy needs ------------------------------------------------------------------

    def _endpoints(self) -> list[Endpoints]:
        workloads = [w.spec for w in self.store.workloads()]
        out = []
        for stored in self.store.services():
            svc = stored.spec
            ordinals = tuple((k, w.pod_name(k)) for w in svc.picks(workloads)
                             if w.kind == "StatefulSet"
                             for k in range(w.replicas)) if svc.headless else ()
            out.append(Endpoints(svc, ordinals))
        return out

    def _path(self, pod: str) -> Path:
        return self.directory / f"{pod}.hosts"

    def network_for(self, spec: WorkloadSpec, ordinal: int) -> PodNetwork | None:
        """Write the pod's hosts file now; its mount and env vars (None without listeners)."""
        if not self.enabled:
            return None
        pod = spec.pod_name(ordinal)
        try:
            self._write_hosts(pod, names.plan(pod, spec.workload_id, self._endpoints()))
        except OSError as e:
            raise UserError(f"cannot write the hosts file of {pod} in {self.directory}: "
                            f"{e.strerror}; free space there or fix its permissions") from None
        env = names.env_vars(spec.namespace, (s.spec for s in self.store.services()))
        return PodNetwork(self._path(pod), tuple(sorted(env.items())))

    def _write_hosts(self, pod: str, plan: names.Plan) -> None:
        text = names.hosts_text(pod, plan).encode()
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        path = self._path(pod)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            if os.pread(fd, len(text) + 1, 0) != text:  # in place: containers bind-mount it
                os.ftruncate(fd, 0)
                os.pwrite(fd, text, 0)
        finally:
            os.close(fd)
        for c in plan.collisions:
            if c not in self._collisions:
                self._collisions.add(c)
                log.warning("Service address collision in pod %s: %s; rename one", pod, c)

    # ---- the work plane's end -------------------------------------------------------------

    def channel(self) -> socket.socket:
        """A new socket pair for a (re)started work plane: returns its end (to inherit);
        every open listener is handed to it at the next step."""
        if self._channel is not None:
            self._channel.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.settimeout(1.0)
        self._channel, self._sent = ours, set()
        return theirs

    def address_of(self, pod: str) -> str:
        p = self.pods.get(pod)
        return p.address if p is not None else ""

    # ---- keeping pods' listeners ------------------------------------------------------------

    async def run(self) -> None:
        if not self.enabled:
            return
        while True:
            # What the other services change is read here, in trio's thread; the thread only
            # touches the sockets, files and namespaces.
            pods = list(self.running())
            keep = {p.name for p in pods} | self.deploying()
            try:
                await trio.to_thread.run_sync(self.step, pods, keep, self._endpoints())
            except Exception as e:  # a bug or a full disk: never take the agent down
                if not self._failed:
                    log.error("keeping pods' Service names failed: %s (logged once; tried "
                              "again every %.0f s)", e, STEP_S, exc_info=e)
                self._failed = True
            await trio.sleep(STEP_S)

    def step(self, pods: list[PodInfo], keep: set[str], endpoints: list[Endpoints]) -> None:
        running = {p.name: p for p in pods if p.state == "running"}
        for name in [n for n in self.pods if n not in running]:
            self._close_pod(name)
        self._forget_files(keep)
        for pod in running.values():
            try:
                self._keep(pod, endpoints)
            except OSError as e:  # its hosts file (a full disk): the other pods go on
                log.warning("Service names of pod %s: %s", pod.name, e)
        self._hand_over()
        self.metrics.set("service_listeners", "", sum(len(p.listeners)
                                                      for p in self.pods.values()))

    def _keep(self, info: PodInfo, endpoints: list[Endpoints]) -> None:
        plan = names.plan(info.name, info.workload_id, endpoints)
        self._write_hosts(info.name, plan)
        pod = self.pods.get(info.name)
        if pod is not None and _netns(pod.pid) != pod.netns:
            self._close_pod(info.name)
            pod = None
        if pod is None:
            try:
                pid = self.runtime.pod_pid(info.name)
                ip = self.runtime.pod_address(info.name) if pid else None
            except UserError as e:  # e.g. removed meanwhile: the next step sees it gone
                log.debug("pod %s: %s", info.name, e)
                return
            inode = _netns(pid) if pid else None
            if pid is None or inode is None:
                return
            pod = self.pods[info.name] = _Pod(pid, inode, ip or "", {})
        wanted = {li.key: li for li in plan.listeners}
        for key in [k for k in pod.listeners if k not in wanted]:
            self._close(pod, key)
        missing = [li for k, li in wanted.items() if k not in pod.listeners]
        if missing:
            made, problems = pod_netns.listen(pod.pid, missing,
                                              {port for _, _, port in pod.listeners.values()})
            for li, sock, port in made:
                pod.listeners[li.key] = (li, sock, port)
            if problems:
                self._warn(info.name, f"Service listeners of pod {info.name}: "
                           + "; ".join(problems[:3]))
        text = pod_netns.rules((li, port) for li, _, port in pod.listeners.values())
        if text != pod.rules:
            error = pod_netns.apply_rules(pod.pid, text, first=not pod.rules)
            if error is None:
                pod.rules = text
            else:
                self._warn(info.name, f"Service ports of pod {info.name}: {error}")

    def _warn(self, pod: str, text: str) -> None:
        """Once per pod and problem: the step tries again every STEP_S."""
        if self._once.first(pod, text):
            log.warning("%s (logged once)", text)

    def _forget_files(self, keep: set[str]) -> None:
        """Hosts files of pods that are gone (a stopped pod keeps its own: it may start)."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            pod = entry.name.removesuffix(".hosts")
            if entry.name.endswith(".hosts") and pod not in keep:
                os.unlink(entry.path)

    def _close_pod(self, name: str) -> None:
        pod = self.pods.pop(name)
        for key in list(pod.listeners):
            self._close(pod, key)

    def _close(self, pod: _Pod, key: str) -> None:
        _, sock, _ = pod.listeners.pop(key)
        sock.close()
        if key in self._sent and self._send(handoff.close_message(key)):
            self._sent.discard(key)

    def _hand_over(self) -> None:
        for pod in self.pods.values():
            for key, (li, sock, _) in pod.listeners.items():
                if key not in self._sent and self._send(handoff.open_message(li), sock.fileno()):
                    self._sent.add(key)

    def _send(self, data: bytes, fd: int | None = None) -> bool:
        if self._channel is None:
            return False
        try:
            handoff.send(self._channel, data, fd)
            return True
        except OSError as e:  # the work plane is restarting: it gets everything again
            log.debug("listener hand-over: %s", e)
            return False


def _netns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
