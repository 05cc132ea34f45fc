"""Running one probe (HTTP, TCP or exec) and judging it as the kubelet does: the IO side of
`beemesh.node.health`, which decides when to run them and what the results mean.

Every function returns an `Outcome` and never raises for anything the workload does: a refused
connection, a timeout or a broken HTTP answer is FAILURE; UNKNOWN is kept for "could not check"
(no pod address, the runtime did not answer), which the bookkeeping does not count.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from urllib.parse import quote

import h11
import trio

from beemesh.manifest import ProbeSpec
from beemesh.node.health import Outcome
from beemesh.runtime import RuntimeFailure

__all__ = ["EXEC_GRACE_S", "USER_AGENT", "exec_probe", "http_probe", "run_probe", "tcp_probe"]

USER_AGENT = "beemesh-probe/1"
EXEC_GRACE_S = 5.0  # Podman's exec set-up alone can take seconds on a loaded machine
_MAX_HEAD = 16 * 1024  # status line and headers; a longer head fails the probe


async def http_probe(address: str, port: int, path: str, headers: Iterable[tuple[str, str]],
                     timeout_s: float) -> Outcome:
    """GET http://address:port/path; SUCCESS for a status from 200 to 399, as the kubelet.

    Redirects are not followed (the kubelet counts an off-host redirect as success too), and
    only the head of the response is read, so a large body costs nothing.
    """
    try:
        with trio.fail_after(timeout_s):
            status = await _http_status(address, port, path, headers)
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError):
        return Outcome.FAILURE
    return Outcome.SUCCESS if 200 <= status < 400 else Outcome.FAILURE


async def _http_status(address: str, port: int, path: str,
                       headers: Iterable[tuple[str, str]]) -> int:
    """The final status code; h11 raises RemoteProtocolError if the server closes first."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
    request = h11.Request(
        method="GET",
        target=quote(path, safe=string.punctuation),  # percent-encodes non-ASCII only
        headers=_request_headers(address, port, headers),
    )
    async with await trio.open_tcp_stream(address, port) as stream:
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        while not isinstance(event := conn.next_event(), h11.Response):
            if event is h11.NEED_DATA:  # else a 1xx response: the final one follows
                conn.receive_data(await stream.receive_some(_MAX_HEAD))
        return event.status_code


def _request_headers(address: str, port: int,
                     headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Ours, unless the probe sets the same header (kubelet rule); Connection is always ours."""
    host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    own = [(n, v) for n, v in headers if n.lower() != "connection"]
    given = {n.lower() for n, _ in own}
    defaults = [("Host", host), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    chosen = [*(d for d in defaults if d[0].lower() not in given), *own, ("Connection", "close")]
    return [(n.encode(), v.encode()) for n, v in chosen]


async def tcp_probe(address: str, port: int, timeout_s: float) -> Outcome:
    """SUCCESS when a TCP connection opens within the timeout; it is closed again at once."""
    try:
        with trio.fail_after(timeout_s):
            stream = await trio.open_tcp_stream(address, port)
    except (OSError, trio.TooSlowError):
        return Outcome.FAILURE
    await stream.aclose()
    return Outcome.SUCCESS


async def exec_probe(run_exec: Callable[[], int], timeout_s: float) -> Outcome:
    """Run a blocking `run_exec() -> exit code` in a thread; exit code 0 is SUCCESS.

    `run_exec` gives the command `timeout_s` itself; here it gets `timeout_s + EXEC_GRACE_S` of
    wall time, and only an overrun of that counts as FAILURE (the thread is abandoned; it ends
    with the runtime's own timeout). A RuntimeFailure means the runtime could not run the
    check (unreachable, container gone or restarting): UNKNOWN.
    """
    try:
        with trio.fail_after(timeout_s + EXEC_GRACE_S):
            code = await trio.to_thread.run_sync(run_exec, abandon_on_cancel=True)
    except trio.TooSlowError:
        return Outcome.FAILURE
    except RuntimeFailure:
        return Outcome.UNKNOWN
    return Outcome.SUCCESS if code == 0 else Outcome.FAILURE


async def run_probe(spec: ProbeSpec, address: str | None, run_exec: Callable[[], int]) -> Outcome:
    """Run `spec` against a pod at `address` (None: not running, so http/tcp are UNKNOWN)."""
    if spec.action == "exec":
        return await exec_probe(run_exec, spec.timeout_s)
    if spec.action not in ("http", "tcp") or spec.port is None:
        raise ValueError(f"not a runnable probe: {spec!r}")
    if address is None:
        return Outcome.UNKNOWN
    if spec.action == "http":
        return await http_probe(address, spec.port, spec.path, spec.headers, spec.timeout_s)
    return await tcp_probe(address, spec.port, spec.timeout_s)
