"""`beemesh logs POD` and `beemesh exec POD -- CMD`, on whichever machine runs the pod.

The operator signs a LogsRequest or an ExecRequest; the local agent serves it from its own
Podman or forwards the same signed bytes over a libp2p stream (`/beemesh/pod/1.0.0`) to the
machine that runs the pod, which checks the operator signature itself before touching the pod
(each agent that accepts the request puts it in its audit trail, an exec with its command).
Answers travel back as JSON lines: {"line": ...} for logs; {"output": ...} then {"exit": N}
for an exec; or a final {"error": ...}.

An exec is not interactive (no stdin, no terminal): the command's output comes back when it
ends, at most EXEC_OUTPUT_LIMIT bytes, and it gets at most the request's timeout_s.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from beemesh import wire
from beemesh.errors import UserError
from beemesh.machine.audit_log import Audit
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.node.local import LocalNode
from beemesh.workloads.messages import EXEC_REQUEST, LOGS_REQUEST

log = logging.getLogger("beemesh.pod_access")

POD_PROTOCOL = "/beemesh/pod/1.0.0"


class PodAccess:
    """Serves logs of and execs in the pods here, and relays requests for pods elsewhere."""

    def __init__(self, *, node: LocalNode, mesh: MeshHost, verifier: wire.Verifier,
                 machines_running: Callable[[str], list[str]],
                 audit: Audit) -> None:
        """`machines_running(pod)`: the other machines whose records list that pod; `audit`
        keeps each accepted request."""
        self.node = node
        self.mesh = mesh
        self.verifier = verifier
        self.machines_running = machines_running
        self.audit = audit
        mesh.handle(POD_PROTOCOL, self._serve_stream)

    async def _serve_stream(self, stream: Any) -> None:
        """Another agent forwards an operator's signed request for a pod we run."""
        try:
            blob = await read_request(stream)
            async for chunk in self.answer(blob, forwarded=True):
                await stream.write(chunk)
        except Exception as e:  # the requesting side went away, or garbage on the stream
            log.debug("pod stream ended: %s", e)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    async def answer(self, blob: bytes, forwarded: bool) -> AsyncIterator[bytes]:
        """JSON lines answering a signed request, from here or from the machine that runs
        the pod."""
        try:
            env = self.verifier.check(blob, now := time.time())
            pod = env.body["pod"]
            self.audit(env, now, audit_target(env.kind, env.body))
            if pod in self.node.pods:
                async for chunk in self._here(env.kind, env.body):
                    yield chunk
                return
            hosts = [] if forwarded else self.machines_running(pod)
            if not hosts:
                yield encode_error(f"pod {pod} is not on this machine" if forwarded else
                                   f"no pod named {pod} runs in the mesh; see `beemesh get pods`")
                return
            stream = await self.mesh.open_stream(hosts[0], POD_PROTOCOL)
            await send_request(stream, blob)
            async for chunk in relay_remote(stream):
                yield chunk
        except wire.Rejected as e:
            yield encode_error(f"request rejected ({e.reason}): {e.detail}")
        except UserError as e:
            yield encode_error(str(e))

    async def _here(self, kind: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        pod = body["pod"]
        if kind == LOGS_REQUEST.name:
            async for line in lines_from_thread(lambda: self.node.logs(pod, body["follow"])):
                yield encode_line(line)
            return
        info = self.node.pods[pod]
        container = body["container"] or (info.containers[0] if info.containers else "")
        if container not in info.containers:
            yield encode_error(f"pod {pod} has no container {container!r}; its containers: "
                               f"{', '.join(info.containers) or 'none'}")
            return
        code, output = await trio.to_thread.run_sync(
            lambda: self.node.exec_in(pod, container, body["argv"], float(body["timeout_s"])),
            abandon_on_cancel=True)
        yield json.dumps({"output": output}).encode() + b"\n"
        yield json.dumps({"exit": code}).encode() + b"\n"


def audit_target(kind: str, body: dict[str, Any]) -> str:
    """What the audit trail names: an exec with its container and command."""
    if kind == EXEC_REQUEST.name:
        return (f"pod={body['pod']} container={body['container'] or '(first)'} "
                f"command={shlex.join(body['argv'])}")
    return f"pod={body['pod']}"


async def lines_from_thread(open_iter: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """Drive a blocking line iterator (podman-py logs) from a worker thread."""
    it = await trio.to_thread.run_sync(open_iter)
    done = object()
    while True:
        line = await trio.to_thread.run_sync(next, it, done, abandon_on_cancel=True)
        if line is done:
            return
        yield str(line)


def encode_line(line: str) -> bytes:
    return json.dumps({"line": line}).encode() + b"\n"


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode() + b"\n"


async def relay_remote(stream: INetStream) -> AsyncIterator[bytes]:
    """JSON lines from a remote agent, passed on unchanged (one per chunk)."""
    buf = b""
    while True:
        try:
            chunk = await stream.read(65536)
        except StreamError:  # py-libp2p signals the end of a stream by raising StreamEOF
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line + b"\n"
    if buf:
        yield buf + b"\n"
