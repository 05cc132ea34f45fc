"""Podman runtime: one replica = one pod, played from a generated Pod manifest over REST.

Over 400 lines on purpose: this is one adapter class over one REST API, and its methods share
the error translation (``_errors``, ``_translate``: every Podman, HTTP or socket error becomes
one RuntimeFailure line) and the ownership checks on pods. Around it: ``podman_pod`` writes
the Pod manifest and reads PodInfo back, ``podman_streams`` reads logs and exec output.

Why ``kube play`` (POST /libpod/play/kube) rather than pods.create + containers.create:
one call creates the pod, its infra container (which publishes the hostPorts) and every
container, with Kubernetes semantics for command/args/env/ports/resources that Podman already
implements, and it copies the pod's labels onto every application container. Checked on
Podman 4.3: memory and cpu limits land in HostConfig (Memory, NanoCpus, CpuQuota/CpuPeriod)
and in the container's cgroup; label values with "/" are accepted. podman-py has no kube play
helper, so it is called through podman-py's API client; everything else also goes through
that client as plain REST calls, which keeps the JSON we read identical across podman-py
versions.

Image policy: the container's imagePullPolicy (Never: never pulled; IfNotPresent: pulled when
missing; Always: pulled first, the stored image used if the registry cannot be reached), unless
``pull_missing=False`` or the name is ``localhost/...``, which no registry serves; the pod
manifest Podman plays says imagePullPolicy: Never, so
Podman itself never reaches for a registry inside kube play and a missing image gives one
clear error instead of a slow registry timeout.

Name conflicts: a pod is named ``spec.pod_name(ordinal)``. If one of that name exists:
  * same workload, same task, running      -> returned as is (deploy is idempotent);
  * same workload, other task or not running -> removed and replaced (the newer task wins:
    a task for an ordinal is only published when that replica is considered lost or its
    manifest changed);
  * another workload, or not a beemesh pod -> RuntimeFailure, nothing is touched.

What a container is told (environment, discovery mount) is in ``podman_pod``.

Restarts: Podman 4.3's pod restart of a one-container kube-played pod leaves it stopped most
of the time (measured: 12 of 15), and stop + start now and then (2 of 30 under load): the
`podman container cleanup` that conmon runs a moment after a container stops applies the
pod's exit policy ("stop", forced by kube play) after the new start, and nothing starts the
pod again. A start right after that stop races the same way, so retrying at once failed three
times in a row once. Hence ``restart`` is stop, SETTLE_S of waiting, start; and a start only
counts once every application container has stayed running for STABLE_S, else it waits
SETTLE_S and starts again, START_ATTEMPTS times in all (measured under load: no retries in
50 restarts with the wait, 3 retries in 50 without it).

Stops: Podman 4.3 reads a pod stop timeout of 0 as its default of 10 s, so a zero grace
period is a pod kill (SIGKILL) instead.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import podman.errors  # also binds `podman` (PodmanClient); a bare `import podman` is
import requests  # sorted as first-party by ruff because of the tests/podman directory
import urllib3

from beemesh.manifest.checks import DEFAULT_GRACE_S
from beemesh.runtime import (
    EXEC_OUTPUT_LIMIT,
    LABEL_GRACE,
    LABEL_PRE_STOP,
    LABEL_REPLICA,
    LABEL_TASK,
    LABEL_WORKLOAD,
    ROOT_PODMAN_SOCKET,
    ExecTimeout,
    PodConfig,
    PodInfo,
    PodNetwork,
    RuntimeFailure,
    RuntimeUnavailable,
    image_name,
    local_only,
)
from beemesh.runtime.podman_pod import (
    kernel_capabilities,
    pod_info,
    pod_manifest,
    pod_state,
    short_name,
)
from beemesh.runtime.podman_streams import lines, merged, read_output, response_socket, sequential
from beemesh.runtime.podman_volumes import PodmanVolumes

if TYPE_CHECKING:
    from beemesh.manifest import WorkloadSpec

__all__ = ["PodmanRuntime", "default_socket_url"]
log = logging.getLogger("beemesh.runtime")

# Any Podman >= 4 serves this API prefix; podman-py's default (its own version) is newer than
# the Podman in Debian 12.
API_VERSION = "4.0.0"

STABLE_S = 2.0  # a (re)started pod counts as started once its containers ran this long
START_ATTEMPTS = 3
POST_START_TIMEOUT_S = 60.0  # a postStart hook still running then fails the deploy
SETTLE_S = 1.0  # after a stop, conmon's cleanups have (almost always) run within this time
_JSON = {"Content-Type": "application/json"}


def default_socket_url() -> str:
    """Where Podman's socket is when started by systemd (podman.socket), rootful or rootless."""
    if os.geteuid() == 0:
        return ROOT_PODMAN_SOCKET
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
        self.capabilities = kernel_capabilities()
        self.volumes = PodmanVolumes(self._request)
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
        elif isinstance(exc, requests.HTTPError) and exc.response is not None:
            reason = _api_message(exc.response)
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

    def deploy(self, spec: WorkloadSpec, ordinal: int, task_id: str,
               discovery_dir: Path | None = None, network: PodNetwork | None = None,
               config: PodConfig | None = None, replacing: bool = False) -> PodInfo:
        """Run one replica; see the module doc for what happens when the name is taken.

        discovery_dir must exist on this machine: it is mounted read-only, never created.
        """
        name = spec.pod_name(ordinal)
        action = f"deploying {name} ({spec.workload_id})"
        if discovery_dir is not None:
            discovery_dir = Path(discovery_dir).resolve()
            if not discovery_dir.is_dir():
                raise RuntimeFailure(
                    f"{action}: discovery directory {discovery_dir} does not exist; "
                    "create it before deploying (the agent's work plane owns it)"
                )
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
            self._ensure_image(c.image, c.pull_policy, action)
        created = self.volumes.prepare(spec, ordinal, action)

        doc = pod_manifest(spec, ordinal, task_id, discovery_dir, self.capabilities, network,
                           config, afresh=replacing and created)
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
            self._post_start(name, spec, action)
        except RuntimeFailure:
            self._cleanup_failed(name, task_id)
            raise
        info = self.status(name)
        if info is None:
            raise RuntimeFailure(f"{action}: Podman reported success but the pod is not there")
        return info

    def _post_start(self, name: str, spec: WorkloadSpec, action: str) -> None:
        """Each container's postStart command, once it runs; one that fails fails the
        deploy (Kubernetes kills that container)."""
        for c in spec.containers:
            if not c.post_start:
                continue
            try:
                code, out = self.exec_in(name, c.name, c.post_start, POST_START_TIMEOUT_S)
            except ExecTimeout:
                code, out = -1, f"still running after {POST_START_TIMEOUT_S:.0f} s"
            if code != 0:
                raise RuntimeFailure(f"{action}: postStart hook of container {c.name} failed "
                                     f"(exit {code}): {out.strip()[-200:]}; fix the hook's "
                                     "command")

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
            (short_name(pod_name, (c.get("Names") or [c["Id"]])[0]), c["Id"]) for c in ctrs
        )
        prefix = len(targets) > 1
        if not follow or len(targets) == 1:
            return sequential(targets, lambda cid: self._log_lines(cid, follow, action), prefix)
        return merged(targets, lambda cid, opened: self._log_lines(cid, True, action, opened))

    def remove(self, pod_name: str, grace_s: float | None = None) -> bool:
        """Run the preStop hooks, stop (SIGTERM, then SIGKILL when the grace is over) and
        remove; grace_s None: the pod's own. False if already gone."""
        action = f"removing pod {pod_name}"
        existing = self._pod_labels(pod_name)
        if existing is None:
            return False
        labels, _ = existing
        if LABEL_WORKLOAD not in labels:
            raise RuntimeFailure(
                f"{action}: it was not started by beemesh, so beemesh leaves it alone"
            )
        if grace_s is None:
            grace = labels.get(LABEL_GRACE, "")
            grace_s = int(grace) if grace.isdigit() and len(grace) < 6 else DEFAULT_GRACE_S
        end = time.monotonic() + grace_s
        self._pre_stop(pod_name, labels.get(LABEL_PRE_STOP, ""), grace_s, action)
        t = self._stop(pod_name, max(0.0, end - time.monotonic()), action)
        self._request("delete", f"/pods/{pod_name}", action, ok404=True,
                      params={"force": "true"}, timeout=self.timeout_s + t)
        self.volumes.release(labels[LABEL_WORKLOAD], labels.get(LABEL_REPLICA, ""), action)
        return True

    def _pre_stop(self, pod_name: str, hooks: str, grace_s: float, action: str) -> None:
        """Each container's preStop command, all within grace_s (a hook that fails or runs
        out of time is logged and the pod stops anyway, as in Kubernetes)."""
        try:
            commands = json.loads(hooks) if hooks and grace_s > 0 else {}
        except ValueError:
            commands = {}
        end = time.monotonic() + grace_s
        for container, argv in (commands.items() if isinstance(commands, dict) else ()):
            left = end - time.monotonic()
            if left <= 0 or not isinstance(argv, list) or not argv or not all(
                    isinstance(a, str) for a in argv):
                continue
            try:
                code, out = self.exec_in(pod_name, container, argv, timeout_s=left)
            except RuntimeFailure as e:
                code, out = -1, str(e)
            if code != 0:
                log.warning("%s: preStop hook of %s failed (exit %d): %s", action, container,
                            code, out.strip()[-200:])

    def pod_address(self, pod_name: str) -> str | None:
        """The IP of the pod's network namespace, where probes connect; None if the pod is
        missing, its infra container is not running or it has no address (Podman 4.3 keeps
        the address on the infra container only)."""
        data = self._infra(pod_name, f"finding the address of pod {pod_name}")
        settings = data.get("NetworkSettings") or {}
        networks = settings.get("Networks") or {}
        for net in sorted(networks):
            if ip := (networks[net] or {}).get("IPAddress"):
                return str(ip)
        return settings.get("IPAddress") or None

    def pod_pid(self, pod_name: str) -> int | None:
        pid = (self._infra(pod_name, f"finding the network of pod {pod_name}").get("State")
               or {}).get("Pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def _infra(self, pod_name: str, action: str) -> dict[str, Any]:
        """`podman inspect` of the pod's running infra container ({} if none)."""
        pod = self._request("get", f"/pods/{pod_name}/json", action, ok404=True)
        infra = (pod or {}).get("InfraContainerID")
        if not infra:
            return {}
        data = self._request("get", f"/containers/{infra}/json", action, ok404=True) or {}
        return data if (data.get("State") or {}).get("Running") else {}

    def exec_in(self, pod_name: str, container: str, argv: Sequence[str],
                timeout_s: float) -> tuple[int, str]:
        """Run argv in the pod's container (the manifest's name) and return (exit code,
        stdout and stderr as they came, at most EXEC_OUTPUT_LIMIT bytes, decoded).

        After timeout_s this raises ExecTimeout and stops waiting, but the command keeps
        running: Podman 4.3 cannot kill an exec session. Podman keeps each session (and its
        conmon) for the engine's exit_command_delay (300 s by default) after it ends.
        """
        if not argv:
            raise RuntimeFailure(f"running a command in {pod_name}/{container}: the command "
                                 "is empty; give the program to run and its arguments")
        action = f"running {argv[0]!r} in container {container} of pod {pod_name}"
        deadline = time.monotonic() + timeout_s
        api = self._client.api
        with self._errors(action):
            resp = api.post(f"/containers/{quote(f'{pod_name}-{container}', safe='')}/exec",
                            data=json.dumps({"Cmd": list(argv), "AttachStdout": True,
                                             "AttachStderr": True}),
                            headers=_JSON, timeout=self.timeout_s)
        if resp.status_code == 404:
            raise RuntimeFailure(
                f"{action}: there is no such container on this machine; use a container "
                f"name of the workload's manifest (`beemesh get pods` lists them)"
            )
        if resp.status_code != 201:
            raise RuntimeFailure(f"{action}: {_api_message(resp)}; is the pod running?")
        exec_id = resp.json()["Id"]
        with self._errors(action):
            resp = api.post(f"/exec/{exec_id}/start",
                            data=json.dumps({"Detach": False, "Tty": False}), headers=_JSON,
                            stream=True, timeout=(self.timeout_s, timeout_s))
        try:
            if resp.status_code != 200:
                raise RuntimeFailure(f"{action}: {_api_message(resp)}; is the pod running?")
            output = self._read_exec(resp, deadline, action, timeout_s)
        finally:
            resp.close()
        while True:
            state = self._request("get", f"/exec/{exec_id}/json", action, ok404=True)
            if state is None:
                raise RuntimeFailure(
                    f"{action}: Podman dropped the exec session before its exit code was "
                    "read; set exit_command_delay to 30 or more in containers.conf"
                )
            if not state.get("Running"):
                return int(state.get("ExitCode") or 0), output
            if time.monotonic() > deadline:
                raise self._exec_timeout(action, timeout_s)
            time.sleep(0.05)

    def restart(self, pod_name: str, grace_s: float = 10) -> PodInfo:
        """Stop (SIGTERM, SIGKILL after grace_s) and start again; returns once the pod stays
        running (see the module doc for why this is not Podman's pod restart)."""
        action = f"restarting pod {pod_name}"
        self._own_pod(pod_name, action)
        self._stop(pod_name, grace_s, action)
        return self._start_stable(pod_name, action, settle=True)

    def start(self, pod_name: str) -> PodInfo:
        """Start a stopped, exited or degraded pod; returns once it stays running."""
        action = f"starting pod {pod_name}"
        self._own_pod(pod_name, action)
        return self._start_stable(pod_name, action, settle=False)

    # -- helpers ------------------------------------------------------------------------------

    def _own_pod(self, name: str, action: str) -> None:
        """Refuse to touch a pod that is missing or was not started by beemesh."""
        existing = self._pod_labels(name)
        if existing is None:
            raise RuntimeFailure(f"{action}: no beemesh pod named {name} on this machine")
        if LABEL_WORKLOAD not in existing[0]:
            raise RuntimeFailure(
                f"{action}: it was not started by beemesh, so beemesh leaves it alone"
            )

    def _stop(self, name: str, grace_s: float, action: str) -> int:
        """Stop the pod's containers (SIGTERM, SIGKILL after grace_s; a kill if grace_s is 0,
        see the module doc); the whole seconds of grace used."""
        t = max(0, math.ceil(grace_s))
        if t:
            self._request("post", f"/pods/{name}/stop", action, ok404=True, params={"t": t},
                          timeout=self.timeout_s + t)
            return t
        with self._errors(action):
            resp = self._client.api.post(f"/pods/{name}/kill", timeout=self.timeout_s)
        if resp.status_code not in (200, 404, 409):  # 409: nothing was running
            raise RuntimeFailure(f"{action}: {_api_message(resp)}")
        return t

    def _start_stable(self, name: str, action: str, *, settle: bool) -> PodInfo:
        """Start the pod until every application container stays running for STABLE_S;
        wait SETTLE_S first if it was just stopped (by us, or by Podman after a start)."""
        problem = ""
        for attempt in range(START_ATTEMPTS):
            if settle or attempt:
                time.sleep(SETTLE_S)
            try:
                self._request("post", f"/pods/{name}/start", action)
            except RuntimeUnavailable:
                raise
            except RuntimeFailure as exc:
                problem = str(exc).removeprefix(f"{action}: ")
                continue
            stopped = self._stopped_containers(name, action)
            if not stopped:
                info = self.status(name)
                if info is None:
                    raise RuntimeFailure(f"{action}: the pod was removed while starting")
                return info
            problem = f"container {', '.join(stopped)} stopped again"
        raise RuntimeFailure(
            f"{action}: it did not stay running after {START_ATTEMPTS} starts ({problem}); "
            f"see why with `beemesh logs {name}`"
        )

    def _stopped_containers(self, name: str, action: str) -> list[str]:
        """Application containers of the pod seen not running within STABLE_S (watched, as
        Podman may stop them again a moment after a start)."""
        deadline = time.monotonic() + STABLE_S
        while True:
            ctrs = self._request("get", "/containers/json", action, params={
                "all": "true", "filters": json.dumps({"pod": [name]})}) or []
            stopped = sorted(
                short_name(name, (c.get("Names") or [""])[0]) for c in ctrs
                if not c.get("IsInfra") and str(c.get("State") or "").lower() != "running"
            )
            if stopped or time.monotonic() >= deadline:
                return stopped
            time.sleep(0.2)

    def _read_exec(self, resp: requests.Response, deadline: float, action: str,
                   timeout_s: float) -> str:
        """The multiplexed output of an attached exec, read until EOF or the deadline."""
        try:
            return read_output(resp, deadline, EXEC_OUTPUT_LIMIT)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise self._exec_timeout(action, timeout_s) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._translate(action, exc) from exc

    @staticmethod
    def _exec_timeout(action: str, timeout_s: float) -> ExecTimeout:
        return ExecTimeout(
            f"{action}: no result within {timeout_s:g} s (the command may still be running "
            "in the container); make it faster or allow more time"
        )

    def _pod_labels(self, name: str) -> tuple[dict[str, str], str] | None:
        """(labels, state) of the pod called name, beemesh or not; None if there is none."""
        data = self._request("get", f"/pods/{name}/json", f"inspecting pod {name}", ok404=True)
        if data is None:
            return None
        return dict(data.get("Labels") or {}), pod_state(data.get("State"))

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

    def images(self) -> frozenset[str]:
        data = self._request("get", "/images/json", "listing images") or []
        return frozenset(image_name(n) for i in data
                         for n in (i.get("Names") or []) + (i.get("RepoTags") or [])
                         if isinstance(n, str) and n != "<none>:<none>")

    def claims(self) -> frozenset[tuple[str, int]]:
        return self.volumes.claims("listing volumes")

    def remove_claims(self, workload_id: str, ordinal: int | None = None) -> int:
        return self.volumes.remove_claims(workload_id, ordinal, "removing claim volumes")

    def disk(self) -> tuple[int, int] | None:
        """(free, total) bytes of the file system Podman keeps volumes on (`/info`)."""
        info = self._request("get", "/info", "asking Podman where it keeps volumes") or {}
        path = (info.get("store") or {}).get("volumePath") or \
            (info.get("store") or {}).get("graphRoot")
        if not isinstance(path, str):
            return None
        try:
            st = os.statvfs(path)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def _ensure_image(self, image: str, policy: str, action: str) -> None:
        """Make sure image is in local storage (pulling as `policy` and the machine allow),
        else say how to load it. Always: pulled first when it can be, the stored one used if
        the registry cannot be reached (an edge site offline keeps running what it has)."""
        pullable = self.pull_missing and not local_only(image) and policy != "Never"
        if policy == "Always" and pullable:
            try:
                self._request("post", "/images/pull", action,
                              params={"reference": image, "quiet": "true"},
                              timeout=self.timeout_s + 270)
                return
            except RuntimeFailure:
                pass  # the stored image, if there is one
        with self._errors(action):
            resp = self._client.api.get(f"/images/{quote(image, safe='')}/exists",
                                        timeout=self.timeout_s)
        if resp.status_code == 204:
            return
        fix = "load it with `podman load` or `podman import` (or list it in an offline bundle)"
        if not pullable:
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
            (pod_info(p, by_pod.get(str(p.get("Name")), [])) for p in pods),
            key=lambda i: (i.workload_id, i.ordinal, i.name),
        )

    def _log_lines(self, cid: str, follow: bool, action: str,
                   opened: list[socket.socket] | None = None) -> Iterator[str]:
        """Decoded lines of one container's log stream; its socket is added to opened."""
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
            sock = response_socket(resp)
            if sock is not None:
                opened.append(sock)
        try:
            with self._errors(action):
                yield from lines(resp.raw)
        finally:
            resp.close()
            if client is not self._client:
                client.close()


def _api_message(resp: requests.Response) -> str:
    """Podman's one-line reason from an error response ({"message": ...}), else the body."""
    try:
        message = resp.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return _one_line(message or resp.text or f"HTTP {resp.status_code}")[:300]
