"""Blocking client for the local API, used by the CLI (stdlib only, so the CLI starts fast)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from beemesh.api.answers import decode, timed_out, unreachable
from beemesh.config import DEFAULT_STATE_DIR

DEFAULT_API = DEFAULT_STATE_DIR / "api.sock"


def api_path(flag: str | None) -> Path:
    """--api, else $BEEMESH_API, else the default agent's socket."""
    return Path(flag or os.environ.get("BEEMESH_API") or DEFAULT_API)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.unix_path))
        self.sock = sock


def _open(path: Path, method: str, target: str, body: Any,
          timeout: float | None) -> tuple[_UnixConnection, http.client.HTTPResponse]:
    conn = _UnixConnection(path, timeout)
    payload = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, target, body=payload,
                     headers={"content-type": "application/json"} if payload else {})
        return conn, conn.getresponse()
    except TimeoutError:
        raise timed_out(path, timeout) from None
    except OSError as e:
        if (explained := unreachable(path, e)) is None:
            raise
        raise explained from None


def _decode(resp: http.client.HTTPResponse, raw: bytes) -> Any:
    return decode(resp.status, resp.getheader("content-type", ""), raw)


def call(path: Path, method: str, target: str, body: Any = None, timeout: float = 30) -> Any:
    """One API call; UserError with the fix when no agent answers or the agent refuses."""
    conn, resp = _open(path, method, target, body, timeout)
    try:
        raw = resp.read()
    except TimeoutError:
        raise timed_out(path, timeout) from None
    finally:
        conn.close()
    return _decode(resp, raw)


def stream_lines(path: Path, method: str, target: str, body: Any = None) -> Iterator[str]:
    """A streamed API call (logs --follow): yields lines as the agent sends them."""
    conn, resp = _open(path, method, target, body, None)
    try:
        if resp.status >= 400:
            _decode(resp, resp.read())
        while line := resp.readline():
            yield line.decode(errors="replace").rstrip("\n")
    finally:
        conn.close()
