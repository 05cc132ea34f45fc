"""A small HTTP/1.1 server on a unix socket, built on h11 (sans-IO HTTP) and trio.

Why a unix socket: only local users with file access to the socket can drive the agent, so
the API needs no extra credentials; operator authority still comes from signed requests.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from beemesh.errors import UserError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, "request body is not JSON") from None


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None  # sent chunked, for logs --follow and watches

    def encode(self) -> bytes:
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Awaitable[Response]]


class ApiServer:
    """Routes (method, path) to async handlers.

    `owner` (uid, gid) hands the socket file to another user (the work plane's), and
    `allowed_uids` refuses connections from any other uid (checked with SO_PEERCRED), so only
    that process and root can drive the routes.
    """

    def __init__(self, socket_path: Path, *, owner: tuple[int, int] | None = None,
                 allowed_uids: set[int] | None = None) -> None:
        self.socket_path = socket_path
        self.owner = owner
        self.allowed_uids = allowed_uids
        self.routes: dict[tuple[str, str], Handler] = {}

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            await _refuse_if_live(path)
            path.unlink()
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(str(path))
        except OSError as e:
            raise UserError(f"cannot create API socket {path} ({e.strerror}); fix --api") from None
        finally:
            os.umask(old_umask)
        if self.owner is not None:
            os.chown(path, *self.owner)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        try:
            task_status.started()
            await trio.serve_listeners(self._handle, [listener])
        finally:
            path.unlink(missing_ok=True)

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.allowed_uids is not None and _peer_uid(stream) not in self.allowed_uids:
            log.warning("refused a connection on %s from uid %s", self.socket_path,
                        _peer_uid(stream))
            await stream.aclose()
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            with trio.fail_after(30):
                request = await self._read_request(conn, stream)
            response = await self._dispatch(request)
            try:
                await self._send(conn, stream, response)
            except UserError as e:  # a stream that failed midway: say so in-band
                await stream.send_all(f"\nerror: {e}\n".encode())
        except (h11.RemoteProtocolError, trio.TooSlowError, trio.BrokenResourceError):
            pass
        except Exception:  # one bad request must never take the agent down
            log.exception("API request failed")
        finally:
            await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> Request:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    raise trio.BrokenResourceError("client went away")
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BYTES:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                url = urlsplit(head.target.decode())
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                return Request(head.method.decode(), url.path, query, bytes(body))
            else:
                raise h11.RemoteProtocolError("unexpected HTTP event")

    async def _dispatch(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return Response(404, {"error": f"no such API call {request.method} {request.path}"})
        try:
            return await handler(request)
        except ApiError as e:
            return Response(e.status, {"error": e.message})
        except UserError as e:
            return Response(400, {"error": str(e)})
        except Exception:
            log.exception("API handler %s %s failed", request.method, request.path)
            return Response(500, {"error": "internal error; see the agent's log"})

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, resp: Response) -> None:
        async def send(event: Any) -> None:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

        headers = [("content-type", resp.content_type), ("connection", "close")]
        if resp.stream is None:
            payload = resp.encode()
            await send(h11.Response(status_code=resp.status,
                                    headers=[*headers, ("content-length", str(len(payload)))]))
            await send(h11.Data(data=payload))
        else:
            await send(h11.Response(status_code=resp.status,
                                    headers=[*headers, ("transfer-encoding", "chunked")]))
            async for chunk in resp.stream:
                await send(h11.Data(data=chunk))
        await send(h11.EndOfMessage())


def _peer_uid(stream: trio.SocketStream) -> int:
    """The uid of the process on the other end of a unix socket."""
    raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


async def _refuse_if_live(path: Path) -> None:
    """Another agent answering on the socket means a second agent on the same state."""
    try:
        with trio.move_on_after(1):
            stream = await trio.open_unix_socket(str(path))
            await stream.aclose()
            raise UserError(
                f"another agent is already serving the API at {path}; stop it first, "
                "or give this one its own --api and --state-dir"
            )
    except OSError:
        return
