"""Inside a pod's network namespace (root only): the listening sockets of its Services, and the
NAT rules that lead each Service port to them.

A listener cannot sit at the Service's own port: an app in the pod that binds 0.0.0.0 to that
port (nginx on :80 behind a Service on :80) would find it taken, or take it first. So each
listener binds the Service's address at a port of its own above Linux's default ephemeral range
(`LOCAL_PORTS`, which no app is handed by the kernel), and one DNAT rule per listener in the
pod's `nat OUTPUT` (chain `BEEMESH-SVC`) turns `SERVICE_ADDRESS:PORT` into that port. The app
sees nothing of it; containers hold no NET_ADMIN, so they cannot change the rules.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import threading
from collections.abc import Iterable

from beemesh.workplane.names import Listener

CLONE_NEWNET = 0x40000000
BACKLOG = 128
LOCAL_PORTS = range(61000, 65536)
MAX_TRIES = 32  # ports tried for one listener (an app may hold some of them)
CHAIN = "BEEMESH-SVC"
Opened = tuple[Listener, socket.socket, int]  # listener, its socket, its local port


def listen(pid: int, wanted: list[Listener], taken: set[int]) -> tuple[list[Opened], list[str]]:
    """Listening sockets for `wanted` inside the network namespace of `pid`, at local ports
    not in `taken`; and what failed. Made in a thread of its own: setns changes only the
    calling thread, which then ends."""
    made: list[Opened] = []
    problems: list[str] = []
    ports = (p for p in LOCAL_PORTS if p not in taken)

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                problems.append(f"setns: {os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(fd)
        for li in wanted:
            for _ in range(MAX_TRIES):
                port = next(ports, None)
                if port is None:
                    problems.append("no local port left")
                    return
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((li.address, port))
                    s.listen(BACKLOG)
                    made.append((li, s, port))
                    break
                except OSError as e:
                    s.close()
                    if e.errno != errno.EADDRINUSE:
                        problems.append(f"{li.address}:{port}: {e.strerror}")
                        break

    t = threading.Thread(target=work, name="pod-netns", daemon=True)
    t.start()
    t.join()
    return made, problems


def rules(opened: Iterable[tuple[Listener, int]]) -> str:
    """The chain's whole content, for iptables-restore --noflush."""
    lines = ["*nat", f":{CHAIN} - [0:0]", f"-F {CHAIN}"]
    lines += [f"-A {CHAIN} -d {li.address}/32 -p tcp -m tcp --dport {li.port} -j DNAT "
              f"--to-destination {li.address}:{port}"
              for li, port in sorted(opened, key=lambda o: (o[0].address, o[0].port))]
    return "\n".join([*lines, "COMMIT", ""])


def apply_rules(pid: int, text: str, first: bool) -> str | None:
    """Replace the chain's rules in the namespace of `pid` (and, the first time, hook the
    chain into nat OUTPUT once); the error, or None."""
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net", "--"]
    try:
        done = subprocess.run([*enter, "iptables-restore", "-w", "--noflush"], input=text,
                              capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            return f"iptables-restore: {done.stderr.strip()[:200]}"
        if first:
            hook = ["iptables", "-w", "-t", "nat"]
            if subprocess.run([*enter, *hook, "-C", "OUTPUT", "-j", CHAIN],
                              capture_output=True, timeout=20).returncode != 0:
                done = subprocess.run([*enter, *hook, "-I", "OUTPUT", "-j", CHAIN],
                                      capture_output=True, text=True, timeout=20)
                if done.returncode != 0:
                    return f"iptables: {done.stderr.strip()[:200]}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"{e}; install iptables and util-linux (nsenter)"
    return None
