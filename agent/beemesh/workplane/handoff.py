"""How the agent hands its work plane the listening sockets of pods' Services.

Only root can open a socket inside a pod's network namespace; the work plane runs as its own
user. So the agent opens each listener (`machine.listeners`) and passes it over a unix
SOCK_SEQPACKET pair made when it starts the work plane (one end inherited by the child, its
number in `BEEMESH_LISTENERS_FD`): one message per change, JSON, with the socket attached
(SCM_RIGHTS) when one is opened:

- `{"op": "open", "pod", "service", "address", "port", "ordinal", "workload"}` + the
  listening socket;
- `{"op": "close", "key"}`: the pod or the Service is gone, close it (`Listener.key`).

The work plane trusts the agent (its parent) but still checks each message's shape.
"""

from __future__ import annotations

import array
import json
import socket
from typing import Any

from beemesh import schema
from beemesh.workplane.names import Listener

FD_ENV = "BEEMESH_LISTENERS_FD"
MAX_MESSAGE = 4096

OPEN = schema.Struct(required={"op": str, "pod": str, "service": str, "address": str,
                               "port": schema.PORT_NUMBER},
                     optional={"ordinal": schema.Int(0, 1 << 20), "workload": str})
CLOSE = schema.Struct(required={"op": str, "key": str})


def open_message(listener: Listener) -> bytes:
    d: dict[str, Any] = {"op": "open", "pod": listener.pod, "service": listener.service_id,
                         "address": listener.address, "port": listener.port,
                         "workload": listener.workload_id}
    if listener.ordinal is not None:
        d["ordinal"] = listener.ordinal
    return json.dumps(d).encode()


def close_message(key: str) -> bytes:
    return json.dumps({"op": "close", "key": key}).encode()


def send(sock: socket.socket, data: bytes, fd: int | None = None) -> None:
    if fd is None:
        sock.send(data)
    else:
        socket.send_fds(sock, [data], [fd])


def parse(data: bytes, fds: list[int]) -> Listener | str:
    """An opened Listener (its socket is `fds[0]`) or the key of one to close; ValueError if
    the message is malformed (its sockets are the caller's to close)."""
    try:
        d = json.loads(data)
        if d.get("op") == "open":
            schema.check(d, OPEN, "listener")
            if len(fds) != 1:
                raise ValueError("an open message carries exactly one socket")
            return Listener(d["pod"], d["service"], d["address"], d["port"], d.get("ordinal"),
                            d.get("workload", ""))
        schema.check(d, CLOSE, "listener")
        return str(d["key"])
    except (ValueError, AttributeError, schema.SchemaError) as e:
        raise ValueError(f"bad listener message: {e}") from None


def fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)
