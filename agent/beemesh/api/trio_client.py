"""The local API's client for trio code (the work plane): HTTP/1.1 on the agent's unix socket
with h11, the sans-IO HTTP the API server speaks too.

The work plane talks with its agent all the time (its report, the long-polled view, asks to
heal). The CLI's blocking client (`client`, on http.client) would need a worker thread per
call and loads http.client and the `email` package (~0.75 MB of a process the size goal
counts in single megabytes); this one is a few trio calls and h11, which the process has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h11
import trio

from beemesh.api.answers import decode, timed_out, unreachable
from beemesh.errors import UserError

MAX_ANSWER_BYTES = 64 * 1024 * 1024  # the agent's view of a big fleet; far below memory
READ_BYTES = 64 * 1024


async def call(path: Path, method: str, target: str, body: Any = None,
               timeout: float = 30) -> Any:
    """One API call; UserError with the fix when no agent answers, the answer is not HTTP or
    too big, or the agent refuses."""
    try:
        with trio.fail_after(timeout):
            return await _exchange(path, method, target, body)
    except trio.TooSlowError:
        raise timed_out(path, timeout) from None
    except h11.ProtocolError as e:
        raise UserError(f"the agent at {path} answered with broken HTTP ({e}); restart "
                        "the agent") from None
    except OSError as e:
        if (explained := unreachable(path, e)) is None:
            raise UserError(f"lost the agent at {path}: {e}") from None
        raise explained from None


async def _exchange(path: Path, method: str, target: str, body: Any) -> Any:
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [("host", "localhost"), ("content-length", str(len(payload)))]
    if payload:
        headers.append(("content-type", "application/json"))
    conn = h11.Connection(h11.CLIENT)
    request = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    request += (conn.send(h11.Data(data=payload)) or b"") if payload else b""
    request += conn.send(h11.EndOfMessage()) or b""
    async with await trio.open_unix_socket(str(path)) as stream:
        await stream.send_all(request)
        status, content_type, chunks, size = 0, "", [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_BYTES)
                if not data and not status:
                    raise UserError(f"the agent at {path} closed the connection without "
                                    f"answering {target}; is it restarting?")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                content_type = dict(event.headers).get(b"content-type", b"").decode("latin-1")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_ANSWER_BYTES:
                    raise UserError(f"the agent at {path} answered more than "
                                    f"{MAX_ANSWER_BYTES // 2**20} MiB to {target}; refused")
                chunks.append(bytes(event.data))
            elif event is h11.PAUSED or isinstance(event, (h11.EndOfMessage,
                                                          h11.ConnectionClosed)):
                break
    try:
        return decode(status, content_type, b"".join(chunks))
    except ValueError:
        raise UserError(f"the agent at {path} answered {target} with broken JSON") from None
