"""Podman runtime: one replica = one pod, played from a generated Pod manifest over REST.

Why ``kube play`` (POST /libpod/play/kube) rather than pods.create + containers.create:
one call creates the pod, its infra container (which publishes the hostPorts) and every
container, with Kubernetes semantics for command/args/env/ports/resources that Podman already
implements, and it copies the pod's labels onto every application container. Checked on
Podman 4.3: memory and cpu limits land in HostConfig (Memory, NanoCpus, CpuQuota/CpuPeriod)
and in the container's cgroup; label values with "/" are accepted. podman-py has no kube play
helper, so it is called through podman-py's API client; everything else also goes through
that client as plain REST calls, which keeps the JSON we read identical across podman-py
versions.

Image policy: a missing image is pulled first (unless ``pull_missing=False`` or the name is
``localhost/...``, which no registry serves) and the manifest says imagePullPolicy: Never, so
Podman itself never reaches for a registry inside kube play and a missing image gives one
clear error instead of a slow registry timeout.

Name conflicts: a pod is named ``spec.pod_name(ordinal)``. If one of that name exists:
  * same workload, same task, running      -> returned as is (deploy is idempotent);
  * same workload, other task or not running -> removed and replaced (the newer task wins:
    a task for an ordinal is only published when that replica is considered lost or its
    manifest changed);
  * another workload, or not a beemesh pod -> RuntimeFailure, nothing is touched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import podman.errors  # also binds `podman` (PodmanClient); a bare `import podman` is
import requests  # sorted as first-party by ruff because of the tests/podman directory

from beemesh.runtime import (
    LABEL_CPU,
    LABEL_MEMORY,
    LABEL_REPLICA,
    LABEL_TASK,
    LABEL_WORKLOAD,
    PodInfo,
    RuntimeFailure,
    RuntimeUnavailable,
)

if TYPE_CHECKING:
    from beemesh.manifest import ContainerSpec, WorkloadSpec

__all__ = ["PodmanRuntime", "default_socket_url", "pod_manifest"]

# Any Podman >= 4 serves this API prefix; podman-py's default (its own version) is newer than
# the Podman in Debian 12.
API_VERSION = "4.0.0"

_STATES = {
    "running": "running",
    "created": "created",
    "exited": "exited",
    "stopped": "exited",
    "dead": "exited",
    "degraded": "degraded",
    "paused": "paused",
    "error": "error",
}


def default_socket_url() -> str:
    """Where Podman's socket is when started by systemd (podman.socket), rootful or rootless."""
    if os.geteuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{runtime_dir}/podman/podman.sock"


def _socket_path(url: str) -> str | None:
    """The filesystem path of a unix socket URL, or None for other transports."""
    for prefix in ("unix://", "http+unix://"):
        if url.startswith(prefix):
            return "/" + url[len(prefix):].lstrip("/")
    return url if url.startswith("/") else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def pod_manifest(spec: WorkloadSpec, ordinal: int, task_id: str) -> dict[str, Any]:
    """The single-replica Pod that ``kube play`` runs (JSON is YAML, so it is sent as JSON).

    beemesh labels win over the workload's own labels of the same key.
    """
    cpu_milli, memory_bytes = spec.requests()
    labels = dict(spec.labels)
    labels.update({
        LABEL_WORKLOAD: spec.workload_id,
        LABEL_REPLICA: str(ordinal),
        LABEL_TASK: task_id,
        LABEL_CPU: str(cpu_milli),
        LABEL_MEMORY: str(memory_bytes),
    })
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": spec.pod_name(ordinal), "labels": labels},
        "spec": {
            "restartPolicy": spec.restart_policy,
            "containers": [_container_manifest(c) for c in spec.containers],
        },
    }


def _container_manifest(c: ContainerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "image": c.image, "imagePullPolicy": "Never"}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.env:
        out["env"] = [{"name": k, "value": v} for k, v in c.env]
    if c.ports:
        ports = []
        for p in c.ports:
            port: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.protocol}
            if p.host_port is not None:
                port["hostPort"] = p.host_port
            ports.append(port)
        out["ports"] = ports
    requests_: dict[str, str] = {}
    limits: dict[str, str] = {}
    if c.cpu_request_milli:
        requests_["cpu"] = f"{c.cpu_request_milli}m"
    if c.memory_request_bytes:
        requests_["memory"] = str(c.memory_request_bytes)
    if c.cpu_limit_milli is not None:
        limits["cpu"] = f"{c.cpu_limit_milli}m"
    if c.memory_limit_bytes is not None:
        limits["memory"] = str(c.memory_limit_bytes)
    resources = {k: v for k, v in (("requests", requests_), ("limits", limits)) if v}
    if resources:
        out["resources"] = resources
    return out


def _parse_time(value: Any) -> float:
    """Podman's RFC 3339 timestamps (nanoseconds, "Z") as a unix time; 0.0 if unreadable."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.strip().replace("Z", "+00:00")
    # Python before 3.12 accepts at most 6 fractional digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _is_local_only(image: str) -> bool:
    """``localhost/...`` images come from `podman import/build/load`; no registry has them."""
    return image.startswith("localhost/")


class PodmanRuntime:
    """The Runtime protocol on a Podman REST socket (rootful or rootless, Podman >= 4.3)."""

    def __init__(self, socket_url: str, *, timeout_s: float = 30.0,
                 pull_missing: bool = True, replace_grace_s: float = 10.0) -> None:
        """timeout_s bounds each REST call; replace_grace_s is the stop grace of a pod that
        deploy replaces (an older task of the same replica)."""
        self.socket_url = socket_url
        self.timeout_s = timeout_s
        self.pull_missing = pull_missing
        self.replace_grace_s = replace_grace_s
        self._client = podman.PodmanClient(
            base_url=socket_url, version=API_VERSION, timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"PodmanRuntime({self.socket_url!r})"

    def close(self) -> None:
        """Drop pooled connections (optional; the agent keeps one runtime for its lifetime)."""
        self._client.close()

    # -- errors -------------------------------------------------------------------------------

    def _unavailable(self, detail: str) -> RuntimeUnavailable:
        path = _socket_path(self.socket_url)
        start = (
            "start it with `systemctl start podman.socket` "
            f"(or run `podman system service --time=0 unix://{path}`)"
            if path else "check that `podman system service` is running there"
        )
        return RuntimeUnavailable(
            f"Podman is not reachable at {self.socket_url} ({detail}); {start}"
        )

    def _translate(self, action: str, exc: BaseException) -> RuntimeFailure:
        chain: list[BaseException] = []
        cur: BaseException | None = exc
        while cur is not None and len(chain) < 10:
            chain.append(cur)
            cur = cur.__cause__ or cur.__context__
        for e in chain:
            if isinstance(e, requests.Timeout | socket.timeout | TimeoutError):
                return RuntimeFailure(
                    f"{action}: Podman at {self.socket_url} did not answer within "
                    f"{self.timeout_s:g} s; check that `podman ps` answers on this machine"
                )
        if any(isinstance(e, FileNotFoundError | ConnectionError | requests.ConnectionError)
               for e in chain):
            path = _socket_path(self.socket_url)
            if path is not None and not Path(path).exists():
                return self._unavailable("no socket file")
            if any(isinstance(e, ConnectionRefusedError) for e in chain):
                return self._unavailable("nothing listens on the socket")
            inner = chain[-1]
            return self._unavailable(f"connection failed: {_one_line(str(inner))[:160]}")
        if isinstance(exc, podman.errors.APIError):
            reason = exc.explanation or str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return RuntimeFailure(f"{action}: {_one_line(reason)}")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn podman-py/requests/socket errors into one-line RuntimeFailures."""
        try:
            yield
        except RuntimeFailure:
            raise
        except (podman.errors.APIError, podman.errors.PodmanError, OSError, ValueError) as exc:
            raise self._translate(action, exc) from exc

    def _request(self, method: str, path: str, action: str, *, ok404: bool = False,
                 timeout: float | None = None, **kw: Any) -> Any:
        """One REST call; returns parsed JSON (None for an empty body, or on 404 if ok404)."""
        with self._errors(action):
            call = getattr(self._client.api, method)
            resp = call(path, timeout=timeout or self.timeout_s, **kw)
            if ok404 and resp.status_code == 404:
                return None
            resp.raise_for_status()
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                return None

    # -- Runtime protocol ---------------------------------------------------------------------

    def ping(self) -> None:
        """Cheap liveness check; the agent calls it at start so a missing Podman is one line."""
        path = _socket_path(self.socket_url)
        if path is not None and not Path(path).exists():
            raise self._unavailable("no socket file")
        try:
            resp = self._client.api.get("/_ping", timeout=min(self.timeout_s, 5.0))
        except Exception as exc:
            raise self._translate("checking Podman", exc) from exc
        if resp.status_code != 200:
            raise self._unavailable(f"/_ping answered HTTP {resp.status_code}")

    def deploy(self, spec: WorkloadSpec, ordinal: int, task_id: str) -> PodInfo:
        """Run one replica; see the module doc for what happens when the name is taken."""
        name = spec.pod_name(ordinal)
        action = f"deploying {name} ({spec.workload_id})"
        existing = self._pod_labels(name)
        if existing is not None:
            labels, state = existing
            owner = labels.get(LABEL_WORKLOAD)
            if owner is None:
                raise RuntimeFailure(
                    f"{action}: a pod named {name} exists on this machine but was not started "
                    f"by beemesh; rename or remove it (`podman pod rm -f {name}`)"
                )
            if owner != spec.workload_id:
                raise RuntimeFailure(
                    f"{action}: pod {name} on this machine already runs workload {owner}; "
                    "two workloads whose replicas share a pod name cannot run on one machine"
                )
            if labels.get(LABEL_TASK) == task_id and labels.get(LABEL_REPLICA) == str(ordinal) \
                    and state == "running":
                info = self.status(name)
                if info is not None:
                    return info
            self.remove(name, grace_s=self.replace_grace_s)

        self._check_host_ports(spec, action)
        for c in spec.containers:
            self._ensure_image(c.image, action)

        doc = pod_manifest(spec, ordinal, task_id)
        try:
            report = self._request(
                "post", "/play/kube", action,
                data=json.dumps(doc), params={"start": "true"},
                headers={"Content-Type": "application/yaml"},
                timeout=self.timeout_s + 30,
            )
            errors = [
                e for p in (report or {}).get("Pods") or []
                for e in (p.get("ContainerErrors") or [])
            ]
            if errors:
                raise RuntimeFailure(f"{action}: {_one_line(errors[0])}")
            self._check_limits(name, spec, action)
        except RuntimeFailure:
            self._cleanup_failed(name, task_id)
            raise
        info = self.status(name)
        if info is None:
            raise RuntimeFailure(f"{action}: Podman reported success but the pod is not there")
        return info

    def list_pods(self) -> list[PodInfo]:
        """Every pod carrying beemesh labels: what a restarted agent re-adopts."""
        return self._collect(None)

    def status(self, pod_name: str) -> PodInfo | None:
        """The beemesh pod called pod_name, or None (also None for a non-beemesh pod)."""
        found = self._collect(pod_name)
        return found[0] if found else None

    def logs(self, pod_name: str, follow: bool = False) -> Iterator[str]:
        """Lines from every application container; follow streams until the pod stops."""
        action = f"reading logs of {pod_name}"
        ctrs = self._request(
            "get", "/containers/json", action,
            params={"all": "true", "filters": json.dumps(
                {"pod": [pod_name], "label": [LABEL_WORKLOAD]})},
        ) or []
        ctrs = [c for c in ctrs if c.get("PodName") == pod_name and not c.get("IsInfra")]
        if not ctrs:
            raise RuntimeFailure(f"{action}: no beemesh pod named {pod_name} on this machine")
        targets = sorted(
            (_short_name(pod_name, (c.get("Names") or [c["Id"]])[0]), c["Id"]) for c in ctrs
        )
        prefix = len(targets) > 1
        if not follow or len(targets) == 1:
            return self._logs_sequential(targets, prefix, follow, action)
        return self._logs_merged(targets, action)

    def remove(self, pod_name: str, grace_s: float = 10) -> bool:
        """Stop (SIGTERM, then SIGKILL after grace_s) and remove; False if already gone."""
        action = f"removing pod {pod_name}"
        existing = self._pod_labels(pod_name)
        if existing is None:
            return False
        labels, _ = existing
        if LABEL_WORKLOAD not in labels:
            raise RuntimeFailure(
                f"{action}: it was not started by beemesh, so beemesh leaves it alone"
            )
        t = max(0, math.ceil(grace_s))
        self._request("post", f"/pods/{pod_name}/stop", action, ok404=True,
                      params={"t": t}, timeout=self.timeout_s + t)
        self._request("delete", f"/pods/{pod_name}", action, ok404=True,
                      params={"force": "true"}, timeout=self.timeout_s + t)
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _pod_labels(self, name: str) -> tuple[dict[str, str], str] | None:
        """(labels, state) of the pod called name, beemesh or not; None if there is none."""
        data = self._request("get", f"/pods/{name}/json", f"inspecting pod {name}", ok404=True)
        if data is None:
            return None
        state = str(data.get("State") or "").lower()
        return dict(data.get("Labels") or {}), _STATES.get(state, state or "unknown")

    def _check_host_ports(self, spec: WorkloadSpec, action: str) -> None:
        """Name the beemesh pod holding a wanted hostPort; Podman's own error for that is not
        always about the port ("container state improper")."""
        wanted = {(port, proto.lower()) for port, proto in spec.host_ports()}
        if not wanted:
            return
        ctrs = self._request("get", "/containers/json", action, params={
            "all": "false", "filters": json.dumps({"label": [LABEL_WORKLOAD]})}) or []
        for c in ctrs:
            for p in c.get("Ports") or []:
                key = (int(p.get("host_port") or 0), str(p.get("protocol") or "tcp").lower())
                if key in wanted:
                    raise RuntimeFailure(
                        f"{action}: hostPort {key[0]}/{key[1].upper()} is already used on this "
                        f"machine by pod {c.get('PodName')} "
                        f"({(c.get('Labels') or {}).get(LABEL_WORKLOAD)})"
                    )

    def _ensure_image(self, image: str, action: str) -> None:
        """Make sure image is in local storage (pulling if allowed), else say how to load it."""
        with self._errors(action):
            resp = self._client.api.get(f"/images/{quote(image, safe='')}/exists",
                                        timeout=self.timeout_s)
        if resp.status_code == 204:
            return
        fix = "load it with `podman load` or `podman import` (or list it in an offline bundle)"
        if not self.pull_missing or _is_local_only(image):
            raise RuntimeFailure(
                f"{action}: image {image} is not in this machine's Podman storage; {fix}"
            )
        try:
            self._request("post", "/images/pull", action,
                          params={"reference": image, "quiet": "true"},
                          timeout=self.timeout_s + 270)
        except RuntimeFailure as exc:
            reason = str(exc).removeprefix(f"{action}: ")
            raise RuntimeFailure(
                f"{action}: image {image} is not in this machine's Podman storage and pulling "
                f"it failed ({reason}); {fix}, or make its registry reachable"
            ) from exc

    def _check_limits(self, name: str, spec: WorkloadSpec, action: str) -> None:
        """Fail loudly if Podman dropped a limit (rootless Podman on cgroup v1 does that)."""
        wanted = {c.name: c for c in spec.containers}
        for cname, c in wanted.items():
            data = self._request("get", f"/containers/{name}-{cname}/json", action)
            host = (data or {}).get("HostConfig") or {}
            if c.memory_limit_bytes is not None and not host.get("Memory"):
                self._limit_failure(action, "memory", cname)
            if c.cpu_limit_milli is not None and not (host.get("NanoCpus")
                                                       or host.get("CpuQuota")):
                self._limit_failure(action, "cpu", cname)

    @staticmethod
    def _limit_failure(action: str, what: str, cname: str) -> NoReturn:
        raise RuntimeFailure(
            f"{action}: Podman did not apply the {what} limit of container {cname}; "
            "run the agent with rootful Podman or on a cgroup v2 machine, where limits work"
        )

    def _cleanup_failed(self, name: str, task_id: str) -> None:
        """Remove what a failed kube play left behind, but only if it is ours."""
        try:
            existing = self._pod_labels(name)
            if existing is not None and existing[0].get(LABEL_TASK) == task_id:
                self.remove(name, grace_s=0)
        except RuntimeFailure:
            pass  # the original error is the one to report

    def _collect(self, only: str | None) -> list[PodInfo]:
        pod_filters: dict[str, list[str]] = {"label": [LABEL_WORKLOAD]}
        ctr_filters: dict[str, list[str]] = {"label": [LABEL_WORKLOAD]}
        if only is not None:
            pod_filters["name"] = [f"^{re.escape(only)}$"]
            ctr_filters["pod"] = [only]
        action = "listing pods" if only is None else f"inspecting pod {only}"
        pods = self._request("get", "/pods/json", action,
                             params={"filters": json.dumps(pod_filters)}) or []
        if only is not None:
            pods = [p for p in pods if p.get("Name") == only]
            if not pods:
                return []
        ctrs = self._request("get", "/containers/json", action,
                             params={"all": "true", "filters": json.dumps(ctr_filters)}) or []
        by_pod: dict[str, list[dict[str, Any]]] = {}
        for c in ctrs:
            if not c.get("IsInfra"):
                by_pod.setdefault(str(c.get("PodName") or ""), []).append(c)
        return sorted(
            (_pod_info(p, by_pod.get(str(p.get("Name")), [])) for p in pods),
            key=lambda i: (i.workload_id, i.ordinal, i.name),
        )

    def _frames(self, cid: str, follow: bool, action: str,
                opened: list[socket.socket] | None = None) -> Iterator[str]:
        """Decoded lines of one container's multiplexed log stream."""
        client = self._client if not follow else podman.PodmanClient(
            base_url=self.socket_url, version=API_VERSION)  # no read timeout while following
        with self._errors(action):
            resp = client.api.get(
                f"/containers/{cid}/logs",
                params={"stdout": "true", "stderr": "true",
                        "follow": "true" if follow else "false"},
                stream=True, timeout=None if follow else self.timeout_s,
            )
            resp.raise_for_status()
        if opened is not None:
            sock = _response_socket(resp)
            if sock is not None:
                opened.append(sock)
        buf = b""
        try:
            with self._errors(action):
                raw = resp.raw
                while True:
                    header = raw.read(8)
                    if len(header) < 8:
                        break
                    size = int.from_bytes(header[4:8], "big")
                    payload = raw.read(size) if size else b""
                    buf += payload
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace")
            if buf:
                yield buf.decode("utf-8", "replace")
        finally:
            resp.close()
            if client is not self._client:
                client.close()

    def _logs_sequential(self, targets: list[tuple[str, str]], prefix: bool, follow: bool,
                         action: str) -> Iterator[str]:
        for short, cid in targets:
            for line in self._frames(cid, follow, action):
                yield f"{short}: {line}" if prefix else line

    def _logs_merged(self, targets: list[tuple[str, str]], action: str) -> Iterator[str]:
        """Follow several containers at once: one reader thread each, lines as they come."""
        out: queue.Queue[tuple[str, str | BaseException | None]] = queue.Queue()
        opened: list[socket.socket] = []

        def pump(short: str, cid: str) -> None:
            try:
                for line in self._frames(cid, True, action, opened):
                    out.put((short, line))
            except BaseException as exc:  # handed to the consumer, re-raised there
                out.put((short, exc))
            finally:
                out.put((short, None))

        for short, cid in targets:
            threading.Thread(target=pump, args=(short, cid), daemon=True,
                             name=f"beemesh-logs-{short}").start()
        remaining = len(targets)
        try:
            while remaining:
                short, item = out.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield f"{short}: {item}"
        finally:
            # A reader blocked in recv holds the response's lock, so closing the response from
            # here would wait for it; shutting the socket down wakes it with EOF instead.
            for sock in list(opened):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _response_socket(resp: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (urllib3 2.x keeps its connection on it)."""
    conn = getattr(resp.raw, "connection", None) or getattr(resp.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _short_name(pod_name: str, container_name: str) -> str:
    """kube play names containers "<pod>-<container>"; show the manifest's name."""
    prefix = f"{pod_name}-"
    return container_name[len(prefix):] if container_name.startswith(prefix) else container_name


def _pod_info(pod: dict[str, Any], ctrs: list[dict[str, Any]]) -> PodInfo:
    labels = pod.get("Labels") or {}
    name = str(pod.get("Name") or "")
    ordinal = _int_label(labels, LABEL_REPLICA, -1)
    status = str(pod.get("Status") or "").lower()
    ports: set[int] = set()
    for c in ctrs:
        for p in c.get("Ports") or []:
            host_port = p.get("host_port") or p.get("hostPort") or 0
            if host_port:
                span = int(p.get("range") or 1)
                ports.update(range(int(host_port), int(host_port) + max(span, 1)))
    return PodInfo(
        name=name,
        workload_id=str(labels.get(LABEL_WORKLOAD, "")),
        ordinal=ordinal,
        task_id=str(labels.get(LABEL_TASK, "")),
        state=_STATES.get(status, status or "unknown"),
        created=_parse_time(pod.get("Created")),
        containers=tuple(sorted(
            _short_name(name, (c.get("Names") or [""])[0]) for c in ctrs
        )),
        host_ports=tuple(sorted(ports)),
        cpu_milli=max(0, _int_label(labels, LABEL_CPU, 0)),
        memory_bytes=max(0, _int_label(labels, LABEL_MEMORY, 0)),
    )


def _int_label(labels: dict[str, Any], key: str, default: int) -> int:
    try:
        return int(labels.get(key, ""))
    except ValueError:
        return default
