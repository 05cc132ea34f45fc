"""Podman's multiplexed output streams: container logs and the output of an attached exec.

Without a TTY, Podman (like Docker) sends stdout and stderr as frames: an 8-byte header (the
stream, three zero bytes, the payload size as a big-endian 32-bit number), then the payload.
Nothing here talks to Podman: ``PodmanRuntime`` opens the streams and turns errors into
RuntimeFailures; this module reads frames, splits lines and follows several containers at once.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import requests

__all__ = ["lines", "merged", "read_output", "response_socket", "sequential"]


class Body(Protocol):
    """What is read of a streamed response: its raw body (urllib3's HTTPResponse)."""

    def read(self, amt: int) -> bytes: ...


def response_socket(resp: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (urllib3 2.x keeps its connection on it)."""
    conn = getattr(resp.raw, "connection", None) or getattr(resp.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _payloads(raw: Body) -> Iterator[bytes]:
    """The payload of each frame read from raw, until EOF."""
    while True:
        header = raw.read(8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:8], "big")
        yield raw.read(size) if size else b""


def lines(raw: Body) -> Iterator[str]:
    """Decoded lines of a multiplexed stream, stdout and stderr as they came; a last line
    without a newline too."""
    buf = b""
    for payload in _payloads(raw):
        buf += payload
        *complete, buf = buf.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if buf:
        yield buf.decode("utf-8", "replace")


def read_output(resp: requests.Response, deadline: float, limit: int) -> str:
    """An attached exec's output read until EOF, at most limit bytes kept, decoded; raises
    TimeoutError once time.monotonic() reaches deadline."""
    out = bytearray()
    sock = response_socket(resp)
    payloads = _payloads(resp.raw)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if sock is not None:
            sock.settimeout(remaining)
        payload = next(payloads, None)
        if payload is None:
            return out.decode("utf-8", "replace")
        out += payload[:max(0, limit - len(out))]


def sequential(targets: list[tuple[str, str]], read: Callable[[str], Iterator[str]],
               prefix: bool) -> Iterator[str]:
    """The lines of each (short name, container id) in turn, as read(container id) yields
    them; prefixed with "<short name>: " if prefix."""
    for short, cid in targets:
        for line in read(cid):
            yield f"{short}: {line}" if prefix else line


def merged(targets: list[tuple[str, str]],
           follow: Callable[[str, list[socket.socket]], Iterator[str]]) -> Iterator[str]:
    """Follow several containers at once: one reader thread each, lines as they come, each
    prefixed with "<short name>: ". follow(container id, opened) yields one container's lines
    and adds the socket it reads from to opened, so that closing this iterator wakes them all.
    """
    out: queue.Queue[tuple[str, str | BaseException | None]] = queue.Queue()
    opened: list[socket.socket] = []

    def pump(short: str, cid: str) -> None:
        try:
            for line in follow(cid, opened):
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
